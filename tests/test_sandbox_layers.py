"""Each layer of the sandbox on its own.

- The red team with the PersistenceGuardian bypassed: each attack is written straight
  into a real image and called through a real SandboxPool, so only RestrictedPython, the
  guards and the worker process stand in the way.
- The OS layer with every language guard bypassed: plain, unrestricted Python runs in a
  process after ``lockdown.lock_down`` and tries to reach out.
- The plain-data codec the kernel and workers speak.
"""
from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import json
import os
import subprocess
import sys
import textwrap

import pytest

import config
from batos import plain
from batos.sandbox.pool import MethodFailed, MethodTimedOut
from tests.conftest import InProcessKernel
from tests.sandbox_cases import ATTACKS, LIBRARY_TOUR, library_tour

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """(image, run) where run(selector, source, *args) installs without the audit's veto and
    calls through the kernel's own path; one in-process kernel for the module."""
    home = tmp_path_factory.mktemp("layers")
    k = InProcessKernel(config.load({}, HOME=home, METHOD_TIMEOUT_S=1.0, SANDBOX_KILL_GRACE_S=1.0,
                                    MEMORY_ENABLED=False))

    def run(selector, source, *args):
        k.image.transact(lambda s: s.get("genesis_obj")._install(selector, source, origin="test"))
        return k.send("genesis_obj", selector, *args)   # no refusal at install here
    run.pool = k.sandbox
    yield k.image, run
    k.close()


@pytest.mark.parametrize("name,kind,source", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attack_is_contained_without_the_guardian(sandbox, tmp_path, name, kind, source):
    image, run = sandbox
    canary = tmp_path / "canary"
    if name == "covenant_breach_hidden":
        run("attack", "def attack(self, path):\n    self.box = []\n    self._p_changed = True\n", "x")
    with pytest.raises((MethodFailed, MethodTimedOut)) as info:
        value = run("attack", source, str(canary))
        pytest.fail(f"{name} got through: {value!r}")
    assert str(info.value).strip()
    assert not canary.exists(), f"{name} wrote outside the sandbox"
    if kind == "covenant":
        assert "Persistence Covenant" in str(info.value) or "_p_changed" in str(info.value)


def test_common_library_calls_work_in_a_locked_down_worker(sandbox):
    """The allowed modules' common calls (strftime, strptime, re, json, decimal, ...) need
    no file and no import a method could not make once the worker is locked down."""
    _, run = sandbox
    failed = run("tour", library_tour())
    assert failed == [], [(LIBRARY_TOUR[i], error) for i, error in failed]


def test_a_dead_worker_is_replaced(sandbox):
    _, run = sandbox
    lost = run.pool.lost
    with pytest.raises(MethodTimedOut):
        run("spin", "def spin(self):\n    while True:\n        try:\n            pass\n"
                    "        finally:\n            continue\n")
    assert run.pool.lost == lost + 1                  # killed past the hard deadline
    assert run("ok", "def ok(self):\n    return 42\n") == 42


# ---------------------------------------------------------------------------- the OS layer

ESCAPES = r"""
import ctypes, json, os, resource, signal, socket, sys, threading
from batos.sandbox import lockdown
victim, parent = sys.argv[1], int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
r, w = os.dup(0), os.dup(1)
layers = lockdown.lock_down(memory_mb=256, cpu_s=30, keep_fds={r, w}, require_seccomp=True)
results = {"layers": layers}

def attempt(name, fn):
    try:
        results[name] = "succeeded: %r" % (fn(),)
    except BaseException as exc:
        results[name] = "refused: %s" % type(exc).__name__

attempt("open_read", lambda: open("/etc/hostname").read())
attempt("open_write", lambda: open(victim + ".new", "w").write("x"))
attempt("unlink", lambda: os.unlink(victim))
attempt("rename", lambda: os.rename(victim, victim + ".moved"))
attempt("truncate", lambda: os.truncate(victim, 0))
attempt("chmod", lambda: os.chmod(victim, 0o777))
attempt("mkdir", lambda: os.mkdir(victim + ".d"))
attempt("symlink", lambda: os.symlink(victim, victim + ".lnk"))
attempt("socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
attempt("socketpair", lambda: socket.socketpair())
attempt("fork", lambda: os.fork())
attempt("exec", lambda: os.execv("/bin/sh", ["sh", "-c", "touch " + victim + ".exec"]))
attempt("thread", lambda: threading.Thread(target=print).start())
attempt("kill_parent", lambda: os.kill(parent, signal.SIGKILL))
attempt("raise_limit", lambda: resource.setrlimit(resource.RLIMIT_AS, (-1, -1)))
attempt("pipe", lambda: os.pipe())
attempt("memory", lambda: len(bytearray(1024 ** 3)))
def raw(nr, *args):
    rc = libc.syscall(nr, *args)
    if rc < 0:
        raise OSError(ctypes.get_errno(), "syscall %d" % nr)
    return rc
attempt("ptrace_attach", lambda: raw(101, 16, parent, 0, 0))
attempt("x32_open", lambda: raw(0x40000000 | 2, b"/etc/hostname", 0))
attempt("unset_deathsig", lambda: raw(157, 1, 0))
attempt("read_stdin", lambda: os.read(0, 10) or "empty")
results["environ"] = sorted(os.environ)
os.write(w, json.dumps(results).encode())
"""


def test_the_os_layer_holds_when_the_language_guards_are_gone(tmp_path):
    victim = tmp_path / "image.fs"
    victim.write_text("precious")
    proc = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {ROOT!r})\n" + ESCAPES,
         str(victim), str(os.getpid())],
        input=b"", capture_output=True, env={"LC_ALL": "C.UTF-8"}, cwd="/", timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    results = json.loads(proc.stdout)
    assert "seccomp" in results.pop("layers")
    assert results.pop("environ") == ["LC_ALL"]
    assert results.pop("read_stdin") == "succeeded: 'empty'"   # stdin is /dev/null
    for name, outcome in results.items():
        assert outcome.startswith("refused"), f"{name}: {outcome}"
    assert results["memory"] == "refused: MemoryError"
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.fs"]


def test_seccomp_program_jumps_land_on_the_returns():
    from batos.sandbox import lockdown
    program = lockdown.seccomp_program([1, 2, 3])
    eperm = len(program) - 1
    for i, (code, jt, jf, k) in enumerate(program):
        if code in (0x15, 0x35) and jt and i > 3:
            assert i + 1 + jt == eperm
    assert program[-2][3] == lockdown.SECCOMP_RET_ALLOW
    assert program[-1][3] == lockdown.SECCOMP_RET_ERRNO | lockdown.EPERM


# ---------------------------------------------------------------------------- plain data

@pytest.mark.parametrize("value", [
    None, True, 0, -1, 2 ** 70, -(2 ** 80), 1.5, float("inf"), "text", b"\x00raw", [1, [2, [3]]],
    (1, "a"), {"a": 1, 2: "b", (1, 2): None}, {1, 2}, frozenset({"x"}), bytearray(b"ab"),
    complex(1, -2), decimal.Decimal("1.10"), fractions.Fraction(2, 3),
    datetime.datetime(2024, 1, 2, 3, 4, 5, 6), datetime.date(2024, 1, 2), datetime.time(1, 2),
    datetime.timedelta(days=2, seconds=5, microseconds=7),
    datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
    collections.deque([1, 2], maxlen=5), collections.Counter("aab"),
    collections.OrderedDict([("b", 1), ("a", 2)]), collections.defaultdict(list, {"k": [1]}),
])
def test_plain_values_round_trip_with_their_types(value):
    back = plain.decode(plain.encode(value))
    assert back == value and type(back) is type(value)
    if isinstance(value, collections.deque):
        assert back.maxlen == value.maxlen
    if isinstance(value, collections.defaultdict):
        assert back.default_factory is list


@pytest.mark.parametrize("value", [object(), len, plain, lambda: 0, collections.defaultdict(lambda: 1)])
def test_values_that_are_not_plain_are_refused(value):
    with pytest.raises(plain.NotPlain):
        plain.encode(value)


def test_self_containing_values_are_refused():
    loop = []
    loop.append(loop)
    with pytest.raises(plain.NotPlain):
        plain.encode(loop)


@pytest.mark.parametrize("tree", [
    ["x"], ["l", ["zz"]], ["d", 1], ["d", ["l"], 1], ["I", "12a"], ["I", "9" * 5000], ["F", 1, 0],
    ["dt", "yesterday"], ["Dd", "os.system"], ["q", "3"], {"a": 1}, ["s", ["l"]],
])
def test_malformed_plain_data_is_refused(tree):
    import ormsgpack
    with pytest.raises(plain.NotPlain):
        plain.decode(ormsgpack.packb(tree))


def test_deeply_nested_data_is_refused_not_crashed():
    import ormsgpack
    tree = "x"
    for _ in range(plain.MAX_DEPTH + 5):
        tree = ["l", tree]
    with pytest.raises(plain.NotPlain):
        plain.decode(ormsgpack.packb(tree))


def test_the_guard_allows_plain_format_fields_only():
    from batos import restricted
    assert restricted.guarded_getattr("{:.2f}|{name!r:>5}", "format")(1.234, name="a") == "1.23|  'a'"
    assert restricted.guarded_getattr("{0}-{0}", "format")("x") == "x-x"
    for template in ("{0.real}", "{0[k]}", "{:{0.real}}"):
        with pytest.raises(restricted.SandboxViolation):
            restricted.guarded_getattr(template, "format")(1)
    with pytest.raises(restricted.SandboxViolation):
        restricted.guarded_getattr(str, "format")("{0.real}", 1)


def test_module_proxies_hide_unsafe_names_and_foreign_modules():
    from batos import restricted
    assert not hasattr(restricted.safe_module("operator"), "attrgetter")
    assert not hasattr(restricted.safe_module("string"), "Formatter")
    assert not hasattr(restricted.safe_module("re"), "enum")
    assert restricted.safe_module("collections").abc.Mapping is collections.abc.Mapping
    with pytest.raises(ImportError):
        restricted.guarded_import("os")
    with pytest.raises(restricted.SandboxViolation):
        restricted.safe_module("math").pi = 3


def test_worker_source_has_no_unexpected_imports():
    """The worker imports only what it needs before it locks down (no ZODB, no pydantic)."""
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {ROOT!r})
        import batos.sandbox.worker
        heavy = [m for m in ("ZODB", "pydantic", "zmq", "torch", "llama_cpp") if m in sys.modules]
        print(heavy)
    """)
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
