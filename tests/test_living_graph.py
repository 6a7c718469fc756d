"""The living object graph on a real kernel process: new objects (``create_object``,
``clone``) that are listed, describable, addressable and survive restarts; bad input
refused with BadRequest; the ``system`` view a method may ask for; the seed client's
id-less flow; doesNotUnderstand inside methods with the embedded model; and the
Two-Cycle Introspective Genesis."""
import subprocess
import sys
import time

import pytest
import zmq

from batos import protocol as p
from client.connection import KernelError

pytestmark = pytest.mark.process

COUNTER = ("def bump(self, n):\n    \"\"\"Add n to the count and return it.\"\"\"\n"
           "    self.count = self.count + n\n    self._p_changed = True\n    return self.count\n")


def nested(n):
    value = 1
    for _ in range(n):
        value = [value]
    return value


DEEP = nested(200)     # deeper than plain data may go


def bad(conn, command, **fields):
    with pytest.raises(KernelError) as info:
        conn.call(command, **fields)
    return info.value


def test_created_and_cloned_objects_live_in_the_image_across_restarts(kernel):
    with kernel.connect() as c:
        made = c.call("create_object", name="Shopping list", parents=["genesis_obj"],
                      slots={"items": ["milk"], "count": 0, "meta": {"shop": "corner"}})
        assert made["name"] == "Shopping list" and made["oid"].startswith("shopping_list_")
        oid = made["oid"]
        assert oid in {o["oid"] for o in c.call("list_objects")}
        d = c.call("describe", target_oid=oid)
        assert d["parents"] == ["genesis_obj"] and d["slots"] == {"name": "str", "items": "list",
                                                                   "count": "int", "meta": "dict"}
        c.call("install_method", target_oid=oid, selector="bump", source=COUNTER)
        assert c.call("send_message", target_oid=oid, selector="bump", args=[2]) == {"value": 2}
        # it delegates to its parent: genesis's slots and methods answer through it
        assert c.call("send_message", target_oid=oid, selector="items") == {"value": ["milk"]}
        twin = c.call("clone", target_oid=oid, name="Second list")
        assert twin["oid"] != oid and twin["name"] == "Second list"
        assert c.call("send_message", target_oid=twin["oid"], selector="bump", args=[5]) == {"value": 7}
        assert c.call("send_message", target_oid=oid, selector="bump", args=[1]) == {"value": 3}
        assert c.call("describe", target_oid=twin["oid"])["parents"] == ["genesis_obj"]
        plain_clone = c.call("clone", target_oid="genesis_obj")
        assert plain_clone["name"] == "genesis copy"
    kernel.stop()
    # the README's way to look inside a stopped image: ZODB's own tools
    fs = str(kernel.home / "live_image.fs")
    tail = subprocess.run([sys.executable, "-m", "ZODB.scripts.fstail", "-n", "30", fs],
                          capture_output=True, text=True, timeout=60)
    assert tail.returncode == 0 and "create_object" in tail.stdout and f"clone {oid}" in tail.stdout
    refs = subprocess.run([sys.executable, "-m", "ZODB.scripts.fsrefs", fs], capture_output=True,
                          text=True, timeout=60)
    assert refs.returncode == 0 and refs.stdout == ""
    kernel.start()
    with kernel.connect() as c:
        assert c.call("send_message", target_oid=oid, selector="bump", args=[1]) == {"value": 4}
        assert c.call("send_message", target_oid=twin["oid"], selector="count") == {"value": 7}
        assert {oid, twin["oid"], plain_clone["oid"]} <= {o["oid"] for o in c.call("list_objects")}
    assert '"event": "object_created"' in (kernel.home / "metacognition.jsonl").read_text()


@pytest.mark.parametrize("fields, says", [
    ({"parents": ["nobody_obj"]}, "no parent object 'nobody_obj'"),
    ({"parents": ["root_obj", "root_obj"]}, "named twice"),
    ({"slots": {"_secret": 1}}, "not a slot name"),
    ({"slots": {"parents": []}}, "not a slot name"),
    ({"slots": {"bad name": 1}}, "not a slot name"),
    ({"slots": {"deep": DEEP}}, "not plain data"),
    ({"name": ""}, "name"),
    ({"name": 5}, "name"),
    ({"parents": "root_obj"}, "parents"),
    ({"slots": ["x"]}, "slots"),
])
def test_create_object_refuses_bad_input_and_adds_nothing(conn, fields, says):
    before = conn.call("list_objects")
    err = bad(conn, "create_object", **fields)
    assert err.type == "BadRequest" and says in err.message
    assert conn.call("list_objects") == before


def test_clone_refuses_what_is_not_there(conn):
    before = conn.call("list_objects")
    assert bad(conn, "clone", target_oid="nobody_obj").type == "UnknownObject"
    assert bad(conn, "clone", target_oid="genesis_obj", name="x" * 300).type == "BadRequest"
    assert bad(conn, "clone").type == "BadRequest"
    assert conn.call("list_objects") == before


def test_a_method_with_a_system_parameter_is_given_the_system_view(conn):
    conn.call("install_method", target_oid="genesis_obj", selector="census",
              source="def census(self, system):\n    \"\"\"Count objects.\"\"\"\n"
                     "    return [system['object_count'], sorted(o['oid'] for o in system['objects'])[:2]]\n")
    value = conn.call("send_message", target_oid="genesis_obj", selector="census")["value"]
    n = len(conn.call("list_objects"))
    assert value[0] == n and value[1] == sorted(o["oid"] for o in conn.call("list_objects"))[:2]
    # the caller may still pass its own
    mine = {"object_count": 1, "objects": [{"oid": "x"}]}
    assert conn.call("send_message", target_oid="genesis_obj", selector="census", args=[mine]) == \
        {"value": [1, ["x"]]}


def raw_socket(kernel):
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(kernel.endpoint)
    return s


def test_a_request_without_id_gets_one_reply_unless_it_asks_for_events(kernel):
    s = raw_socket(kernel)
    try:
        s.send(p.pack({"command": "install_method", "target_oid": "genesis_obj", "selector": "twice",
                       "source": "def twice(self, x):\n    \"\"\"Twice.\"\"\"\n    return x * 2\n"}))
        assert s.poll(10000)
        assert p.unpack(s.recv())["result"]["state"] == "COMPLETE"
        assert not s.poll(300)
        s.send(p.pack({"command": "ping", "stream": True}))
        assert s.poll(5000) and p.unpack(s.recv())["final"] is True
    finally:
        s.close()


# ------------------------------------------------------------------ with the embedded model

@pytest.mark.model
def test_the_seed_client_flow_run_literally_gets_the_method_then_the_greeting(kernel):
    """The seed's chat_client.py: send the payload, one recv(), print; then the Architect's
    words through the client's translator, one recv(), print."""
    from client.session import Session
    s = raw_socket(kernel)
    try:
        s.send(p.pack({"command": "initiate_cognitive_cycle", "target_oid": "genesis_obj",
                       "mission_brief": {"type": "unhandled_message", "selector": "greet_by_name",
                                         "args": ["name"], "kwargs": {}}}))
        assert s.poll(300_000)
        reply = p.unpack(s.recv())          # the one reply is the final one, not a progress event
        print("--- KERNEL RESPONSE ---", reply)
        assert reply["final"] is True and reply["ok"] is True, reply
        assert reply["result"]["state"] == "COMPLETE" and "def greet_by_name" in reply["result"]["source"]
        assert not s.poll(500)
        session = Session(kernel.endpoint)
        try:
            command = session.translate("Greet me as Architect")
        finally:
            session.close()
        assert command["command"] == "send_message" and command["selector"] == "greet_by_name", command
        command.pop("id", None)
        s.send(p.pack(command))
        assert s.poll(120_000)
        reply = p.unpack(s.recv())
        print("--- KERNEL RESPONSE ---", reply)
        assert reply["ok"] is True and "Architect" in str(reply["result"]["value"]), reply
        assert not s.poll(300)
    finally:
        s.close()


@pytest.mark.model
def test_a_method_calling_a_missing_sibling_gets_it_written_in_one_send(kernel):
    with kernel.connect(timeout_s=600) as c:
        c.call("install_method", target_oid="genesis_obj", selector="shout_greeting",
               source="def shout_greeting(self, name):\n"
                      "    \"\"\"Greet name in capital letters with an exclamation mark.\"\"\"\n"
                      "    return self.to_capitals('hello ' + name) + '!'\n")
        states = []
        rid = c.send({"command": "send_message", "target_oid": "genesis_obj", "selector": "shout_greeting",
                      "args": ["bob"]})
        reply = c.wait(rid, 600, on_progress=lambda e: states.append(e.get("state")))
        assert reply["ok"], reply
        assert reply["result"]["value"] == "HELLO BOB!"
        assert [x["selector"] for x in reply["result"]["cycles"]] == ["to_capitals"]
        assert "SYNTHESIZING" in states and "COMPLETE" in states
        methods = {m["selector"] for m in c.call("describe", target_oid="genesis_obj")["methods"]}
        assert "to_capitals" in methods
        assert c.call("send_message", target_oid="genesis_obj", selector="shout_greeting",
                      args=["al"]) == {"value": "HELLO AL!"}


@pytest.mark.model
def test_genesis_writes_display_yourself_and_the_client_shows_it(make_kernel):
    k = make_kernel(env={"BATOS_GENESIS": "1"})
    with k.connect() as c:
        assert c.call("ping")["pong"]          # serving while genesis runs
    k.wait_events(lambda ev: any(e["event"] == "genesis" and e.get("step") in ("done", "failed")
                                 for e in ev), 600)
    steps = [e for e in k.events() if e["event"] == "genesis"]
    assert steps[-1]["step"] == "done", steps
    ends = [e for e in k.events() if e["event"] == "cycle_end"]
    assert [e["selector"] for e in ends][:2] == ["describe_how_to_display_yourself", "display_yourself"]
    with k.connect() as c:
        shown = c.call("send_message", target_oid="genesis_obj", selector="display_yourself")["value"]
    assert isinstance(shown, str) and shown.strip()
    assert "System is live. Awaiting Architect's command..." in k.log()
    assert "display_yourself" in k.log() and "SYNTHESIZING" in k.log()     # the narration
    # a restart does not run it again
    k.stop()
    k.start()
    time.sleep(2)
    assert sum(e["event"] == "genesis" and e.get("step") == "start" for e in k.events()) == 1
