"""The client: translation with the real embedded model, the scripting modes, the
terminal driven through a pty against a real kernel, and the terminal's line handling
(pure, and against a real kernel without a pty)."""
import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest

from client.chat import (CANCELLED, HELP, NO_SELF, Chat, UsageError, format_result,
                         new_object_command, split_words)
from client.session import Session
from client.translator import object_command
from tests.conftest import ROOT, free_endpoint
from tests.translation_eval import CASES, METHODS


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


@pytest.mark.model
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


@pytest.mark.model
@pytest.mark.process
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


@pytest.mark.model
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


@pytest.mark.model
@pytest.mark.process
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
        term.expect("is installed", 300)
        term.expect("def ", 30)       # the source follows, maybe in the pty's next read
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


@pytest.mark.model
def test_terminal_says_when_the_kernel_is_down(tmp_path):
    term = Terminal(client_env(endpoint=free_endpoint(), home=tmp_path))
    try:
        term.expect("is not answering", 60)
        term.expect("Architect >", 60)
        term.type("/objects")
        term.expect("not answering", 60)
    finally:
        term.close()


# -- the terminal's line handling ------------------------------------------------------------

def quiet_chat(tmp_path, session=None, log_text=None):
    log_path = tmp_path / "metacognition.jsonl"
    if log_text is not None:
        log_path.write_text(log_text)
    return Chat(session, tmp_path / "client_history", log_path)


def test_unbalanced_quotes_split_at_spaces_with_a_note():
    assert split_words("/send greet 'bat cave'") == (["/send", "greet", "bat cave"], None)
    words, note = split_words("/send greet don't")
    assert words == ["/send", "greet", "don't"] and "split at spaces" in note


def test_log_skips_a_half_written_last_line(tmp_path, capsys):
    chat = quiet_chat(tmp_path, log_text='{"ts": 1700000000, "event": "cycle_end", "state": "COMPLETE", '
                                         '"selector": "reverse"}\n[1, 2]\n{"ts": 1700000001, "event": "cyc')
    chat.handle("/log 5")
    out = capsys.readouterr().out
    assert "cycle_end" in out and "reverse" in out
    assert "2 lines not readable as an event" in out


def test_log_refuses_what_is_not_a_count(tmp_path, capsys):
    chat = quiet_chat(tmp_path, log_text="")
    for arg in ("x", "-1", "²", "1.5"):
        with pytest.raises(UsageError, match="usage: /log"):
            chat.handle(f"/log {arg}")
    chat.guarded(chat.handle, "/log nope")
    assert "! usage: /log" in capsys.readouterr().out


def test_long_lines_and_control_characters_never_reach_the_parser(tmp_path, capsys):
    chat = quiet_chat(tmp_path)      # no session: anything sent would fail loudly
    assert chat.handle("reverse " + "x" * 20_000) is False
    assert "the terminal takes at most 10000" in capsys.readouterr().out
    chat.handle("\x00/he\x1b\x07lp\x7f")
    out = capsys.readouterr().out
    assert "control characters removed" in out and HELP.splitlines()[0] in out
    chat.handle("/nope 'x")
    assert "unknown command /nope" in capsys.readouterr().out
    assert chat.handle("\x01exit") is True


def test_anything_unforeseen_is_one_line_and_ctrl_c_cancels(tmp_path, capsys, monkeypatch):
    from client import chat as chat_module
    chat = quiet_chat(tmp_path)

    def boom(self, args):
        raise RuntimeError("boom")

    def interrupted(self, args):
        raise KeyboardInterrupt
    monkeypatch.setitem(chat_module.SLASH, "/objects", boom)
    monkeypatch.setitem(chat_module.SLASH, "/self", interrupted)
    chat.guarded(chat.handle, "/objects")
    chat.guarded(chat.handle, "/self")
    assert capsys.readouterr().out.splitlines() == ["! internal error: RuntimeError: boom", CANCELLED]


def test_format_result_reads_replies_missing_fields():
    assert format_result({"command": "initiate_cognitive_cycle"}, {"ok": True, "result": {}}).startswith("✗")
    assert format_result({"command": "send_message"}, {"ok": True, "result": None}) == "null"
    assert format_result({"command": "describe"}, {"ok": False, "error": "odd"}) == "✗ Error: "
    assert format_result({"command": "ping"}, None).startswith("✗ an unexpected reply")
    assert format_result({"command": "clone", "target_oid": "genesis_obj"},
                         {"ok": True, "result": {"oid": "g2_obj", "name": "g2"}}) == \
        "✓ cloned genesis_obj as g2_obj (g2); /target g2_obj to talk to it"


def test_new_reads_names_slots_and_parents():
    assert new_object_command([]) == {"command": "create_object", "parents": ["root_obj"], "slots": {}}
    assert new_object_command(["inventory", "count=3", "items=[1, 2]", "label=bat cave",
                               "parents=root_obj,genesis_obj"]) == {
        "command": "create_object", "name": "inventory", "parents": ["root_obj", "genesis_obj"],
        "slots": {"count": 3, "items": [1, 2], "label": "bat cave"}}
    for bad in (["a", "b"], ["=1"], ["1x=2"], ["__class__=1"], ["parents="], ["name="]):
        with pytest.raises(UsageError):
            new_object_command(bad)


OBJECTS = [{"oid": "genesis_obj", "name": "genesis"}, {"oid": "root_obj", "name": "root"}]


@pytest.mark.parametrize("utterance, command", [
    ("make me a shopping list object", {"command": "create_object", "name": "shopping_list"}),
    ("create a new object called inventory", {"command": "create_object", "name": "inventory"}),
    ("Please create an object named 'My Stuff'.", {"command": "create_object", "name": "My Stuff"}),
    ("make a new object", {"command": "create_object"}),
    ("clone this object", {"command": "clone", "target_oid": "genesis_obj"}),
    ("make a copy of genesis called g2", {"command": "clone", "target_oid": "genesis_obj", "name": "g2"}),
    ("copy root_obj as spare", {"command": "clone", "target_oid": "root_obj", "name": "spare"}),
    ("clone nope", {"command": "clone", "target_oid": "nope"}),
    ("copy the list", None),
    ("make a method that returns the object", None),
    ("write a method that reverses a word", None),
    ("create a function object", None),
])
def test_object_requests_are_read_without_the_model(utterance, command):
    got = object_command(utterance, "genesis_obj", OBJECTS)
    if command is None:
        assert got is None
    else:
        assert {k: got.get(k) for k in command} == command and set(got) - set(command) <= {"parents", "slots"}


def test_eval_utterances_are_left_to_the_model():
    assert [u for u, *_ in CASES if object_command(u, "genesis_obj", OBJECTS)] == []


@pytest.mark.process
def test_terminal_commands_against_a_kernel(kernel, tmp_path, capsys):
    """/send with an unbalanced quote, /new, /clone, /self and the object phrasings, through
    the terminal's own line handling, against a real kernel."""
    with kernel.connect() as c:
        c.call("install_method", target_oid="genesis_obj", selector="greet",
               source='def greet(self, name):\n    """Greet someone."""\n    return "hello " + name\n')
    session = Session(kernel.endpoint, notify=print)
    chat = Chat(session, tmp_path / "client_history", kernel.home / "metacognition.jsonl")
    try:
        def say(line):
            chat.guarded(chat.handle, line)
            return capsys.readouterr().out

        out = say("/send greet don't")
        assert "split at spaces" in out and '→ "hello don\'t"' in out
        assert "cannot send that" in say("/send greet 99999999999999999999999")

        out = say("/new inventory count=3 label=bat")
        assert "✓ created" in out and "(inventory)" in out
        oid = out.split("✓ created ")[1].split()[0]
        out = say(f"/describe {oid}")
        assert "slot   count" in out and "slot   label" in out and "root_obj" in out
        assert "✗" in say("/new stray parents=nope")
        assert "! " in say("/new a b")

        out = say("/clone")
        assert "✓ cloned genesis_obj as" in out and "/target" in out
        assert "✗ UnknownObject" in say("/clone nope")
        out = say(f"/clone {oid} spare")
        assert f"✓ cloned {oid} as" in out and "(spare)" in out

        out = say("create a new object called shelf")       # no model: the pre-parse
        assert "create_object(" in out and "(shelf)" in out
        out = say("make a copy of genesis called g2")
        assert "clone(genesis_obj" in out and "✓ cloned genesis_obj as" in out and "(g2)" in out

        has_self = any(m["selector"] == "display_yourself" for m in session.methods("genesis_obj"))
        if not has_self:
            assert NO_SELF in say("/self")
            chat.greet()
            assert capsys.readouterr().out == ""
        with kernel.connect() as c:
            c.call("install_method", target_oid="genesis_obj", selector="display_yourself",
                   source='def display_yourself(self, system):\n    """Say who I am."""\n'
                          '    return "I am genesis.\\nI answer the Architect."\n')
        assert say("/self") == "I am genesis.\nI answer the Architect.\n"
        chat.greet()
        assert capsys.readouterr().out == "I am genesis.\nI answer the Architect.\n"

        assert "UnknownObject" in say("/describe nope")
        assert "UnknownObject" in say("/target nope") and session.target == "genesis_obj"
    finally:
        session.close()


def test_bytes_that_are_not_utf8_become_question_marks():
    from client.chat import clean_line
    assert clean_line("/send greet \udcff\x00") == (
        "/send greet ?", "(bytes that are not UTF-8 replaced with ?; control characters removed)")


# -- /adaptations, /revert, /stats and the CEM (issue #14) --------------------------------
ADAPTATION = {"id": "a1b2c3d4e5", "ts": 1700000000.0,
              "proposal": {"kind": "max_tokens", "target": "SYNTHESIZING", "value": 384,
                           "why": "answers were cut\nshort"},
              "before": {"max_tokens": 512},
              "scores": {"current": {"passed": 2, "missions": 3, "median_s": 21.5},
                         "proposed": {"passed": 3, "missions": 3, "median_s": 19.0}},
              "reverted": False}


def test_format_result_shows_the_cycles_cem_on_the_installed_line():
    result = {"state": "COMPLETE", "selector": "reverse_text", "source": "def reverse_text(self, t):\n    return t[::-1]\n",
              "duration_s": 10.8, "persona": "ALFRED",
              "cem": {"score": 0.6234, "relevance": 0.9, "novelty": 0.4, "diversity": 0.2, "similarity": "cosine"},
              "examples": [{"args": ["ab"], "expected": "ba", "actual": "ba", "error": None, "passed": True}]}
    text = format_result({"command": "initiate_cognitive_cycle"}, {"ok": True, "result": result})
    assert text.splitlines()[0] == "✓ reverse_text is installed (10.8s, ALFRED, CEM 0.62, 1/1 examples pass):"
    del result["cem"]        # a kernel without it still reads
    assert "CEM" not in format_result({"command": "initiate_cognitive_cycle"}, {"ok": True, "result": result})
    result["cem"] = {"score": None}
    assert "CEM" not in format_result({"command": "initiate_cognitive_cycle"}, {"ok": True, "result": result})


def test_adaptation_lines_show_one_adaptation_per_line():
    from client.chat import adaptation_lines
    lines = adaptation_lines({"adaptations": [ADAPTATION, {**ADAPTATION, "id": "ffff", "reverted": True,
                                                           "proposal": {"kind": "rule", "target": "VALIDATING",
                                                                        "value": "x" * 80}}]})
    assert len(lines) == 2
    first = lines[0]
    assert first.lstrip().startswith("a1b2c3d4e5") and "max_tokens SYNTHESIZING = 384" in first
    assert "practice 2/3 in 21.5s → 3/3 in 19s" in first and "answers were cut short" in first
    assert "(reverted)" not in first and "(reverted)" in lines[1] and "…" in lines[1]
    demo = {**ADAPTATION, "proposal": {"kind": "demonstrations", "target": "DECOMPOSING", "value": 2, "plans": [
        {"call": "gcd(a, b)", "examples": []}, {"call": "is_prime(n)", "examples": []}, "odd"]}}
    assert "demonstrations DECOMPOSING = 2 (gcd(a, b), is_prime(n))" in adaptation_lines({"adaptations": [demo]})[0]
    assert adaptation_lines({"adaptations": []}) == ["  (no adaptations adopted yet)"]
    assert adaptation_lines(None) == ["  (no adaptations adopted yet)"]
    assert adaptation_lines({"adaptations": [{"id": "odd", "ts": "soon", "scores": 3}, 7]})[0].lstrip().startswith("odd")


def test_stats_prints_the_records_table(tmp_path, capsys):
    events = [{"event": "cycle_end", "ts": 1700000000 + i, "state": "COMPLETE" if i % 2 else "FAILED",
               "duration_s": 10.0 + i, "cem": {"score": 0.5}} for i in range(4)]
    events.append({"event": "adaptation", "ts": 1700000010, "adopted": True, "outcome": "adopted: better",
                   "proposal": {"kind": "max_tokens", "target": "SYNTHESIZING", "value": 384}})
    chat = quiet_chat(tmp_path, log_text="\n".join(json.dumps(e) for e in events) + "\n{half")
    chat.handle("/stats")
    out = capsys.readouterr().out
    from batos.autotelic import read_events
    from batos.stats import table
    assert out.splitlines() == ["  " + line if line else "" for line in table(read_events(chat.log_path)).splitlines()]
    assert "50%" in out and "0.500" in out and "adopted" in out
    chat.log_path.unlink()
    chat.handle("/stats")
    assert "no log at" in capsys.readouterr().out
    with pytest.raises(UsageError, match="usage: /stats"):
        chat.handle("/stats day")
    for line in ("/adaptations", "/revert ID", "/stats"):
        assert line in HELP


def test_revert_needs_one_id(tmp_path):
    chat = quiet_chat(tmp_path)
    for line in ("/revert", "/revert a b", "/revert " + "x" * 65):
        with pytest.raises(UsageError, match="usage: /revert ID"):
            chat.handle(line)


@pytest.mark.process
def test_adaptations_and_revert_against_a_kernel(kernel, tmp_path, capsys):
    session = Session(kernel.endpoint, notify=print)
    chat = Chat(session, tmp_path / "client_history", kernel.home / "metacognition.jsonl")
    try:
        chat.guarded(chat.handle, "/adaptations")
        assert capsys.readouterr().out == "  (no adaptations adopted yet)\n"
        chat.guarded(chat.handle, "/revert nosuchid")
        out = capsys.readouterr().out
        assert out.startswith("! cannot revert nosuchid: ") and "nosuchid" in out[25:]
        assert "/adaptations" in out and "list_adaptations" not in out and len(out.splitlines()) == 1
        chat.guarded(chat.handle, "/stats")
        assert "no cycles in the record yet" in capsys.readouterr().out
    finally:
        session.close()
