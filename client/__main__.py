"""``python -m client``: for now, send raw protocol commands to the kernel.

The conversational terminal (the Mission Brief Translator) is not built yet;
until it is, this entry point says so and accepts explicit commands only.
"""
from __future__ import annotations

import argparse
import json
import sys

import config
from client.connection import Connection, KernelUnavailable


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m client")
    ap.add_argument("--send", metavar="JSON", help="send one raw protocol command and print the reply")
    ap.add_argument("--endpoint", help="the kernel's ZMQ_ENDPOINT")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the final reply")
    args = ap.parse_args(argv)
    if not args.send:
        print("client: the conversational terminal is not built yet; use --send JSON "
              "to send a protocol command", file=sys.stderr)
        return 2
    try:
        request = json.loads(args.send)
    except json.JSONDecodeError as exc:
        print(f"client: --send needs JSON: {exc}", file=sys.stderr)
        return 2
    try:
        endpoint = args.endpoint or config.load().ZMQ_ENDPOINT
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    with Connection(endpoint) as conn:
        try:
            reply = conn.request(request, timeout_s=args.timeout,
                                 on_progress=lambda ev: print(json.dumps(ev), flush=True))
        except KernelUnavailable as exc:
            print(f"client: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(reply, default=repr))
    return 0 if reply.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
