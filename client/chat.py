"""The Architect's terminal: ``Architect > `` with line editing and persistent history,
live cycle progress, slash commands, Ctrl-C to cancel a wait and Ctrl-D to leave."""
from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

from client.connection import KernelError, KernelUnavailable
from client.session import Session
from client.translator import ParserModelUnavailable, TranslationError

HELP = """\
Type what you want in plain words; the parser turns it into a command.
  /help                 this text
  /objects              the objects in the image
  /describe [oid]       an object's slots and methods (default: the target)
  /target oid           talk to another object
  /send selector args…  call a method directly (no model; args are JSON or words)
  /log [n]              the last n metacognition events (default 10)
  /exit                 leave (also: exit, Ctrl-D)
Ctrl-C cancels the current wait."""


def format_result(command: dict, reply: dict) -> str:
    if not reply.get("ok"):
        err = reply.get("error") or {}
        text = f"✗ {err.get('type')}: {err.get('message')}"
        result = reply.get("result") or {}
        if result.get("source"):
            text += "\n" + _indent(result["source"])
        return text
    result = reply.get("result")
    if command["command"] == "initiate_cognitive_cycle":
        examples = result.get("examples") or []
        tested = (f", {sum(e.get('passed') for e in examples)}/{len(examples)} examples pass"
                  if examples else "")
        if result["state"] == "COMPLETE":
            return (f"✓ {result['selector']} is installed ({result.get('duration_s', 0):.1f}s, "
                    f"{result.get('persona')}{tested}):\n" + _indent(result.get("source") or ""))
        return f"✗ the cycle FAILED in {result.get('phase') or 'its'} phase: {result.get('reason')}"
    if command["command"] == "send_message":
        prefix = f"(taught in cycle {result['cycle_id']}) " if result.get("cycle_id") else ""
        return f"{prefix}→ {json.dumps(result.get('value'), ensure_ascii=False, default=repr)}"
    return json.dumps(result, indent=2, ensure_ascii=False, default=repr)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip().splitlines())


def parse_args(words: list[str]) -> list[Any]:
    out = []
    for w in words:
        try:
            out.append(json.loads(w))
        except json.JSONDecodeError:
            out.append(w)
    return out


class Chat:
    def __init__(self, session: Session, history_path: Path, log_path: Path):
        self.session = session
        self.history_path = history_path
        self.log_path = log_path

    def say(self, text: str) -> None:
        print(text, flush=True)

    def progress(self, event: dict) -> None:
        """One line per step of a cycle, as the step ends, with what the step found."""
        if event.get("event") == "state":
            extra = ""
            if event.get("asked"):
                extra += f"  {event['asked']}"
            if event.get("state") == "DECOMPOSING" and event.get("queries"):
                extra += f"  queries: {', '.join(event['queries'])}"
            if event.get("findings"):
                extra += f"  refused: {'; '.join(event['findings'])[:200]}"
            if event.get("state") == "FAILED" and event.get("phase"):
                extra += f"  ({event['phase']})"
            self.say(f"  … {event.get('state'):<12} {event.get('elapsed_s', 0):6.1f}s{extra}")

    def run(self) -> int:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory
        self.history_path.parent.mkdir(parents=True, exist_ok=True)
        prompt = PromptSession(history=FileHistory(str(self.history_path)))
        self.say(f"BAT OS: talking to {self.session.target} at {self.session.endpoint}. /help for help.")
        if not self.session.alive(2.0):
            self.say(f"! the kernel at {self.session.endpoint} is not answering; start it with ./puter.sh")
        while True:
            try:
                line = prompt.prompt("Architect > ")
            except KeyboardInterrupt:
                continue
            except EOFError:
                self.say("bye")
                return 0
            line = line.strip()
            if not line:
                continue
            if line in ("exit", "quit", "/exit", "/quit"):
                self.say("bye")
                return 0
            try:
                if line.startswith("/"):
                    self.slash(line)
                else:
                    self.utter(line)
            except KeyboardInterrupt:
                self.say("(cancelled; the kernel goes on with what it was doing)")
            except (KernelUnavailable, KernelError, TranslationError, ParserModelUnavailable) as exc:
                self.say(f"! {exc}")

    def utter(self, text: str) -> None:
        t0 = time.monotonic()
        command = self.session.translate(text)
        brief = command.get("mission_brief")
        if brief:
            self.say(f"  new method {brief['selector']}({', '.join(brief['args'])}): starting a cognitive cycle")
        else:
            self.say(f"  {command['selector']}({', '.join(json.dumps(a) for a in command['args'])})"
                     f"  [parsed in {time.monotonic() - t0:.1f}s]")
        self.send(command)

    def send(self, command: dict) -> None:
        reply = self.session.request(command, on_progress=self.progress)
        self.say(format_result(command, reply))

    def slash(self, line: str) -> None:
        words = shlex.split(line)
        cmd, args = words[0], words[1:]
        s = self.session
        if cmd == "/help":
            self.say(HELP)
        elif cmd == "/objects":
            for o in s.call("list_objects"):
                self.say(f"  {o['oid']:<28} {o['name']}")
        elif cmd == "/describe":
            d = s.call("describe", target_oid=args[0] if args else s.target)
            self.say(f"  {d['oid']} ({d['name']}), parents: {', '.join(d['parents']) or 'none'}")
            for name, kind in d["slots"].items():
                self.say(f"    slot   {name}: {kind}")
            for m in d["methods"]:
                self.say(f"    method {m['signature']}" + (f"  - {m['doc']}" if m["doc"] else ""))
        elif cmd == "/target":
            if not args:
                self.say(f"  the target is {s.target}")
                return
            s.call("describe", target_oid=args[0])   # UnknownObject if it is not there
            s.target = args[0]
            self.say(f"  now talking to {s.target}")
        elif cmd == "/send":
            if not args:
                self.say("  usage: /send selector [args…]")
                return
            self.send({"command": "send_message", "target_oid": s.target, "selector": args[0],
                       "args": parse_args(args[1:]), "kwargs": {}})
        elif cmd == "/log":
            n = int(args[0]) if args and args[0].isdigit() else 10
            if not self.log_path.exists():
                self.say(f"  no log at {self.log_path}")
                return
            for line in self.log_path.read_text(errors="replace").splitlines()[-n:]:
                e = json.loads(line)
                what = e.get("state") or ""
                self.say(f"  {time.strftime('%H:%M:%S', time.localtime(e.get('ts', 0)))} "
                         f"{e.get('event'):<14} {what:<12} {e.get('selector') or e.get('source') or ''}")
        else:
            self.say(f"  unknown command {cmd}; /help lists them")
