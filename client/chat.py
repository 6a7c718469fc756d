"""The Architect's terminal: ``Architect > `` with line editing and persistent history,
live cycle progress, slash commands, Ctrl-C to cancel a wait and Ctrl-D to leave.

Every line gets an answer or a one-line message: the errors a line can meet (words
that do not split, a log line half written, a kernel that is down or answers with an
odd shape, a request msgpack cannot carry) are caught where they happen, and anything
else is reported as ``! internal error: <type>: <message>`` before the next prompt."""
from __future__ import annotations

import json
import re
import shlex
import signal
import time
from collections import deque
from pathlib import Path
from typing import Any

from client.connection import KernelError, KernelUnavailable
from client.session import Session
from client.translator import ParserModelUnavailable, TranslationError

HELP = """\
Type what you want in plain words; the parser turns it into a command
("make me a shopping list object" and "clone this object" need no model).
  /help                       this text
  /objects                    the objects in the image
  /describe [oid]             an object's slots and methods (default: the target)
  /target oid                 talk to another object
  /send selector args…        call a method directly (no model; args are JSON or words)
  /new [name] [key=value…]    a new object; values are JSON or words; parents=oid1,oid2
                              (default: root_obj)
  /clone [oid] [name]         a copy of an object (default: the target)
  /self                       genesis describes itself (its display_yourself method)
  /log [n]                    the last n metacognition events (default 10)
  /stats                      the record as a table: cycles, pass rate, time, CEM, adaptations
  /adaptations                what the self-tuning loop adopted
  /revert ID                  undo an adopted adaptation (its id from /adaptations)
  /exit                       leave (also: exit, Ctrl-D)
Ctrl-C cancels the current wait."""

MAX_LINE_CHARS = 10_000     # longer lines are refused, not parsed or sent
MAX_LOG_LINES = 500         # /log shows at most this many events
GENESIS = "genesis_obj"
SELF_SELECTOR = "display_yourself"
NO_SELF = (f"genesis has not written {SELF_SELECTOR} yet; it is written on the first start "
           "when a model is available")
CANCELLED = "(cancelled; the kernel goes on with what it was doing)"
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")   # C0 controls but tab, and DEL


def claim_ctrl_c() -> None:
    """Ctrl-C stops the terminal's waits even when its parent started it with SIGINT
    ignored or blocked (both are inherited across exec, and Python then raises no
    KeyboardInterrupt: a full test run's client ignored a Ctrl-C that the same client
    answered when run alone)."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
        signal.signal(signal.SIGINT, signal.default_int_handler)


class UsageError(Exception):
    """A slash command's words do not fit it; the message says how to use it."""


def format_result(command: dict, reply: dict) -> str:
    """One reply as the Architect reads it; a reply missing fields still reads."""
    if not isinstance(reply, dict):
        return f"✗ an unexpected reply: {_short(reply)}"
    if not reply.get("ok"):
        err = reply.get("error") if isinstance(reply.get("error"), dict) else {}
        text = f"✗ {err.get('type', 'Error')}: {err.get('message', '')}"
        result = reply.get("result")
        if isinstance(result, dict) and result.get("source"):
            text += "\n" + _indent(str(result["source"]))
        return text
    result = reply.get("result")
    kind = command.get("command")
    if kind == "initiate_cognitive_cycle" and isinstance(result, dict):
        examples = [e for e in result.get("examples") or [] if isinstance(e, dict)]
        tested = (f", {sum(bool(e.get('passed')) for e in examples)}/{len(examples)} examples pass"
                  if examples else "")
        if result.get("state") == "COMPLETE":
            duration = result.get("duration_s")
            took = f"{duration:.1f}s, " if isinstance(duration, (int, float)) else ""
            cem = result.get("cem") if isinstance(result.get("cem"), dict) else {}
            score = cem.get("score")
            scored = f", CEM {score:.2f}" if isinstance(score, (int, float)) and not isinstance(score, bool) else ""
            return (f"✓ {result.get('selector')} is installed ({took}{result.get('persona')}{scored}{tested}):\n"
                    + _indent(str(result.get("source") or "")))
        return f"✗ the cycle FAILED in {result.get('phase') or 'its'} phase: {result.get('reason')}"
    if kind == "send_message" and isinstance(result, dict):
        prefix = f"(taught in cycle {result['cycle_id']}) " if result.get("cycle_id") else ""
        return f"{prefix}→ {json.dumps(result.get('value'), ensure_ascii=False, default=repr)}"
    if kind in ("create_object", "clone") and isinstance(result, dict) and result.get("oid"):
        verb = "created" if kind == "create_object" else f"cloned {command.get('target_oid')} as"
        return (f"✓ {verb} {result['oid']} ({result.get('name')}); "
                f"/target {result['oid']} to talk to it")
    return json.dumps(result, indent=2, ensure_ascii=False, default=repr)


def _practice(score: Any) -> str:
    """A practice score {passed, missions, median_s} as "2/3 in 21.5s"."""
    if not isinstance(score, dict):
        return "-"
    median = score.get("median_s")
    took = f" in {median:g}s" if isinstance(median, (int, float)) else ""
    return f"{score.get('passed', '?')}/{score.get('missions', '?')}{took}"


def adaptation_lines(result: Any) -> list[str]:
    """``list_adaptations``' result, one line per adaptation: id, when, the change (and
    the earlier missions a ``demonstrations`` change shows), the practice scores
    (current → proposed), reverted or not, and why."""
    adaptations = result.get("adaptations") if isinstance(result, dict) else None
    if not isinstance(adaptations, list) or not adaptations:
        return ["  (no adaptations adopted yet)"]
    lines = []
    for a in adaptations:
        if not isinstance(a, dict):
            continue
        try:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(a.get("ts"))))
        except (TypeError, ValueError, OverflowError, OSError):
            when = "----------  --:--"
        p = a.get("proposal") if isinstance(a.get("proposal"), dict) else {}
        value = json.dumps(p.get("value"), ensure_ascii=False, default=repr)
        value = value if len(value) <= 40 else value[:39] + "…"
        plans = p.get("plans") if isinstance(p.get("plans"), list) else []
        calls = ", ".join(str(x.get("call")) for x in plans if isinstance(x, dict))
        if calls:       # the worked plans a demonstrations change shows BRICK
            value += f" ({calls if len(calls) <= 80 else calls[:79] + '…'})"
        scores = a.get("scores") if isinstance(a.get("scores"), dict) else {}
        why = " ".join(str(p.get("why") or "").split())
        lines.append(f"  {str(a.get('id')):<12} {when}  {p.get('kind')} {p.get('target')} = {value}  "
                     f"practice {_practice(scores.get('current'))} → {_practice(scores.get('proposed'))}"
                     f"{'  (reverted)' if a.get('reverted') else ''}"
                     + (f"  - {why[:120]}" if why else ""))
    return lines


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip().splitlines())


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def parse_value(word: str) -> Any:
    """A word as JSON when it is JSON, else as the text it is."""
    try:
        return json.loads(word)
    except (ValueError, RecursionError):
        return word


def parse_args(words: list[str]) -> list[Any]:
    return [parse_value(w) for w in words]


def split_words(line: str) -> tuple[list[str], str | None]:
    """Shell-like words; when the quotes do not balance, the line split at whitespace and a
    note saying so."""
    try:
        return shlex.split(line), None
    except ValueError as exc:
        return line.split(), f"({exc}: the words are split at spaces instead)"


def clean_line(line: str) -> tuple[str, str | None]:
    """The line without control characters (tab becomes a space) and with bytes that were
    not UTF-8 (the prompt's lone surrogates) as "?", and a note saying what changed."""
    notes = []
    text = line.encode("utf-8", "replace").decode("utf-8")
    if text != line:
        notes.append("bytes that are not UTF-8 replaced with ?")
    text = text.replace("\t", " ")
    cleaned = _CONTROL.sub("", text)
    if cleaned != text:
        notes.append("control characters removed")
    return cleaned.strip(), f"({'; '.join(notes)})" if notes else None


def new_object_command(words: list[str]) -> dict:
    """``/new [name] [key=value ...]`` as a ``create_object`` command."""
    command: dict[str, Any] = {"command": "create_object", "parents": ["root_obj"], "slots": {}}
    for word in words:
        key, eq, value = word.partition("=")
        if not eq:
            if "name" in command:
                raise UsageError(f"two names ({command['name']!r}, {word!r}); usage: "
                                 "/new [name] [key=value…]")
            command["name"] = word
        elif key == "parents":
            parents = [oid.strip() for oid in value.split(",") if oid.strip()]
            if not parents:
                raise UsageError("parents= needs one oid or more, e.g. parents=root_obj,genesis_obj")
            command["parents"] = parents
        elif key == "name":
            command["name"] = value
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) and not key.startswith("__"):
            command["slots"][key] = parse_value(value)
        else:
            raise UsageError(f"{key!r} is not a slot name (letters, digits and '_', not starting "
                             "with '__'); "
                             "usage: /new [name] [key=value…]")
    if command.get("name") == "":
        raise UsageError("the name is empty; usage: /new [name] [key=value…]")
    return command


def log_lines(path: Path, n: int) -> tuple[list[str], int]:
    """The last ``n`` events of the metacognition log, one line each, and how many lines
    could not be read (the last one may be half written while the kernel writes it)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        tail = deque((line for line in f if line.strip()), maxlen=n)
    out, skipped = [], 0
    for raw in tail:
        try:
            e = json.loads(raw)
        except (ValueError, RecursionError):
            skipped += 1
            continue
        if not isinstance(e, dict):
            skipped += 1
            continue
        ts = e.get("ts")
        try:
            when = time.strftime("%H:%M:%S", time.localtime(float(ts)))
        except (TypeError, ValueError, OverflowError, OSError):
            when = "--:--:--"
        what = e.get("state") or ""
        out.append(f"  {when} {str(e.get('event')):<14} {str(what):<12} "
                   f"{e.get('selector') or e.get('source') or e.get('oid') or ''}")
    return out, skipped


class Chat:
    def __init__(self, session: Session, history_path: Path, log_path: Path):
        self.session = session
        self.history_path = history_path
        self.log_path = log_path

    def say(self, text: str) -> None:
        # a lone surrogate from a reply must not stop the terminal
        print(str(text).encode("utf-8", "replace").decode("utf-8"), flush=True)

    def progress(self, event: dict) -> None:
        """One line per step of a cycle, as the step ends, with what the step found."""
        if not isinstance(event, dict) or event.get("event") != "state":
            return
        extra = ""
        if event.get("asked"):
            extra += f"  {event['asked']}"
        if event.get("state") == "DECOMPOSING" and isinstance(event.get("queries"), list):
            extra += f"  queries: {', '.join(map(str, event['queries']))}"
        if isinstance(event.get("findings"), list) and event["findings"]:
            extra += f"  refused: {'; '.join(map(str, event['findings']))[:200]}"
        if event.get("state") == "FAILED" and event.get("phase"):
            extra += f"  ({event['phase']})"
        elapsed = event.get("elapsed_s")
        elapsed = elapsed if isinstance(elapsed, (int, float)) else 0.0
        self.say(f"  … {str(event.get('state')):<12} {elapsed:6.1f}s{extra}")

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> int:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory
        self.history_path.parent.mkdir(parents=True, exist_ok=True)
        prompt = PromptSession(history=FileHistory(str(self.history_path)))
        claim_ctrl_c()
        self.say(f"BAT OS: talking to {self.session.target} at {self.session.endpoint}. /help for help.")
        self.guarded(self.greet)
        failures = 0    # prompts in a row that failed: the terminal itself is broken
        while True:
            try:
                try:
                    line = prompt.prompt("Architect > ")
                    failures = 0
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    self.say("bye")
                    return 0
                except Exception as exc:
                    failures += 1
                    self.say(f"! internal error: {type(exc).__name__}: {exc}")
                    if failures >= 3:
                        self.say("! the prompt keeps failing; leaving")
                        return 1
                    continue
                if self.guarded(self.handle, line):
                    self.say("bye")
                    return 0
            except KeyboardInterrupt:    # between the prompt and the line's handling
                self.say(CANCELLED)

    def greet(self) -> None:
        if not self.session.alive(2.0):
            self.say(f"! the kernel at {self.session.endpoint} is not answering; start it with ./puter.sh")
            return
        self.show_self(quiet=True)

    def guarded(self, fn, *args: Any) -> Any:
        """``fn(*args)``; whatever it raises becomes one line, and the terminal goes on."""
        try:
            try:
                return fn(*args)
            except KeyboardInterrupt:
                self.say(CANCELLED)
            except (KernelUnavailable, KernelError, TranslationError, ParserModelUnavailable,
                    UsageError) as exc:
                self.say(f"! {exc}")
            except Exception as exc:
                message = " ".join(str(exc).split())
                self.say(f"! internal error: {type(exc).__name__}: {message[:300]}")
        except KeyboardInterrupt:      # a second Ctrl-C while the first is reported
            self.say(CANCELLED)
        return None

    def handle(self, line: str) -> bool:
        """Answer one line; True when the Architect asked to leave."""
        if len(line) > MAX_LINE_CHARS:
            self.say(f"! that line has {len(line)} characters; the terminal takes at most "
                     f"{MAX_LINE_CHARS} (for a large payload: python -m client --send JSON)")
            return False
        line, note = clean_line(line)
        if note:
            self.say(f"  {note}")
        if not line:
            return False
        if line in ("exit", "quit", "/exit", "/quit"):
            return True
        if line.startswith("/"):
            self.slash(line)
        else:
            self.utter(line)
        return False

    # -- plain words ---------------------------------------------------------------------
    def utter(self, text: str) -> None:
        t0 = time.monotonic()
        command = self.session.translate(text)
        took = f"[parsed in {time.monotonic() - t0:.1f}s]"
        kind = command.get("command")
        if kind == "initiate_cognitive_cycle":
            brief = command.get("mission_brief") or {}
            self.say(f"  new method {brief.get('selector')}({', '.join(map(str, brief.get('args') or []))}):"
                     " starting a cognitive cycle")
        elif kind == "create_object":
            self.say(f"  create_object(name={json.dumps(command.get('name'))}, "
                     f"parents={','.join(command.get('parents') or [])})  {took}")
        elif kind == "clone":
            self.say(f"  clone({command.get('target_oid')}, name={json.dumps(command.get('name'))})  {took}")
        else:
            args = ", ".join(json.dumps(a, ensure_ascii=False, default=repr) for a in command.get("args") or [])
            self.say(f"  {command.get('selector')}({args})  {took}")
        self.send(command)

    def send(self, command: dict) -> dict | None:
        try:
            reply = self.session.request(command, on_progress=self.progress)
        except TypeError as exc:    # ormsgpack.MsgpackEncodeError: a value msgpack cannot carry
            self.say(f"! cannot send that: {exc}")
            return None
        self.say(format_result(command, reply))
        return reply

    # -- slash commands ------------------------------------------------------------------
    def slash(self, line: str) -> None:
        words, note = split_words(line)
        if note:
            self.say(f"  {note}")
        if not words:
            return
        cmd, args = words[0], words[1:]
        handler = SLASH.get(cmd)
        if handler is None:
            self.say(f"  unknown command {cmd}; /help lists them")
            return
        handler(self, args)

    def cmd_help(self, args: list[str]) -> None:
        self.say(HELP)

    def cmd_objects(self, args: list[str]) -> None:
        objects = self.session.call("list_objects")
        for o in objects if isinstance(objects, list) else []:
            if isinstance(o, dict):
                self.say(f"  {str(o.get('oid')):<28} {o.get('name')}")

    def cmd_describe(self, args: list[str]) -> None:
        d = self.session.call("describe", target_oid=args[0] if args else self.session.target)
        if not isinstance(d, dict):
            self.say(f"  an unexpected answer: {_short(d)}")
            return
        self.say(f"  {d.get('oid')} ({d.get('name')}), parents: {', '.join(map(str, d.get('parents') or [])) or 'none'}")
        slots = d.get("slots") if isinstance(d.get("slots"), dict) else {}
        for name, kind in slots.items():
            self.say(f"    slot   {name}: {kind}")
        for m in d.get("methods") or []:
            if isinstance(m, dict):
                self.say(f"    method {m.get('signature') or m.get('selector')}"
                         + (f"  - {m['doc']}" if m.get("doc") else ""))

    def cmd_target(self, args: list[str]) -> None:
        s = self.session
        if not args:
            self.say(f"  the target is {s.target}")
            return
        s.call("describe", target_oid=args[0])   # UnknownObject if it is not there
        s.target = args[0]
        self.say(f"  now talking to {s.target}")

    def cmd_send(self, args: list[str]) -> None:
        if not args:
            raise UsageError("usage: /send selector [args…]")
        self.send({"command": "send_message", "target_oid": self.session.target, "selector": args[0],
                   "args": parse_args(args[1:]), "kwargs": {}})

    def cmd_new(self, args: list[str]) -> None:
        self.send(new_object_command(args))

    def cmd_clone(self, args: list[str]) -> None:
        if len(args) > 2:
            raise UsageError("usage: /clone [oid] [name]")
        command = {"command": "clone", "target_oid": args[0] if args else self.session.target}
        if len(args) > 1:
            command["name"] = args[1]
        self.send(command)

    def cmd_self(self, args: list[str]) -> None:
        self.show_self(quiet=False)

    def show_self(self, quiet: bool) -> None:
        """Genesis's ``display_yourself``, when genesis has it; ``quiet``: nothing otherwise."""
        described = self.session.call("describe", target_oid=GENESIS)
        methods = (described.get("methods") if isinstance(described, dict) else None) or []
        if not any(isinstance(m, dict) and m.get("selector") == SELF_SELECTOR for m in methods):
            if not quiet:
                self.say(f"  {NO_SELF}")
            return
        command = {"command": "send_message", "target_oid": GENESIS, "selector": SELF_SELECTOR,
                   "args": [], "kwargs": {}}
        reply = self.session.request(command, on_progress=self.progress)
        if reply is None:
            return
        result = reply.get("result") if isinstance(reply, dict) and reply.get("ok") else None
        if isinstance(result, dict) and isinstance(result.get("value"), str):
            self.say(result["value"])
        else:
            self.say(format_result(command, reply))

    def cmd_log(self, args: list[str]) -> None:
        if args and not (args[0].isascii() and args[0].isdigit()):
            raise UsageError(f"usage: /log [n] (n a whole number, at most {MAX_LOG_LINES}); "
                             f"not {_short(args[0], 40)}")
        n = min(int(args[0]), MAX_LOG_LINES) if args else 10
        if not self.log_path.exists():
            self.say(f"  no log at {self.log_path}")
            return
        try:
            lines, skipped = log_lines(self.log_path, n)
        except OSError as exc:
            self.say(f"! cannot read {self.log_path}: {exc}")
            return
        for line in lines:
            self.say(line)
        if skipped:
            self.say(f"  ({skipped} line{'s' if skipped > 1 else ''} not readable as an event: "
                     "half written, or not JSON)")
        if not lines and not skipped:
            self.say("  (no events yet)")

    def cmd_stats(self, args: list[str]) -> None:
        from batos.autotelic import read_events
        from batos.stats import table
        if args:
            raise UsageError("usage: /stats (no arguments; python -m batos.stats has the options)")
        if not self.log_path.exists():
            self.say(f"  no log at {self.log_path}")
            return
        try:
            text = table(read_events(self.log_path))
        except OSError as exc:
            self.say(f"! cannot read {self.log_path}: {exc}")
            return
        self.say("\n".join("  " + line if line else "" for line in text.splitlines()))

    def cmd_adaptations(self, args: list[str]) -> None:
        if args:
            raise UsageError("usage: /adaptations (no arguments)")
        for line in adaptation_lines(self.session.call("list_adaptations")):
            self.say(line)

    def cmd_revert(self, args: list[str]) -> None:
        if len(args) != 1 or not 0 < len(args[0]) <= 64:
            raise UsageError("usage: /revert ID (an adaptation's id, as /adaptations shows it)")
        try:
            record = self.session.call("revert_adaptation", adaptation=args[0])
        except KernelError as exc:
            message = exc.message.removeprefix("revert_adaptation: ")
            message = (message.replace("list_adaptations", "/adaptations") if "list_adaptations" in message
                       else f"{message}; /adaptations lists what can be reverted")
            self.say(f"! cannot revert {args[0]}: {message}")
            return
        p = record.get("proposal") if isinstance(record, dict) and isinstance(record.get("proposal"), dict) else {}
        self.say(f"  reverted {args[0]}: {p.get('kind')} {p.get('target')} has its old value again")


SLASH = {"/help": Chat.cmd_help, "/objects": Chat.cmd_objects, "/describe": Chat.cmd_describe,
         "/target": Chat.cmd_target, "/send": Chat.cmd_send, "/new": Chat.cmd_new,
         "/clone": Chat.cmd_clone, "/self": Chat.cmd_self, "/log": Chat.cmd_log,
         "/stats": Chat.cmd_stats, "/adaptations": Chat.cmd_adaptations, "/revert": Chat.cmd_revert}
