"""The terminal under a few hundred random and adversarial lines: the real ``python -m client``
in a pseudo-terminal against a real kernel.  After every line the terminal must answer a
sentinel line and show the prompt again, with no traceback; Ctrl-C during a wait must
cancel it; at the end ``/objects`` must still list genesis_obj.

The run is reproducible: the seed is printed and can be set with ``FUZZ_SEED``;
``FUZZ_SCREEN=path`` keeps everything the terminal showed.
Plain-word lines go to the parser model, so they are few; the parser is the small
SmolLM2 (``LLAMA_MODEL_PATH``) when it is installed, and the kernel's personas have no
loadable model, so a line the parser turns into a cycle fails at once instead of
spending minutes of CPU."""
import fcntl
import json
import os
import pty
import random
import select
import signal
import struct
import sys
import termios
import time

import pytest

from tests.conftest import ROOT
from tests.test_client import client_env

pytestmark = [pytest.mark.process, pytest.mark.model]

SEED = int(os.environ.get("FUZZ_SEED", "1313"))
N_LINES = 300
MAX_PLAIN_LINES = 8
NO_MODEL = json.dumps({p: "/nonexistent/no-model.gguf" for p in ("ALFRED", "BRICK", "ROBIN", "BABS")})
CANCELLED = "(cancelled; the kernel goes on"

SPIN = ('def spin(self, n):\n    """Count to n, slowly."""\n    t = 0\n'
        '    for i in range(n):\n        t += i\n    return t\n')
GREET = 'def greet(self, name):\n    """Greet someone."""\n    return "hello " + str(name)\n'


class FuzzTerminal:
    """``python -m client`` in a pty with a real window size; input is written in chunks
    while the output is drained, so a long line cannot deadlock the two sides."""

    def __init__(self, env):
        env = {**env, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(ROOT)
            os.execve(sys.executable, [sys.executable, "-m", "client"], env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        self.screen = ""

    def _read(self, timeout_s: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if ready:
            try:
                self.screen += os.read(self.fd, 1 << 16).decode(errors="replace")
            except OSError:       # the client exited: the pty's other end is gone
                raise AssertionError(f"the terminal exited; the screen:\n{self.screen[-3000:]}")

    def write(self, data: str | bytes) -> None:
        raw = data if isinstance(data, bytes) else data.encode()
        while raw:
            _, writable, _ = select.select([], [self.fd], [], 0.05)
            if writable:
                n = os.write(self.fd, raw[:512])
                raw = raw[n:]
            self._read(0)

    def expect(self, text: str, start: int = 0, timeout_s: float = 20.0) -> int:
        """The position just after ``text``'s first showing after ``start``."""
        deadline = time.monotonic() + timeout_s
        while (at := self.screen.find(text, start)) < 0:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} never showed; the screen:\n{self.screen[-3000:]}"
            self._read(min(left, 0.5))
        return at + len(text)

    def settle(self, pause_s: float = 0.03) -> None:
        end = time.monotonic() + pause_s
        while time.monotonic() < end:
            self._read(end - time.monotonic())

    def alive(self) -> bool:
        pid, _ = os.waitpid(self.pid, os.WNOHANG)
        return pid == 0

    def close(self) -> None:
        try:
            os.write(self.fd, b"\x04")
            time.sleep(0.3)
        except OSError:
            pass
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self.fd)


def quoted(ch: str) -> str:
    """``ch`` typed literally: Ctrl-Q (emacs quoted-insert) puts a control character into the line."""
    return "\x11" + ch


def random_line(rng: random.Random, plain_left: int) -> str | bytes:
    """One adversarial line, as typed (editing keys and quoted control characters included)."""
    words = ["don't", '"open', "'x", "a b", "\\", "$HOME", "`ls`", "{", "[[[", "é", "🦇", "\u202e",
             "null", "1e400", "-0", "99999999999999999999999", '{"a": [1, {"b": null}]}', "=", ",",
             "genesis_obj", "root_obj", "nope", "__class__", "x=1", "parents=", "parents=nope",
             "name=", "=x", "a" * 300]
    controls = "".join(chr(c) for c in range(32) if c not in (3, 4, 10, 13, 17)) + "\x7f"
    slash = ["/send", "/log", "/describe", "/target", "/new", "/clone", "/self", "/objects",
             "/help", "/nope", "/", "//", "/SEND", "/send\x11\x00"]
    kind = rng.random()
    if kind < 0.45:            # a slash command, known or not, with odd words
        line = rng.choice(slash) + "".join(" " + rng.choice(words) for _ in range(rng.randint(0, 4)))
    elif kind < 0.6:           # an unknown command of random characters
        line = "/" + "".join(rng.choice("abcxyz_-.:?*#%&") for _ in range(rng.randint(1, 12)))
    elif kind < 0.75:          # control characters, quoted into the line, around a command
        line = "".join(quoted(rng.choice(controls)) for _ in range(rng.randint(1, 6)))
        line = rng.choice(["", "  ", "\t"]) + line + rng.choice(["/help", "/objects", "/zz", ""])
    elif kind < 0.85:          # editing keys mid-line (home, end, kill, yank, transpose, clear)
        keys = ["\x01", "\x05", "\x02", "\x06", "\x0b", "\x15", "\x17", "\x19", "\x14", "\x08", "\x7f", "\x0c"]
        line = "/" + "".join(rng.choice(["s", "e", "n", "d", " ", rng.choice(keys)]) for _ in range(10))
        line += "\x01/"     # home, then "/": a kill or a move cannot make this a plain-word line
    elif kind < 0.87:          # a huge line
        line = "/send greet " + "x" * rng.randint(9_990, 12_000)
    elif kind < 0.9:           # bytes that are not UTF-8
        return rng.choice(["/send greet ", "/new ", "/describe ", "/"]).encode() + \
            bytes(rng.choice([0xff, 0xfe, 0xc3, 0x80, 0xed, 0xa0]) for _ in range(rng.randint(1, 4)))
    elif kind < 0.95:          # text Ctrl-C throws away at the prompt
        line = "/send greet half typed\x03"
    elif plain_left > 0:       # plain words: the parser model (or the object pre-parse)
        line = rng.choice(["make me a shopping list object", "clone this object", "copy nope",
                           "greet the Architect", "qq zz", "'unbalanced", "café ☕ \u202e",
                           "make a copy of genesis called g2", "spin 5"])
    else:
        line = "/send greet " + "".join(rng.choice(words) for _ in range(3))
    return line


def test_terminal_answers_every_line_of_a_fuzz_run(make_kernel):
    print(f"terminal fuzz: seed {SEED} (FUZZ_SEED={SEED} repeats this run); the client inherits SIGINT "
          f"{signal.getsignal(signal.SIGINT)!r}, blocked: {signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])}")
    rng = random.Random(SEED)
    k = make_kernel(env={"BATOS_PERSONA_MODELS": NO_MODEL})
    with k.connect() as c:
        for source in (SPIN, GREET):
            assert c.call("install_method", target_oid="genesis_obj", selector=source.split()[1].split("(")[0],
                          source=source)["state"] == "COMPLETE"
    env = client_env(k)
    try:
        from batos.llm.embedded import smollm2_gguf
        env["LLAMA_MODEL_PATH"] = str(smollm2_gguf())
    except Exception:     # the embedded parser, slower: the plain lines stay few either way
        pass
    term = FuzzTerminal(env)
    t0 = time.monotonic()
    typed, plain, cancels = [], 0, 0
    try:
        pos = term.expect("Architect >", 0, 60)

        def check(label, line):
            """The sentinel's answer and a new prompt after it: the terminal took ``line``."""
            nonlocal pos
            start = len(term.screen)
            term.write(f"/sync{label}\r")
            at = term.expect(f"unknown command /sync{label};", start, 120)
            pos = term.expect("Architect >", at, 30)
            term.settle()
            segment = term.screen[max(0, start - 200):]
            assert "Traceback" not in segment, f"after {line!r}:\n{segment[-3000:]}"
            assert "internal error" not in segment, f"after {line!r}:\n{segment[-3000:]}"

        def cancel_a_wait(line):
            """``line`` meets a stopped kernel; Ctrl-C ends the wait and the prompt comes back."""
            nonlocal cancels
            os.kill(k.proc.pid, signal.SIGSTOP)
            try:
                start = len(term.screen)
                term.write(line + "\r")
                # Ctrl-C once the client says it is waiting (pressed as the prompt hands the
                # line over, it could land before prompt_toolkit gives SIGINT back)
                term.expect("not answering", start, 60)
                term.write("\x03")
                term.expect(CANCELLED, start, 20)
                cancels += 1
            finally:
                os.kill(k.proc.pid, signal.SIGCONT)

        for i in range(N_LINES):
            if i % 60 == 30:
                cancel_a_wait(rng.choice(["/objects", "/send greet bat", "/describe", "/new w"]))
                check(f"c{i}", "Ctrl-C during a wait")
            if i % 100 == 50:
                with open(k.home / "metacognition.jsonl", "a") as log:
                    log.write('{"ts": 1700000000, "event": "cycle_st')     # half written
                start = len(term.screen)
                term.write("/log 5\r")
                term.expect("not readable as an event", start)
                check(f"l{i}", "/log with a half-written line")
            line = random_line(rng, MAX_PLAIN_LINES - plain)
            if isinstance(line, str) and not line.startswith(("/", " ", "\t", "\x11")):
                plain += 1
            typed.append(line)
            term.write(line + (b"\r" if isinstance(line, bytes) else "\r"))
            check(i, line)
            assert term.alive()
        # the known crashes, then the Ctrl-C cancel of a long method call
        for line in ("/target genesis_obj", "/send greet don't", "/log", "/log x", "/describe nope", "/target nope",
                     "/new a b", "/new x parents=nope", "/clone nope", "/send spin 1e3"):
            start = len(term.screen)
            term.write(line + "\r")
            check(f"k{len(typed)}", line)
            typed.append(line)
        start = len(term.screen)
        term.write("/send spin 1000000000\r")
        term.settle(1.0)
        term.write("\x03")
        term.expect(CANCELLED, start, 20)
        check("spin", "Ctrl-C during a method call")
        start = len(term.screen)
        term.write("/objects\r")
        term.expect("genesis_obj", start, 30)
        check("end", "/objects")
    finally:
        print(f"terminal fuzz: {len(typed)} lines ({plain} plain), {cancels} waits cancelled, "
              f"{time.monotonic() - t0:.1f}s")
        if os.environ.get("FUZZ_SCREEN"):      # a file to keep the whole session in, for reading
            with open(os.environ["FUZZ_SCREEN"], "w") as f:
                f.write(term.screen)
        term.close()


CLAIMS = """
import os, signal, sys, time
if sys.argv[1] == "claim":
    from client.chat import claim_ctrl_c
    claim_ctrl_c()
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(3)
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted")
"""


@pytest.mark.parametrize("parent", ["ignores", "blocks"])
def test_the_terminal_answers_ctrl_c_from_a_parent_that_ignores_or_blocks_it(parent):
    """A parent's ignored or blocked SIGINT is inherited across exec, and Python then
    raises no KeyboardInterrupt (a full test run's client ignored a Ctrl-C during a
    wait that it answered when run alone): the terminal claims Ctrl-C back."""
    import subprocess

    def prepare():
        if parent == "ignores":
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        else:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    def run(mode):
        return subprocess.run([sys.executable, "-c", CLAIMS, mode], cwd=ROOT, preexec_fn=prepare,
                              capture_output=True, text=True, timeout=60).stdout.strip()
    assert run("plain") == "not interrupted"      # what the client inherited
    assert run("claim") == "interrupted"
