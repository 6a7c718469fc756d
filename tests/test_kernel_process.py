"""The real ``python -m batos`` on a temporary BATOS_HOME and a free loopback port."""
import subprocess
import sys
import threading
import time

import pytest
import zmq

from batos import protocol as p
from client.connection import KernelError
from tests.conftest import ROOT

pytestmark = pytest.mark.process

SHOUT = 'def shout(self, text):\n    """Upper-case and exclaim."""\n    return text.upper() + "!"\n'
COUNTER = ("def bump(self, n=1):\n    self.count = self.count + n if hasattr(self, 'count') else n\n"
           "    self._p_changed = True\n    return self.count\n")


def test_taught_method_survives_a_restart(make_kernel, tmp_path):
    k = make_kernel(home=tmp_path / "home")
    with k.connect() as c:
        assert c.call("install_method", target_oid="genesis_obj", selector="shout",
                      source=SHOUT) == {"state": "COMPLETE", "findings": [], "examples": []}
        assert c.call("send_message", target_oid="genesis_obj", selector="shout",
                      args=["hello"]) == {"value": "HELLO!"}
        assert c.call("install_method", target_oid="genesis_obj", selector="bump", source=COUNTER)
        assert c.call("send_message", target_oid="genesis_obj", selector="bump", args=[5])["value"] == 5
    assert k.stop() == 0
    k.start()
    with k.connect() as c:
        assert c.call("send_message", target_oid="genesis_obj", selector="shout",
                      args=["again"]) == {"value": "AGAIN!"}
        assert c.call("send_message", target_oid="genesis_obj", selector="bump",
                      kwargs={"n": 2})["value"] == 7
        d = c.call("describe", target_oid="genesis_obj")
    assert {"selector": "shout", "signature": "shout(text)", "doc": "Upper-case and exclaim.",
            "owner": "genesis_obj", "examples": []} in d["methods"]
    assert d["parents"] == ["root_obj"] and d["slots"]["count"] == "int"


def test_covenant_breach_is_refused_and_leaves_no_trace(conn):
    reply = conn.request({"command": "install_method", "target_oid": "genesis_obj", "selector": "remember",
                          "source": "def remember(self, x):\n    self.memory = x\n    return x\n"})
    assert reply["ok"] is False
    assert reply["error"]["type"] == "Rejected"
    assert "Persistence Covenant" in reply["error"]["message"]
    assert reply["result"]["state"] == "FAILED" and reply["result"]["findings"]
    methods = [m["selector"] for m in conn.call("describe", target_oid="genesis_obj")["methods"]]
    assert "remember" not in methods


def test_dangerous_code_is_refused(conn):
    with pytest.raises(KernelError) as info:
        conn.call("install_method", target_oid="genesis_obj", selector="leak",
                  source="def leak(self):\n    import os\n    return os.environ\n")
    assert info.value.type == "Rejected" and "import of 'os'" in info.value.message


def raw_request(kernel, frames, timeout_ms=5000):
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(kernel.endpoint)
    try:
        s.send_multipart(frames)
        assert s.poll(timeout_ms), "no reply to a malformed request"
        return p.unpack(s.recv())
    finally:
        s.close()


BAD_REQUESTS = [
    ("not_msgpack", [b"\xc1\xc1"], "BadRequest", None),
    ("not_a_map", [p.pack([1, 2, 3])], "BadRequest", None),
    ("no_command", [p.pack({"id": "a"})], "BadRequest", "a"),
    ("unknown_command", [p.pack({"id": "b", "command": "format_disk"})], "UnknownCommand", "b"),
    ("missing_fields", [p.pack({"id": "c", "command": "send_message"})], "BadRequest", "c"),
    ("wrong_type", [p.pack({"id": "d", "command": "send_message", "target_oid": "genesis_obj",
                            "selector": "x", "args": "oops"})], "BadRequest", "d"),
    ("unknown_object", [p.pack({"id": "e", "command": "describe", "target_oid": "nobody"})],
     "UnknownObject", "e"),
    ("private_selector", [p.pack({"id": "f", "command": "send_message", "target_oid": "genesis_obj",
                                  "selector": "_slots"})], "BadRequest", "f"),
    ("dunder_selector", [p.pack({"id": "g", "command": "send_message", "target_oid": "genesis_obj",
                                 "selector": "__reduce__"})], "BadRequest", "g"),
    ("oversized", [p.pack({"id": "h", "command": "ping", "pad": "x" * (1 << 21)})], "BadRequest", None),
    ("extra_frames", [p.pack({"id": "i", "command": "ping"}), b"extra"], "BadRequest", None),
    ("bad_id_type", [p.pack({"id": [1], "command": "ping"})], "BadRequest", None),
    ("install_private", [p.pack({"id": "j", "command": "install_method", "target_oid": "genesis_obj",
                                 "selector": "__init__", "source": "def __init__(self): pass"})],
     "BadRequest", "j"),
    ("cycle_bad_brief", [p.pack({"id": "k", "command": "initiate_cognitive_cycle",
                                 "target_oid": "genesis_obj", "mission_brief": {"selector": 5}})],
     "BadRequest", "k"),
]


def test_bad_input_gets_clear_errors_and_the_kernel_goes_on(kernel):
    for name, frames, error_type, rid in BAD_REQUESTS:
        reply = raw_request(kernel, frames)
        assert reply["final"] is True and reply["ok"] is False, name
        assert reply["error"]["type"] == error_type, (name, reply)
        assert reply["error"]["message"], name
        assert reply["id"] == rid, name
    with kernel.connect() as c:
        assert c.call("ping")["pong"] is True
    assert kernel.proc.poll() is None


def test_method_errors_are_reported_and_commit_nothing(conn):
    conn.call("install_method", target_oid="genesis_obj", selector="half_done",
              source="def half_done(self):\n    self.partial = 1\n    self._p_changed = True\n"
                     "    return 1 / 0\n")
    with pytest.raises(KernelError) as info:
        conn.call("send_message", target_oid="genesis_obj", selector="half_done")
    assert info.value.type == "MethodError" and "ZeroDivisionError" in info.value.message
    assert "partial" not in conn.call("describe", target_oid="genesis_obj")["slots"]
    with pytest.raises(KernelError) as info:
        conn.call("send_message", target_oid="genesis_obj", selector="half_done", args=[1, 2])
    assert info.value.type == "MethodError" and "TypeError" in info.value.message


def test_runaway_method_times_out_while_the_kernel_keeps_serving(make_kernel):
    k = make_kernel(env={"BATOS_METHOD_TIMEOUT_S": "1"})
    with k.connect(timeout_s=10) as c:
        c.call("install_method", target_oid="genesis_obj", selector="spin",
               source="def spin(self):\n    n = 0\n    while True:\n        n += 1\n")
        c.call("install_method", target_oid="genesis_obj", selector="stubborn",
               source="def stubborn(self):\n    while True:\n        try:\n            pass\n"
                      "        except Exception:\n            pass\n")
        rid = c.send({"command": "send_message", "target_oid": "genesis_obj", "selector": "spin"})
        time.sleep(0.2)
        t0 = time.monotonic()
        assert c.call("ping")["pong"]          # answered while the method spins
        assert time.monotonic() - t0 < 0.5
        reply = c.wait(rid, 10)
        assert reply["error"]["type"] == "Timeout" and "1s" in reply["error"]["message"]
        reply = c.request({"command": "send_message", "target_oid": "genesis_obj", "selector": "stubborn"}, 10)
        assert reply["error"]["type"] == "Timeout"
        assert c.call("send_message", target_oid="genesis_obj", selector="name") == {"value": "genesis"}


def test_replies_are_matched_to_pipelined_requests(conn):
    conn.call("install_method", target_oid="genesis_obj", selector="double",
              source="def double(self, x):\n    return 2 * x\n")
    ids = {conn.send({"command": "send_message", "target_oid": "genesis_obj", "selector": "double",
                      "args": [i]}): i for i in range(100)}
    for rid, i in reversed(list(ids.items())):
        reply = conn.wait(rid, 10)
        assert reply["id"] == rid and reply["result"]["value"] == 2 * i


def test_seed_style_request_without_id_gets_one_reply(kernel):
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(kernel.endpoint)
    try:
        s.send(p.pack({"command": "initiate_cognitive_cycle", "target_oid": "nobody_obj", "stream": False,
                       "mission_brief": {"type": "unhandled_message", "selector": "greet_by_name",
                                         "args": ["name"], "kwargs": {}}}))
        assert s.poll(5000)
        reply = p.unpack(s.recv())
        assert reply["id"] is None and reply["final"] is True
        assert reply["error"]["type"] == "UnknownObject"
        assert not s.poll(300)   # nothing more
    finally:
        s.close()


def test_list_objects_and_data_slots(conn):
    objects = conn.call("list_objects")
    oids = {o["oid"] for o in objects}
    assert {"genesis_obj", "root_obj", "alfred_prototype_obj", "psm_idle_obj"} <= oids
    assert all(set(o) == {"oid", "name"} for o in objects)
    assert conn.call("send_message", target_oid="brick_prototype_obj", selector="persona") == {"value": "BRICK"}
    with pytest.raises(KernelError) as info:
        conn.call("send_message", target_oid="genesis_obj", selector="name", args=[1])
    assert info.value.type == "MethodError" and "data slot" in info.value.message


def test_second_kernel_on_the_same_image_refuses_clearly(kernel, make_kernel):
    other = make_kernel(home=kernel.home, start=False)
    proc = subprocess.run([sys.executable, "-m", "batos"], cwd=ROOT, env=other.env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3
    assert "Another kernel" in proc.stderr
    with kernel.connect() as c:
        assert c.call("ping")["pong"]


def test_bad_setting_stops_the_start_with_the_variable_named(make_kernel):
    k = make_kernel(env={"BATOS_METHOD_TIMEOUT_S": "forever"}, start=False)
    proc = subprocess.run([sys.executable, "-m", "batos"], cwd=ROOT, env=k.env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "BATOS_METHOD_TIMEOUT_S" in proc.stderr


def test_shutdown_request_and_sigterm_stop_gracefully(make_kernel, tmp_path):
    k = make_kernel(home=tmp_path / "h")
    with k.connect() as c:
        assert c.call("shutdown") == {"stopping": True}
    assert k.proc.wait(20) == 0
    k.start()
    with k.connect() as c:
        c.call("install_method", target_oid="genesis_obj", selector="shout", source=SHOUT)
    assert k.stop() == 0
    events = k.events()
    assert [e["event"] for e in events].count("kernel_stop") == 2
    assert "Traceback" not in k.log()


def test_many_clients_at_once(conn, kernel):
    conn.call("install_method", target_oid="genesis_obj", selector="shout", source=SHOUT)
    errors = []

    def client(n):
        try:
            with kernel.connect() as c:
                for i in range(20):
                    v = c.call("send_message", target_oid="genesis_obj", selector="shout", args=[f"c{n}-{i}"])
                    assert v == {"value": f"C{n}-{i}!"}
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors


WORK = ("def work(self, n, tag):\n    \"\"\"Some arithmetic, then the tag back.\"\"\"\n"
        "    total = 0\n    for i in range(n):\n        total += i * i\n    return [tag, total]\n")


def test_a_kernel_under_load_pushes_back_instead_of_refusing(make_kernel):
    """Far more requests in flight than the kernel takes at once: every one is answered,
    correctly, none with Busy; and ping is still answered while they queue."""
    k = make_kernel({"BATOS_MAX_INFLIGHT_REQUESTS": "4", "BATOS_MAX_QUEUED_REQUESTS": "16"})
    with k.connect(timeout_s=60) as c:
        c.call("install_method", target_oid="genesis_obj", selector="work", source=WORK)
        expected = sum(i * i for i in range(2000))
        outcomes, pings = [], []

        def flood(n):
            with k.connect(timeout_s=120) as fc:
                ids = {fc.send({"command": "send_message", "target_oid": "genesis_obj", "selector": "work",
                                "args": [2000, f"{n}-{i}"], "stream": False}): f"{n}-{i}" for i in range(100)}
                for rid, tag in ids.items():
                    reply = fc.wait(rid, 120)
                    outcomes.append((tag, reply))

        threads = [threading.Thread(target=flood, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        for _ in range(5):
            t0 = time.monotonic()
            assert c.call("ping", timeout_s=30)["pong"] is True
            pings.append(time.monotonic() - t0)
        for t in threads:
            t.join(180)
    assert len(outcomes) == 400
    busy = [r for _, r in outcomes if not r["ok"]]
    assert not busy, busy[:3]
    assert all(r["result"]["value"] == [tag, expected] for tag, r in outcomes)
    assert max(pings) < 30
