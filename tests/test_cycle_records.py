"""Typed cycles: each step's record carries its own data and is emitted when the step
ends; the result is built from the records; a FAILED result names its phase; a method is
audited once per attempt.  With ScriptedModel (a scripted stand-in for the LLM)."""
import threading

import pytest

import config
from batos import guardian
from batos.llm import GenerationError
from batos.protocol import CycleResult as WireCycleResult
from batos.protocol import MissionBrief
from batos.psm import PrototypalStateMachine
from tests.scripted import ScriptedModel

from tests.test_psm_scripted import BREACH, UPPER, image  # noqa: F401  (the fixture)

BRIEF = MissionBrief(selector="to_upper", args=["text"], intent="upper-case a text")


def run(image, model, retries="1", cancel=None):
    events = []
    psm = PrototypalStateMachine(image, model, config.load({"BATOS_CYCLE_RETRIES": retries, "BATOS_REPAIR_SAMPLES": "0", "BATOS_CODE_SAMPLES": "0"}),
                                 emit=events.append)
    return psm.run("c1", "genesis_obj", BRIEF, cancel), events


def states(events):
    return [e for e in events if e["event"] == "state"]


def test_each_step_reports_its_own_data_when_it_ends(image):
    result, events = run(image, ScriptedModel(plan={"queries": ["upper case", "str methods"]},
                                              methods=[UPPER]))
    steps = {e["state"]: e for e in states(events)}
    assert steps["DECOMPOSING"]["asked"] == "BRICK" and steps["DECOMPOSING"]["queries"] == \
        ["upper case", "str methods"]
    assert steps["DECOMPOSING"]["prompt_tokens"] == 10 and steps["DECOMPOSING"]["next"] == "DELEGATING"
    assert "asked" not in steps["DELEGATING"] and steps["DELEGATING"]["queries"] == \
        ["upper case", "str methods"]                            # what it searched with
    assert steps["SYNTHESIZING"]["asked"] == "ALFRED" and steps["SYNTHESIZING"]["answer_chars"] == len(UPPER)
    assert steps["VALIDATING"]["findings"] == [] and "asked" not in steps["VALIDATING"]
    assert steps["COMPLETE"]["installed"] == "to_upper" and steps["COMPLETE"]["next"] is None
    # emitted as each step ends: in order, each after the one before, with its duration
    ends = [e["ts"] for e in states(events)]
    assert ends == sorted(ends)
    assert all(e["duration_s"] >= 0 and e["elapsed_s"] >= e["duration_s"] for e in states(events))
    # one source: the result and cycle_end are the records
    assert result.transitions == [e["state"] for e in states(events)]
    end = events[-1]
    assert end["event"] == "cycle_end" and [s["state"] for s in end["steps"]] == result.transitions
    WireCycleResult.model_validate(result.wire())


@pytest.mark.parametrize("model, retries, phase, words", [
    (ScriptedModel(methods=["no code at all", "still none"]), "1", "parsing", "no usable Python"),
    (ScriptedModel(methods=[BREACH, BREACH]), "1", "audit", "Covenant"),
    (ScriptedModel(methods=[BREACH]), "0", "audit", "Covenant"),
])
def test_a_failed_result_names_the_phase_that_failed(image, model, retries, phase, words):
    result, events = run(image, model, retries)
    assert result.state == "FAILED" and result.phase == phase and words in result.reason
    wire = result.wire()
    assert wire["phase"] == phase
    WireCycleResult.model_validate(wire)
    failed = states(events)[-1]
    assert failed["state"] == "FAILED" and failed["phase"] == phase
    assert events[-1]["phase"] == phase


def test_model_errors_and_bugs_have_their_own_phases(image):
    class NoModel(ScriptedModel):
        def complete(self, *a, **k):
            raise GenerationError("BRICK's model hf:x/y: not in the cache")

    class Buggy(ScriptedModel):
        def complete(self, *a, **k):
            raise ZeroDivisionError("oops")
    result, events = run(image, NoModel())
    assert result.phase == "generation" and "not in the cache" in result.reason
    assert states(events)[-2]["state"] == "DECOMPOSING" and "error" in states(events)[-2]
    result, _ = run(image, Buggy())
    assert result.phase == "internal" and "ZeroDivisionError" in result.reason
    stop = threading.Event()
    stop.set()
    result, _ = run(image, ScriptedModel(methods=[UPPER]), cancel=stop)
    assert result.phase == "cycle" and "stopped" in result.reason


def test_a_source_is_audited_once_per_attempt(image, monkeypatch):
    calls = []
    real = guardian.audit

    def counting(source, *a, **k):
        calls.append(source)
        return real(source, *a, **k)
    monkeypatch.setattr(guardian, "audit", counting)
    result, _ = run(image, ScriptedModel(methods=[BREACH, UPPER]))
    assert result.state == "COMPLETE" and result.attempts == 2
    assert len(calls) == 2            # VALIDATING, once per attempt; COMPLETE reuses the report
    with image.reading() as s:
        method = s.get("genesis_obj")._slots["to_upper"]
        assert method.doc == "Upper-case." and method.signature.startswith("to_upper(")


def test_the_snapshot_is_frozen(image):
    psm = PrototypalStateMachine(image, ScriptedModel(), config.load({}))
    from batos.psm import CognitiveCycle
    cycle = CognitiveCycle("c", "genesis_obj", BRIEF, threading.Event())
    snap = psm._snapshot(cycle)
    with pytest.raises((AttributeError, TypeError)):
        snap.persona = "BRICK"
    with pytest.raises(TypeError):
        snap.states["IDLE"] = None


def test_the_state_machine_objects_retries_slot_gives_a_failing_method_more_repairs(image):
    """``retries`` on ``psm_obj`` (the self-tuning loop's lever) overrides CYCLE_RETRIES:
    refused twice, the third method is installed; without the slot the cycle fails."""
    from batos import autotelic
    result, _ = run(image, ScriptedModel(methods=[BREACH, BREACH, UPPER]), retries="0")
    assert result.state == "FAILED" and result.phase == "audit"
    image.transact(lambda s: autotelic.apply(s.root, {"kind": "tuning", "target": "retries", "value": 2}))
    result, events = run(image, ScriptedModel(methods=[BREACH, BREACH, UPPER]), retries="0")
    assert result.state == "COMPLETE", result.reason
    assert [e["attempt"] for e in states(events) if e["state"] == "SYNTHESIZING"] == [1, 2, 3]
