"""The client: translation with the real embedded model, the scripting modes, and the
terminal driven through a pty against a real kernel."""
import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, free_endpoint
from tests.translation_eval import CASES, METHODS

pytestmark = pytest.mark.model


def client_env(kernel=None, endpoint=None, home=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATOS_", "HF_PARSER", "LLAMA_MODEL"))}
    env["BATOS_ZMQ_ENDPOINT"] = kernel.endpoint if kernel else endpoint
    env["BATOS_HOME"] = str(kernel.home if kernel else home)
    env["HF_HUB_OFFLINE"] = "1"     # the embedded parser must never need the Hub
    return env


def judge(command, kind, selector, args):
    if kind == "call":
        return (command["command"] == "send_message" and command["selector"] == selector
                and command["args"] == args)
    brief = command.get("mission_brief") or {}
    return command["command"] == "initiate_cognitive_cycle" and brief.get("selector") in selector


@pytest.fixture(scope="module")
def translator():
    from client.translator import Translator, find_parser_model
    t = Translator(find_parser_model())
    t.load()
    return t


def test_translation_eval_set_is_valid_and_accurate(translator):
    from batos import protocol as p
    correct, wrong, times = 0, [], []
    for utterance, kind, selector, args in CASES:
        t0 = time.perf_counter()
        command = translator.translate(utterance, "genesis_obj", METHODS)
        times.append(time.perf_counter() - t0)
        p.REQUESTS[command["command"]].model_validate(command)        # valid, always
        if judge(command, kind, selector, args):
            correct += 1
        else:
            wrong.append((utterance, command))
    accuracy = correct / len(CASES)
    print(f"translation: {len(CASES)} valid, accuracy {accuracy:.2f}, "
          f"median {sorted(times)[len(times) // 2]:.2f}s; wrong: {wrong}")
    assert accuracy >= 0.9, wrong


def test_translate_modes_and_one_shot_against_a_kernel(kernel):
    with kernel.connect() as c:
        c.call("install_method", target_oid="genesis_obj", selector="factorial",
               source='def factorial(self, n):\n    """Return n factorial."""\n'
                      '    return 1 if n < 2 else n * self.factorial(n - 1)\n')
    env = client_env(kernel)
    out = subprocess.run([sys.executable, "-m", "client", "--translate", "-"], cwd=ROOT, env=env,
                         input="what is the factorial of 5\nwrite a method that reverses a word\n",
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert lines[0]["command"] == "send_message" and lines[0]["args"] == [5]
    assert lines[1]["command"] == "initiate_cognitive_cycle"
    out = subprocess.run([sys.executable, "-m", "client", "-c", "factorial of 6"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "720" in out.stdout, out.stdout + out.stderr
    out = subprocess.run([sys.executable, "-m", "client", "--send", '{"command": "nope"}'], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "UnknownCommand" in out.stdout


def test_kernel_down_gives_a_clear_message_not_a_hang(tmp_path):
    env = client_env(endpoint=free_endpoint(), home=tmp_path)
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "client", "--timeout", "6", "--send", '{"command": "ping"}'],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "not answering" in out.stderr and "no reply" in out.stderr
    assert time.monotonic() - t0 < 30


class Terminal:
    """The real client in a pseudo-terminal."""

    def __init__(self, env):
        env = {**env, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(ROOT)
            os.execve(sys.executable, [sys.executable, "-m", "client"], env)
        self.screen = ""

    def expect(self, text, timeout_s=300.0):
        deadline = time.monotonic() + timeout_s
        while text not in self.screen:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} never showed; the screen:\n{self.screen[-3000:]}"
            ready, _, _ = select.select([self.fd], [], [], min(left, 1.0))
            if ready:
                try:
                    self.screen += os.read(self.fd, 65536).decode(errors="replace")
                except OSError:
                    break
        assert text in self.screen, self.screen[-3000:]
        return self.screen

    def type(self, line):
        self.mark = len(self.screen)
        os.write(self.fd, line.encode() + b"\r")

    def close(self):
        try:
            os.write(self.fd, b"\x04")
            time.sleep(0.5)
        except OSError:
            pass
        try:
            os.kill(self.pid, 9)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)


def test_terminal_teaches_then_calls_with_live_progress(make_kernel):
    k = make_kernel(env={"BATOS_MEMORY_ENABLED": "1"})
    term = Terminal(client_env(k))
    try:
        term.expect("Architect >", 60)
        term.type("/send name")
        term.expect('"genesis"')
        term.type("write a method that returns a text reversed")
        term.expect("starting a cognitive cycle", 120)
        term.expect("DECOMPOSING", 120)
        term.expect("VALIDATING", 300)
        screen = term.expect("is installed", 300)
        assert "def " in screen
        term.type("reverse the text 'stressed'")
        term.expect("desserts", 300)
        term.type("/describe")
        term.expect("method ")
        term.type("/log 5")
        term.expect("cycle_end")
        term.type("/exit")
        term.expect("bye", 30)
    finally:
        term.close()
    assert (k.home / "client_history").exists()


def test_terminal_says_when_the_kernel_is_down(tmp_path):
    term = Terminal(client_env(endpoint=free_endpoint(), home=tmp_path))
    try:
        term.expect("is not answering", 60)
        term.expect("Architect >", 60)
        term.type("/objects")
        term.expect("not answering", 60)
    finally:
        term.close()
