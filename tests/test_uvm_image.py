"""UvmObject and the Living Image on a real FileStorage in a temporary directory."""
import threading

import pytest
from ZODB.POSException import ConflictError

import config
from batos import genesis
from batos.image import ConflictsExhausted, ObjectNotFound
from batos.image import Image
from batos.uvm import Method, NotUnderstood, UvmObject


@pytest.fixture
def settings(tmp_path):
    return config.load({"BATOS_HOME": str(tmp_path)})


@pytest.fixture
def image(settings):
    img = Image.open(settings)
    img.bootstrap(genesis.incarnate)
    yield img
    img.close()


def reopen(image, settings):
    image.close()
    img = Image.open(settings)
    img.bootstrap(genesis.incarnate)
    return img


def test_reads_delegate_to_parents_in_order():
    a = UvmObject("a", colour="red", size=1)
    b = UvmObject("b", colour="blue", shape="round")
    child = UvmObject("child", parents=(a, b), size=2)
    assert child.size == 2            # own slot first
    assert child.colour == "red"      # then the first parent
    assert child.shape == "round"     # then the next
    with pytest.raises(AttributeError):
        child.missing
    child.colour = "green"            # writes go to the object's own slots
    assert child.colour == "green" and a.colour == "red"


def test_delegation_survives_cycles_in_the_parent_graph():
    a = UvmObject("a")
    b = UvmObject("b", parents=(a,), x=1)
    a.parents.append(b)
    assert a.x == 1
    with pytest.raises(AttributeError):
        a.nothing


def test_new_image_holds_the_primordial_objects(image):
    with image.reading() as s:
        objects = s.root["objects"]
        for oid in ("root_obj", "genesis_obj", "alfred_prototype_obj", "brick_prototype_obj",
                    "robin_prototype_obj", "babs_prototype_obj", "psm_idle_obj", "psm_decomposing_obj",
                    "psm_delegating_obj", "psm_synthesizing_obj", "psm_validating_obj",
                    "psm_complete_obj", "psm_failed_obj"):
            assert oid in objects
        assert s.get("genesis_obj").parents[0] is s.get("root_obj")
        assert s.get("psm_decomposing_obj").persona == "BRICK"
        with pytest.raises(ObjectNotFound):
            s.get("nothing_obj")


def test_image_resumes_where_it_left_off(image, settings):
    with image.transaction("teach") as s:
        g = s.get("genesis_obj")
        g.motto = "persist"
        g._install("shout", "def shout(self, t):\n    return t.upper() + '!'\n", origin="architect")
    image = reopen(image, settings)
    try:
        assert image.created is False
        with image.reading() as s:
            g = s.get("genesis_obj")
            assert g.motto == "persist"
            assert isinstance(g._slots["shout"], Method)
            assert g.shout.source.startswith("def shout(self, t):")   # kept as source
            assert g.shout.signature == "shout(t)"
            assert s.root["batos"]["boots"] == 2
    finally:
        image.close()


def test_covenant_line_is_what_saves_in_place_changes(image, settings):
    with image.transaction() as s:
        s.get("genesis_obj").items = ["first"]
    with image.transaction() as s:
        s.get("genesis_obj").items.append("lost")          # no covenant: not saved
    image = reopen(image, settings)
    try:
        with image.reading() as s:
            assert s.get("genesis_obj").items == ["first"]
        with image.transaction() as s:
            g = s.get("genesis_obj")
            g.items.append("kept")
            g._p_changed = True                             # the covenant line
    finally:
        image.close()
    image = reopen(image, settings)
    try:
        with image.reading() as s:
            assert s.get("genesis_obj").items == ["first", "kept"]
    finally:
        image.close()


def test_unknown_selector_becomes_a_mission_brief(image):
    with image.reading() as s:
        with pytest.raises(NotUnderstood) as info:
            s.get("genesis_obj")._doesNotUnderstand_("to_upper", ["hello"], {"strict": True})
    brief = info.value.brief
    assert brief.selector == "to_upper"
    assert brief.type == "unhandled_message"
    assert brief.args == ["arg0"] and "strict" in brief.kwargs
    assert brief.example_call == "to_upper('hello', strict=True)"


def test_transaction_aborts_on_error(image):
    with pytest.raises(RuntimeError):
        with image.transaction() as s:
            s.get("genesis_obj").doomed = True
            raise RuntimeError("boom")
    with image.reading() as s:
        assert "doomed" not in s.get("genesis_obj")._slots


def test_transact_retries_on_conflict(image):
    barrier = threading.Barrier(2)
    attempts = []

    def bump(s):
        attempts.append(1)
        g = s.get("genesis_obj")
        g.counter = g._slots.get("counter", 0) + 1
        if len(attempts) <= 2:
            barrier.wait(5)    # both threads read before either commits: one conflicts
        return g.counter

    threads = [threading.Thread(target=lambda: image.transact(bump)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    with image.reading() as s:
        assert s.get("genesis_obj").counter == 2
    assert len(attempts) == 3   # the loser ran again


def test_transact_gives_up_with_a_clear_error(image):
    def always_conflict(s):
        raise ConflictError("simulated")
    with pytest.raises(ConflictsExhausted, match="gave up"):
        image.transact(always_conflict, retries=2)
