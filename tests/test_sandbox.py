"""The sandbox through the kernel's front door: install_method + send_message on a real
kernel process, with real sandbox workers.

The red team (tests/sandbox_cases.py) must be refused at install or contained at run
time, with the kernel alive, the canary file never created and the image intact; the
benign suite must work, and state must follow the Persistence Covenant.
"""
from __future__ import annotations

import threading
import time

import pytest

from client.connection import KernelError
from tests.conftest import KernelProcess
from tests.sandbox_cases import ATTACKS, BENIGN, STATEFUL_CALLS, STATEFUL_METHODS

pytestmark = pytest.mark.process
SECRET = "s3cret-token-for-the-red-team"


@pytest.fixture(scope="module")
def red(tmp_path_factory):
    """One kernel for the module: methods time out after 1 s; a secret in its environment."""
    home = tmp_path_factory.mktemp("red")
    k = KernelProcess(home / "home", {"BATOS_METHOD_TIMEOUT_S": "1", "BATOS_SANDBOX_KILL_GRACE_S": "1",
                                      "BATOS_TEST_SECRET": SECRET})
    k.start()
    k.canary_dir = home / "canary"
    k.canary_dir.mkdir()
    yield k
    assert k.stop() == 0


def _outcome(conn, selector: str, source: str, args: list, kwargs: dict | None = None) -> tuple[str, str]:
    try:
        conn.call("install_method", target_oid="genesis_obj", selector=selector, source=source)
    except KernelError as exc:
        return exc.type, exc.message
    try:
        value = conn.call("send_message", target_oid="genesis_obj", selector=selector, args=args,
                          kwargs=kwargs or {})
    except KernelError as exc:
        return exc.type, exc.message
    return "ok", repr(value)


@pytest.mark.parametrize("name,kind,source", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attack_is_refused_or_contained(red, name, kind, source):
    canary = red.canary_dir / name
    pid = red.proc.pid
    with red.connect(timeout_s=30) as conn:
        outcome, message = _outcome(conn, "attack", source, [str(canary)])
        assert outcome in ("Rejected", "MethodError", "Timeout"), f"{name} got through: {message}"
        assert message.strip(), "the error says why"
        assert SECRET not in message
        ping = conn.call("ping")
    assert ping["pid"] == pid, "the kernel did not restart"
    assert not canary.exists(), f"{name} wrote outside the sandbox"


def test_the_red_team_has_forty_attacks_across_the_classes():
    kinds = {kind for _, kind, _ in ATTACKS}
    assert len(ATTACKS) >= 40
    assert {"subclass", "frames", "format", "builtins", "pickle", "ctypes", "sockets", "threads",
            "cpu", "memory", "recursion", "exit", "submodule", "aliasing", "leak", "confusion",
            "stdin", "covenant", "classes", "eval"} <= kinds


@pytest.mark.parametrize("name,source,args,kwargs,expected", BENIGN, ids=[b[0] for b in BENIGN])
def test_benign_method_works(red, name, source, args, kwargs, expected):
    with red.connect() as conn:
        conn.call("install_method", target_oid="genesis_obj", selector=name, source=source)
        assert conn.call("send_message", target_oid="genesis_obj", selector=name, args=args,
                         kwargs=kwargs)["value"] == expected


def test_state_follows_the_covenant_and_survives_a_restart(tmp_path):
    k = KernelProcess(tmp_path / "home")
    k.start()
    try:
        with k.connect() as conn:
            for selector, source in STATEFUL_METHODS.items():
                conn.call("install_method", target_oid="genesis_obj", selector=selector, source=source)
            for selector, args, kwargs, expected in STATEFUL_CALLS:
                got = conn.call("send_message", target_oid="genesis_obj", selector=selector,
                                args=args, kwargs=kwargs)["value"]
                assert got == expected, selector
            slots = conn.call("describe", target_oid="genesis_obj")["slots"]
            assert slots["count"] == "int" and slots["notes"] == "list" and slots["kept"] == "tuple"
        assert k.stop() == 0
        k.start()
        with k.connect() as conn:
            send = lambda sel, *a: conn.call("send_message", target_oid="genesis_obj",
                                             selector=sel, args=list(a))["value"]
            assert send("count") == 7
            assert send("notes") == ["milk", "eggs"]
            assert send("scores") == {"ada": 7}
            assert send("describe_types")[2:4] == ["1.5", "2024-01-02"]   # Decimal and date kept
            assert send("forget") is False
            assert "notes" not in conn.call("describe", target_oid="genesis_obj")["slots"]
    finally:
        k.stop()


def test_a_failed_call_commits_nothing(red):
    fails = ("def half_done(self):\n    self.half = 1\n    self.steps = [1]\n"
             "    if len(self.steps) == 1:\n        raise ValueError('stop here')\n"
             "    self._p_changed = True\n")
    with red.connect() as conn:
        conn.call("install_method", target_oid="genesis_obj", selector="half_done", source=fails)
        with pytest.raises(KernelError) as info:
            conn.call("send_message", target_oid="genesis_obj", selector="half_done")
        assert info.value.type == "MethodError" and "ValueError: stop here" in info.value.message
        slots = conn.call("describe", target_oid="genesis_obj")["slots"]
        assert "half" not in slots and "steps" not in slots


def test_a_covenant_breach_the_audit_cannot_see_is_refused_at_run_time(red):
    hidden = ("def hide(self):\n    keep = lambda box: box.append(1)\n    keep(self.box)\n    return 1\n")
    setup = ("def make_box(self):\n    self.box = []\n    self._p_changed = True\n    return self.box\n")
    with red.connect() as conn:
        conn.call("install_method", target_oid="genesis_obj", selector="make_box", source=setup)
        conn.call("install_method", target_oid="genesis_obj", selector="hide", source=hidden)
        assert conn.call("send_message", target_oid="genesis_obj", selector="make_box")["value"] == []
        with pytest.raises(KernelError) as info:
            conn.call("send_message", target_oid="genesis_obj", selector="hide")
        assert info.value.type == "MethodError" and "Persistence Covenant" in info.value.message
        assert conn.call("send_message", target_oid="genesis_obj", selector="box")["value"] == []


def test_methods_inherit_through_delegation(red):
    set_motto = ("def set_motto(self, text):\n    self.motto = text\n    self._p_changed = True\n"
                 "    return text\n")
    shout = "def shout_motto(self):\n    return self.motto.upper() + '!'\n"
    with red.connect() as conn:
        conn.call("install_method", target_oid="root_obj", selector="set_motto", source=set_motto)
        conn.call("install_method", target_oid="root_obj", selector="shout_motto", source=shout)
        conn.call("send_message", target_oid="root_obj", selector="set_motto", args=["hold fast"])
        # genesis delegates to root: it finds root's methods and root's slot
        assert conn.call("send_message", target_oid="genesis_obj",
                         selector="shout_motto")["value"] == "HOLD FAST!"
        # a write lands on the object itself, not on the parent
        conn.call("send_message", target_oid="genesis_obj", selector="set_motto", args=["mine"])
        assert conn.call("send_message", target_oid="root_obj", selector="motto")["value"] == "hold fast"
        assert conn.call("send_message", target_oid="genesis_obj", selector="motto")["value"] == "mine"


def test_a_runaway_method_does_not_block_other_requests(red):
    spin = "def spin(self):\n    while True:\n        pass\n"
    quick = "def quick(self, x):\n    return x + 1\n"
    with red.connect() as conn:
        conn.call("install_method", target_oid="genesis_obj", selector="spin", source=spin)
        conn.call("install_method", target_oid="genesis_obj", selector="quick", source=quick)
    errors = []

    def run_spin():
        with red.connect() as c:
            try:
                c.call("send_message", target_oid="genesis_obj", selector="spin")
            except KernelError as exc:
                errors.append(exc.type)
    spinners = [threading.Thread(target=run_spin) for _ in range(3)]
    for t in spinners:
        t.start()
    time.sleep(0.2)
    with red.connect() as conn:
        t0 = time.monotonic()
        for i in range(20):
            assert conn.call("send_message", target_oid="genesis_obj", selector="quick",
                             args=[i])["value"] == i + 1
        quick_s = time.monotonic() - t0
    for t in spinners:
        t.join(10)
    assert errors == ["Timeout"] * 3
    assert quick_s < 0.9, f"20 quick calls took {quick_s:.2f}s while three methods spun"


def test_ping_reports_the_sandbox_layers(red):
    with red.connect() as conn:
        deadline = time.monotonic() + 10
        while not conn.call("ping")["sandbox"]["layers"] and time.monotonic() < deadline:
            time.sleep(0.1)
        sandbox = conn.call("ping")["sandbox"]
    assert {"restricted-python", "RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_NPROC",
            "RLIMIT_FSIZE", "seccomp"} <= set(sandbox["layers"])
    assert sandbox["error"] is None


def test_workers_die_with_the_kernel(tmp_path):
    import psutil
    k = KernelProcess(tmp_path / "home")
    k.start()
    try:
        with k.connect() as conn:
            conn.call("install_method", target_oid="genesis_obj", selector="one",
                      source="def one(self):\n    return 1\n")
            assert conn.call("send_message", target_oid="genesis_obj", selector="one")["value"] == 1
        workers = [p for p in psutil.Process(k.proc.pid).children() if "batos.sandbox.worker" in
                   " ".join(p.cmdline())]
        assert workers, "the kernel runs its methods in worker processes"
        assert all(p.environ() == {"LC_ALL": "C.UTF-8"} for p in workers)
    finally:
        k.kill()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"workers outlived a kill -9 of the kernel: {[p.pid for p in alive]}"


def test_replies_too_large_and_values_that_cannot_be_stored_are_clear_errors(red):
    cases = {
        "huge_value": ("def huge_value(self):\n    return 'x' * 2000000\n", "MAX_MESSAGE_BYTES"),
        "huge_slot": ("def huge_slot(self):\n    self.pile = 'x' * 2000000\n    self._p_changed = True\n"
                      "    return 1\n", "MAX_MESSAGE_BYTES"),
        "too_deep": ("def too_deep(self):\n    x = []\n    for i in range(500):\n        x = [x]\n"
                     "    self.nest = x\n    self._p_changed = True\n    return 1\n", "nested deeper"),
        "keep_a_generator": ("def keep_a_generator(self):\n    self.gen = (i for i in range(3))\n"
                             "    self._p_changed = True\n    return 1\n", "not plain data"),
    }
    with red.connect() as conn:
        for selector, (source, why) in cases.items():
            conn.call("install_method", target_oid="genesis_obj", selector=selector, source=source)
            with pytest.raises(KernelError) as info:
                conn.call("send_message", target_oid="genesis_obj", selector=selector)
            assert info.value.type == "MethodError" and why in info.value.message, info.value.message
            assert selector in info.value.message
        slots = conn.call("describe", target_oid="genesis_obj")["slots"]
        assert not {"pile", "nest", "gen"} & set(slots)
