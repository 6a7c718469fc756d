"""``python -m client``: the Architect's terminal, or a scripting interface.

    python -m client                      the terminal chat
    python -m client --translate TEXT     print the command TEXT would become (one JSON line)
    python -m client --translate -        one utterance per stdin line, one JSON line each
    python -m client -c TEXT              translate, send, print the final reply; exit 0/1
    python -m client --send JSON          send a raw protocol command
Options: --target OID (default genesis_obj), --endpoint URL, --timeout SECONDS,
--server-key FILE and --client-cert FILE (CURVE: the kernel's public certificate and this
client's secret one; by default, with CURVE on, BATOS_HOME/curve's local pair).
"""
from __future__ import annotations

import argparse
import json
import sys

import config
from batos import curve
from client.chat import Chat, format_result
from client.connection import KernelError, KernelUnavailable
from client.session import Session
from client.translator import ParserModelUnavailable, TranslationError, warn


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m client", description="The BAT OS client.")
    ap.add_argument("--translate", metavar="TEXT", help="print the command TEXT becomes ('-': stdin lines)")
    ap.add_argument("-c", dest="command", metavar="TEXT", help="translate, send, print the reply, exit")
    ap.add_argument("--send", metavar="JSON", help="send one raw protocol command and print the reply")
    ap.add_argument("--target", default="genesis_obj", help="the object to talk to")
    ap.add_argument("--endpoint", help="the kernel's ZMQ_ENDPOINT")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for a final reply")
    ap.add_argument("--server-key", metavar="FILE",
                    help="CURVE: the kernel's public certificate (its BATOS_HOME/curve/server.key)")
    ap.add_argument("--client-cert", metavar="FILE",
                    help="CURVE: this client's secret certificate (NAME.key_secret; NAME.key must be "
                         "in the kernel's BATOS_HOME/curve/authorized/)")
    args = ap.parse_args(argv)
    try:
        settings = config.load(ZMQ_ENDPOINT=args.endpoint, SERVER_KEY=args.server_key,
                               CLIENT_CERT=args.client_cert)
        keys = curve.client_keys(settings)
    except (config.ConfigError, curve.CurveError) as exc:
        print(exc, file=sys.stderr)
        return 2
    session = Session(settings.ZMQ_ENDPOINT, args.target, timeout_s=args.timeout,
                      n_gpu_layers=settings.LLM_N_GPU_LAYERS, curve=keys)
    try:
        if args.send:
            return send_raw(session, args.send)
        if args.translate:
            return translate(session, args.translate)
        if args.command:
            return one_shot(session, args.command)
        return Chat(session, settings.HOME / "client_history", settings.log_path).run()
    except ParserModelUnavailable as exc:
        warn(f"{exc}\nThe parser model cannot be loaded: use --send JSON or /send in the terminal.")
        return 1
    except (KernelUnavailable, KernelError, TranslationError) as exc:
        warn(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        session.close()


def send_raw(session: Session, text: str) -> int:
    try:
        request = json.loads(text)
    except json.JSONDecodeError as exc:
        warn(f"--send needs JSON: {exc}")
        return 2
    if not isinstance(request, dict):
        warn("--send needs a JSON object")
        return 2
    reply = session.request(request, on_progress=lambda ev: print(json.dumps(ev), flush=True))
    print(json.dumps(reply, default=repr, ensure_ascii=False))
    return 0 if reply.get("ok") else 1


def translate(session: Session, text: str) -> int:
    if text != "-":
        print(json.dumps(session.translate(text)), flush=True)
        return 0
    methods = session.methods() if session.alive() else []
    failures = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            print(json.dumps(session.translate(line, methods)), flush=True)
        except TranslationError as exc:
            failures += 1
            print(json.dumps({"error": str(exc), "utterance": line.strip()}), flush=True)
    return 1 if failures else 0


def one_shot(session: Session, text: str) -> int:
    command = session.translate(text)
    reply = session.request(command)
    print(format_result(command, reply))
    if not reply.get("ok"):
        return 1
    result = reply.get("result") or {}
    return 1 if result.get("state") == "FAILED" else 0


if __name__ == "__main__":
    sys.exit(main())
