"""The wire models: the seed client's payload, validation, and value encoding."""
import pytest
from pydantic import ValidationError

from batos import protocol as p

SEED_PAYLOAD = {"command": "initiate_cognitive_cycle", "target_oid": "genesis_obj",
                "mission_brief": {"type": "unhandled_message", "selector": "greet_by_name",
                                  "args": ["name"], "kwargs": {}}}


def test_seed_client_payload_without_id_validates():
    req = p.REQUESTS["initiate_cognitive_cycle"].model_validate(p.unpack(p.pack(SEED_PAYLOAD)))
    # no id: its progress events could not be matched, so only the final reply is sent
    assert req.id is None and req.stream is None and req.streams is False
    with_id = p.REQUESTS["ping"].model_validate({"command": "ping", "id": "x"})
    asked = p.REQUESTS["ping"].model_validate({"command": "ping", "stream": True})
    assert with_id.streams is True and asked.streams is True
    assert req.mission_brief.selector == "greet_by_name"
    assert req.mission_brief.args == ["name"]


@pytest.mark.parametrize("selector", ["_private", "__class__", "not-ident", "class", "", "x" * 65, "1abc"])
def test_bad_selectors_are_refused(selector):
    with pytest.raises(ValidationError):
        p.SendMessage.model_validate({"command": "send_message", "target_oid": "genesis_obj",
                                      "selector": selector})


@pytest.mark.parametrize("fields", [
    {"target_oid": 5, "selector": "x"},
    {"target_oid": "genesis_obj", "selector": "x", "args": "notalist"},
    {"target_oid": "genesis_obj", "selector": "x", "kwargs": []},
    {"target_oid": "genesis_obj"},
    {"target_oid": "", "selector": "x"},
])
def test_wrong_typed_or_missing_fields_are_refused(fields):
    with pytest.raises(ValidationError) as info:
        p.SendMessage.model_validate({"command": "send_message", **fields})
    assert p.describe_validation_error("send_message", info.value).startswith("send_message: ")


def test_unknown_fields_are_ignored_so_the_protocol_can_grow():
    req = p.Ping.model_validate({"command": "ping", "id": "a", "future_field": 1})
    assert req.id == "a"


def test_values_msgpack_cannot_carry_become_repr():
    assert p.to_wire({"a": (1, 2), "b": {3}}) == {"a": [1, 2], "b": "{3}"}
    assert p.to_wire(2 ** 100) == str(2 ** 100)
    assert p.to_wire(object()).startswith("<object object")
    p.pack(p.to_wire({"deep": [[[[1]]]], "none": None, "f": 1.5, "bytes": b"x"}))


def test_replies_have_the_contract_shape():
    assert p.ok_reply("r1", 5) == {"id": "r1", "final": True, "ok": True, "result": 5}
    err = p.error_reply(None, "BadRequest", "nope")
    assert err == {"id": None, "final": True, "ok": False, "error": {"type": "BadRequest", "message": "nope"}}
    ev = p.progress("r1", "state", state="IDLE", cycle_id="c")
    assert ev["final"] is False and ev["state"] == "IDLE"


def test_the_seed_clients_intent_in_kwargs_becomes_the_intent():
    brief = p.MissionBrief.model_validate({"type": "unhandled_message", "selector": "greet_me",
                                           "args": [], "kwargs": {"intent": "Greet me as Architect"}})
    assert brief.intent == "Greet me as Architect" and brief.kwargs == {}
    kept = p.MissionBrief.model_validate({"selector": "f", "intent": "mine", "kwargs": {"intent": "x"}})
    assert kept.intent == "mine" and kept.kwargs == {"intent": "x"}
