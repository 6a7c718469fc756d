"""The self-tuning loop's mechanics: idle detection, preemption by an Architect request,
a proposal adopted when it wins and refused when it loses, revert, and evaluations that
write nothing to the Living Image.  ScriptedModel stands in for the LLM (a scripted
answer per call); the kernel, its image, DemoStorage scratch copies and the sandbox are
real."""
import asyncio
import dataclasses
import json
import threading
import time

import pytest

import config
from batos import autotelic
from batos.protocol import MissionBrief
from tests.conftest import InProcessKernel
from tests.scripted import ScriptedModel

pytestmark = pytest.mark.process

RIGHT = '```python\ndef double(self, n):\n    """Twice n."""\n    return n * 2\n```'
WRONG = '```python\ndef double(self, n):\n    """Twice n."""\n    return n + 2\n```'
PROPOSAL = {"kind": "tuning", "target": "candidates", "value": 3, "why": "test"}


@pytest.fixture
def kernel(tmp_path):
    k = InProcessKernel(config.load({
        "BATOS_HOME": str(tmp_path), "BATOS_MEMORY_ENABLED": "0", "BATOS_CYCLE_RETRIES": "0",
        "BATOS_CYCLE_CANDIDATES": "2",    # the scripts below count one sampled candidate
        "BATOS_AUTOTELIC_INTERVAL_S": "0", "BATOS_AUTOTELIC_IDLE_S": "0.2", "BATOS_AUTOTELIC_PRACTICE": "1"}))
    # one verified mission to practise on: double, with its examples kept
    k.kernel.psm.models = ScriptedModel(plan={"queries": ["double"], "examples": []}, methods=[RIGHT])
    brief = MissionBrief(selector="double", args=["n"], intent="return twice n", examples=[[[2], 4], [[5], 10]])
    assert k.loop.run_until_complete(k.kernel.run_cycle("genesis_obj", brief))["state"] == "COMPLETE"
    yield k
    k.close()


def round_(k, proposal=PROPOSAL, methods=()):
    k.kernel.psm.models = ScriptedModel(plan={"queries": ["double"], "examples": []}, methods=list(methods))
    return k.loop.run_until_complete(k.kernel.autotelic.run_round(proposal))


def live_state(k):
    with k.image.reading() as s:
        return s.get("psm_obj")._slots.get("candidates"), k.image.db.storage.lastTransaction()


def targets_by_kind(schema):
    out = {}
    for alt in schema["anyOf"]:
        out.setdefault(alt["properties"]["kind"]["enum"][0], []).extend(alt["properties"]["target"]["enum"])
    return out


def events(tmp_path, kind):
    return [json.loads(x) for x in (tmp_path / "metacognition.jsonl").read_text().splitlines()
            if f'"event": "{kind}"' in x]


def test_a_proposal_of_the_value_already_in_force_is_refused_before_practice(kernel):
    """Unset on the state machine, a tunable is the setting's value: proposing that value
    changes nothing (a flywheel run adopted candidates 4 with the setting at 4, on the
    noise between two equal arms)."""
    same = {"kind": "tuning", "target": "candidates", "value": kernel.kernel.settings.CYCLE_CANDIDATES, "why": "w"}
    assert live_state(kernel)[0] is None
    record = round_(kernel, proposal=same, methods=[])
    assert record["adopted"] is False and "already" in record["outcome"] and "scores" not in record, record
    budget = {"kind": "max_tokens", "target": "SYNTHESIZING", "value": kernel.kernel.settings.METHOD_MAX_TOKENS,
              "why": "w"}
    record = round_(kernel, proposal=budget, methods=[])
    assert record["adopted"] is False and "already" in record["outcome"], record


def test_a_proposal_that_wins_is_adopted_and_can_be_reverted(kernel, tmp_path):
    assert kernel.kernel.autotelic.practice_suite()[0].mission.selector == "double"
    # current config fails (its first candidate and the one sampled next to it), proposed
    # passes at once
    record = round_(kernel, methods=[WRONG, WRONG, RIGHT])
    assert record["adopted"] is True, record
    assert record["scores"]["current"]["passed"] == 0 and record["scores"]["proposed"]["passed"] == 1
    assert live_state(kernel)[0] == 3
    # the same change again changes nothing: refused before any practice
    again = round_(kernel, methods=[])
    assert again["adopted"] is False and "already" in again["outcome"] and "scores" not in again, again
    listed = kernel.loop.run_until_complete(kernel.kernel.list_adaptations())["adaptations"]
    assert [a["id"] for a in listed] == [record["id"]] and listed[0]["proposal"]["value"] == 3
    kernel.loop.run_until_complete(kernel.kernel.revert_adaptation(record["id"]))
    assert live_state(kernel)[0] is None
    assert kernel.loop.run_until_complete(kernel.kernel.list_adaptations())["adaptations"][0]["reverted"]
    deadline = time.monotonic() + 10      # the log is written asynchronously
    while not {record["id"], again["id"]} <= {e["id"] for e in events(tmp_path, "adaptation")} \
            and time.monotonic() < deadline:
        kernel.loop.run_until_complete(asyncio.sleep(0.05))
    logged = {e["id"]: e for e in events(tmp_path, "adaptation")}
    assert logged[record["id"]]["adopted"] is True and logged[again["id"]]["adopted"] is False
    # practice cycles are logged as such and never counted as the Architect's
    practice = [e for e in events(tmp_path, "cycle_end") if e.get("practice")]
    assert len(practice) == 2 and {e["config"] for e in practice} == {"current", "proposed"}
    assert autotelic.analyze(autotelic.read_events(tmp_path / "metacognition.jsonl"))["cycles"] == 1


def test_a_proposal_that_loses_is_refused_and_the_evaluation_writes_nothing(kernel, tmp_path):
    before = live_state(kernel)
    record = round_(kernel, methods=[RIGHT, WRONG, WRONG, WRONG])   # current passes, proposed fails (3 candidates)
    assert record["adopted"] is False and "did not improve" in record["outcome"], record
    assert live_state(kernel) == before                  # not one transaction on the live image
    with kernel.image.reading() as s:
        assert s.get("genesis_obj")._slots["double"].source.strip().endswith("return n * 2")
    # as many pass and not faster: nothing adopted either
    assert round_(kernel, methods=[RIGHT, RIGHT])["adopted"] is False
    assert live_state(kernel) == before


def test_a_proposal_outside_the_menu_is_refused():
    for bad in ({"kind": "tuning", "target": "candidates", "value": 99},
                {"kind": "max_tokens", "target": "ROBIN", "value": 100},
                {"kind": "instructions", "target": "SYNTHESIZING", "value": "use {braces}"},
                {"kind": "eval", "target": "x", "value": 1}):
        with pytest.raises(autotelic.BadProposal):
            autotelic.check_proposal(bad)
    ok = autotelic.check_proposal({"kind": "instructions", "target": "SYNTHESIZING",
                                   "value": "  Return   the value.  ", "why": "w"})
    assert ok["value"] == "Return the value."


def test_the_loop_waits_for_idle_and_an_architect_request_preempts_the_round(kernel, tmp_path):
    a = kernel.kernel.autotelic
    a.note_request("send_message")
    assert not a.idle()
    a.note_request("ping")                 # pings (the watchdog's, the client's) are not work
    time.sleep(0.3)
    assert a.idle()

    started = threading.Event()

    class Slow(ScriptedModel):
        """Blocks in generation until the round is cancelled (as llama.cpp checks between tokens)."""
        def complete(self, persona, messages, max_tokens, grammar=None, cancel=None, **kw):
            started.set()
            assert cancel is not None and cancel.wait(30)
            return super().complete(persona, messages, max_tokens, grammar, cancel, **kw)

    kernel.kernel.psm.models = Slow(plan={"queries": ["double"]}, methods=[RIGHT, RIGHT])
    before = live_state(kernel)
    threading.Thread(target=lambda: (started.wait(30), a.note_request("initiate_cognitive_cycle")),
                     daemon=True).start()
    record = kernel.loop.run_until_complete(a.run_round(PROPOSAL))
    assert record["adopted"] is False and record["outcome"].startswith("abandoned"), record
    assert live_state(kernel) == before
    assert not a.idle()                    # the request that preempted it counts


def test_an_adaptation_changes_what_the_next_cycle_reads(kernel):
    """An adopted instruction rule reaches the prompt of the next cycle."""
    rule = {"kind": "instructions", "target": "SYNTHESIZING", "value": "Never use recursion.", "why": "t"}
    record = round_(kernel, rule, methods=[WRONG, WRONG, RIGHT])
    assert record["adopted"], record
    model = ScriptedModel(plan={"queries": ["x"], "examples": []},
                          methods=['```python\ndef triple(self, n):\n    """3n."""\n    return 3 * n\n```'])
    kernel.kernel.psm.models = model
    kernel.loop.run_until_complete(kernel.kernel.run_cycle("genesis_obj", MissionBrief(selector="triple", args=["n"])))
    assert "- Never use recursion." in model.calls[-1]["messages"][-1]["content"]


@pytest.mark.model
def test_a_real_round_with_the_embedded_model_ends_with_an_adaptation_event(make_kernel):
    """The loop on a real kernel process: a verified mission, then quiet, then a round in
    which ALFRED (the embedded model) proposes and the proposal is practised."""
    k = make_kernel(env={"BATOS_AUTOTELIC_INTERVAL_S": "1", "BATOS_AUTOTELIC_IDLE_S": "2",
                         "BATOS_AUTOTELIC_PRACTICE": "1"})
    with k.connect(timeout_s=600) as c:
        result = c.call("initiate_cognitive_cycle", target_oid="genesis_obj", mission_brief={
            "selector": "to_upper", "args": ["text"], "intent": "return the text in upper case",
            "examples": [[["ab"], "AB"], [["Bat os"], "BAT OS"]]})
        assert result["state"] == "COMPLETE", result
    rounds = k.wait_events(lambda ev: any(e["event"] == "adaptation" for e in ev), 600)
    record = next(e for e in rounds if e["event"] == "adaptation")
    assert record["selector"] == "analyze_metacognitive_log_and_propose_fine_tuning"
    assert record["analysis"]["cycles"] >= 1 and "outcome" in record, record
    if "proposal" in record:       # ALFRED's answer was a change from the menu
        assert record["proposal"]["kind"] in autotelic.MENU
        if "scores" in record:     # practised
            assert record["practice"] == ["to_upper"]
            assert set(record["scores"]) == {"current", "proposed"}
        else:                      # a value already in force (candidates 4 with the setting at 4)
            assert record["outcome"].startswith("no valid proposal") and not record["adopted"], record
    with k.connect() as c:
        adopted = c.call("list_adaptations")["adaptations"]
        assert [a["id"] for a in adopted] == ([record["id"]] if record["adopted"] else [])


@pytest.fixture
def tiny_kernel(tmp_path):
    """A kernel whose personas all run on a tiny (random) transformers model, with two
    verified missions in its record."""
    from tests.test_models import make_tiny_model
    tiny = make_tiny_model(tmp_path / "tiny", 3)
    personas = json.dumps({p: str(tiny) for p in ("ALFRED", "BRICK", "ROBIN", "BABS")})
    k = InProcessKernel(config.load({
        "BATOS_HOME": str(tmp_path / "home"), "BATOS_MEMORY_ENABLED": "0", "BATOS_CYCLE_RETRIES": "0",
        "BATOS_AUTOTELIC_INTERVAL_S": "0", "BATOS_AUTOTELIC_PRACTICE": "1", "BATOS_PERSONA_MODELS": personas,
        "BATOS_CYCLE_CANDIDATES": "2",
        "BATOS_METHOD_MAX_TOKENS": "24", "BATOS_PLAN_MAX_TOKENS": "16"}))
    real = k.kernel.psm.models
    k.kernel.psm.models = ScriptedModel(plan={"queries": ["x"], "examples": []}, methods=[
        '```python\ndef triple(self, n):\n    """3n."""\n    return 3 * n\n```', RIGHT])
    for selector, examples in (("triple", [[[1], 3]]), ("double", [[[2], 4]])):
        brief = MissionBrief(selector=selector, args=["n"], intent=f"return {selector} n", examples=examples)
        assert k.loop.run_until_complete(k.kernel.run_cycle("genesis_obj", brief))["state"] == "COMPLETE"
    k.kernel.psm.models = real
    yield k
    k.close()


LORA = {"kind": "lora", "target": "ALFRED", "value": 6, "why": "learn from the successes"}


def test_a_lora_round_trains_on_the_record_and_attaches_nothing_when_it_does_not_win(tiny_kernel):
    k = tiny_kernel
    record = k.loop.run_until_complete(k.kernel.autotelic.run_round(LORA))
    assert record["training"]["pairs"] == 2 and record["training"]["steps"] == 6, record
    assert record["scores"]["proposed"]["missions"] == 1 and record["adopted"] is False, record
    with k.image.reading() as s:
        assert dict(s.root["models"].loras) == {} and dict(s.root["models"].persona_loras) == {}
    # the practice used the trained adapter: the persona's backend has it loaded
    assert record["id"] in str(k.kernel.models.backend_for("ALFRED").adapters)


def test_a_winning_lora_is_stored_as_a_blob_attached_and_revertible(tiny_kernel, monkeypatch):
    k = tiny_kernel
    monkeypatch.setattr(autotelic, "wins", lambda proposed, current, speedup, **kw: True)   # the verdict only
    record = k.loop.run_until_complete(k.kernel.autotelic.run_round(LORA))
    assert record["adopted"] is True, record
    name = f"auto-{record['id']}"
    with k.image.reading() as s:
        assert s.root["models"].persona_loras.get("ALFRED") == name
        assert name in s.root["models"].loras
    assert k.kernel.models.lora_for("ALFRED") == name
    k.loop.run_until_complete(k.kernel.revert_adaptation(record["id"]))
    assert k.kernel.models.lora_for("ALFRED") is None


def test_a_lora_for_a_gguf_persona_is_refused_plainly(kernel):
    kernel.kernel.psm.models = kernel.kernel.models      # the real models: ALFRED runs on the GGUF
    record = kernel.loop.run_until_complete(kernel.kernel.autotelic.run_round(LORA))
    assert record["adopted"] is False and "needs a transformers model" in record["outcome"], record


def test_without_verified_missions_a_round_asks_nothing_and_adopts_nothing(tmp_path):
    k = InProcessKernel(config.load({"BATOS_HOME": str(tmp_path), "BATOS_MEMORY_ENABLED": "0",
                                     "BATOS_AUTOTELIC_INTERVAL_S": "0"}))
    try:
        model = ScriptedModel(methods=[])
        k.kernel.psm.models = model
        record = k.loop.run_until_complete(k.kernel.autotelic.run_round())
        assert record["adopted"] is False and "no verified missions" in record["outcome"]
        assert model.calls == []          # ALFRED was not asked
    finally:
        k.close()


def test_alfreds_grammar_pairs_each_kind_with_its_targets_and_a_refusal_is_shown_as_tried(kernel, tmp_path):
    """The schema has shapes per kind (tuning of ROBIN cannot be written), one per tunable
    with a short range (code_samples 8 cannot be written either); a proposal refused all
    the same (a value out of range) is shown to the next round as tried."""
    kinds = targets_by_kind(autotelic.PROPOSAL_SCHEMA)
    assert sorted(kinds["tuning"]) == sorted(autotelic.TUNABLES) and "ROBIN" not in kinds["tuning"]
    assert set(kinds) == set(autotelic.MENU)
    values = {(alt["properties"]["kind"]["enum"][0], t): alt["properties"]["value"]
              for alt in autotelic.PROPOSAL_SCHEMA["anyOf"] for t in alt["properties"]["target"]["enum"]}
    assert values[("tuning", "code_samples")]["enum"] == [0, 1, 2, 3, 4, 5, 6]
    assert values[("tuning", "consensus")]["enum"] == [0, 1]
    assert values[("tuning", "context_chars")] == {"type": "integer"}          # 4001 values: checked after
    assert values[("demonstrations", "DECOMPOSING")]["enum"] == [0, 1, 2, 3]
    from llama_cpp import LlamaGrammar
    grammar = LlamaGrammar.from_json_schema(json.dumps(autotelic.PROPOSAL_SCHEMA), verbose=False)   # llama.cpp takes it
    assert '"6"' in grammar._grammar and '"8"' not in grammar._grammar
    out_of_range = {"kind": "tuning", "target": "candidates", "value": 99, "why": "more"}
    kernel.kernel.psm.models = ScriptedModel(plan=out_of_range, methods=[])
    record = kernel.loop.run_until_complete(kernel.kernel.autotelic.run_round())
    assert record["adopted"] is False and "no valid proposal" in record["outcome"]
    assert record["refused"] == out_of_range
    assert record["proposed_by"] == "ALFRED"      # the record suggests nothing here
    model = ScriptedModel(plan={"kind": "tuning", "target": "skills_shown", "value": 0, "why": "w"},
                          methods=[RIGHT, RIGHT])
    kernel.kernel.psm.models = model
    kernel.loop.run_until_complete(kernel.kernel.autotelic.run_round())
    assert "Changes already tried (propose a different one): tuning candidates=99" in \
        model.calls[0]["messages"][-1]["content"]


def test_a_proposal_tried_in_a_recent_round_is_asked_again_then_refused_unpractised(kernel):
    """ALFRED is asked once more (sampled) when it repeats a tried change, and a change
    it repeats all the same is refused before any practice."""
    loses = {"kind": "tuning", "target": "candidates", "value": 1, "why": "w"}
    kernel.kernel.psm.models = ScriptedModel(plan=loses, methods=[RIGHT, WRONG])   # current passes, proposed fails
    first = kernel.loop.run_until_complete(kernel.kernel.autotelic.run_round())
    assert first["adopted"] is False and "did not improve" in first["outcome"], first
    model = ScriptedModel(plan=loses, methods=[])
    kernel.kernel.psm.models = model
    again = kernel.loop.run_until_complete(kernel.kernel.autotelic.run_round())
    assert again["adopted"] is False and "already tried" in again["outcome"] and "scores" not in again
    assert [c["temperature"] for c in model.calls] == [None, 0.9]      # greedy, then sampled
    # the sampled attempt's grammar has no shape for what was tried: tuning of candidates
    first_grammar, second = model.calls[0]["grammar"], model.calls[1]["grammar"]
    assert first_grammar == autotelic.PROPOSAL_SCHEMA
    targets = targets_by_kind(second)
    assert "candidates" not in targets["tuning"] and "skills_shown" in targets["tuning"]
    assert set(targets) == set(autotelic.MENU)
    assert autotelic.proposal_schema(frozenset({("lora", t) for t in autotelic.PERSONA_PROTOTYPES}))["anyOf"] \
        and "lora" not in {alt["properties"]["kind"]["enum"][0] for alt in autotelic.proposal_schema(
            frozenset({("lora", t) for t in autotelic.PERSONA_PROTOTYPES}))["anyOf"]}
    from llama_cpp import LlamaGrammar
    LlamaGrammar.from_json_schema(json.dumps(second), verbose=False)


def test_a_proposal_that_changes_nothing_is_asked_again_before_it_is_refused(kernel):
    """A greedy answer proposing the value in force (a flywheel run spent two of four
    rounds so) is asked again, sampled, with that (kind, target) left out of the grammar."""
    same = {"kind": "tuning", "target": "candidates", "value": kernel.kernel.settings.CYCLE_CANDIDATES, "why": "w"}
    model = ScriptedModel(plan=same, methods=[])
    kernel.kernel.psm.models = model
    record = kernel.loop.run_until_complete(kernel.kernel.autotelic.run_round())
    assert record["adopted"] is False and "already" in record["outcome"] and "scores" not in record, record
    assert [c["temperature"] for c in model.calls] == [None, 0.9]
    second = model.calls[1]["grammar"]
    targets = targets_by_kind(second)
    assert "candidates" not in targets["tuning"] and "code_samples" in targets["tuning"]
    # a change answered at once is not asked again
    model = ScriptedModel(plan={**same, "value": 3}, methods=[RIGHT, RIGHT])
    kernel.kernel.psm.models = model
    record = kernel.loop.run_until_complete(kernel.kernel.autotelic.run_round())
    asked = [c for c in model.calls if isinstance(c.get("grammar"), dict) and "anyOf" in c["grammar"]]
    assert "scores" in record and [c["temperature"] for c in asked] == [None], record


def test_alfred_is_shown_the_configuration_now_and_where_each_states_time_goes(kernel, tmp_path):
    """The proposal prompt names the current value of everything the menu changes (the
    defaults, then an adopted value), and the record read back gives each state's mean
    prompt and answer tokens and model seconds."""
    a = kernel.kernel.autotelic
    settings = kernel.kernel.settings
    now = a.configuration()
    assert now["candidates"] == settings.CYCLE_CANDIDATES and now["skills_shown"] == 2
    assert now["repair_samples"] == settings.REPAIR_SAMPLES and now["code_samples"] == settings.CODE_SAMPLES
    assert now["SYNTHESIZING max_tokens"] == settings.METHOD_MAX_TOKENS
    assert now["DECOMPOSING max_tokens"] == settings.PLAN_MAX_TOKENS
    assert round_(kernel, {"kind": "tuning", "target": "skills_shown", "value": 0, "why": "w"},
                  methods=[WRONG, WRONG, RIGHT])["adopted"] is True
    assert a.configuration()["skills_shown"] == 0
    model = ScriptedModel(plan={"kind": "max_tokens", "target": "DECOMPOSING", "value": 96, "why": "w"},
                          methods=[RIGHT, RIGHT])
    kernel.kernel.psm.models = model
    kernel.loop.run_until_complete(a.run_round())
    asked = model.calls[0]["messages"][-1]["content"]
    assert '"skills_shown": 0' in asked and f'"candidates": {settings.CYCLE_CANDIDATES}' in asked
    use = autotelic.analyze(autotelic.read_events(tmp_path / "metacognition.jsonl"))["mean_model_use"]
    # the fixture's one Architect cycle asked SYNTHESIZING once: its figures are read back
    assert use["SYNTHESIZING"]["prompt_tokens"] > 0 and "completion_tokens" in use["SYNTHESIZING"]
    assert '"mean_model_use"' in asked
    # and which kind of candidate each installed method was: here the first answer
    record = autotelic.analyze(autotelic.read_events(tmp_path / "metacognition.jsonl"))
    assert record["installed_candidate_kinds"] == {"first": 1} and '"installed_candidate_kinds"' in asked


TRIPLE_RIGHT = '```python\ndef triple(self, n):\n    """Three times n."""\n    return n * 3\n```'
TRIPLE_WRONG = '```python\ndef triple(self, n):\n    """Three times n."""\n    return n + 3\n```'


def test_a_mission_that_failed_on_the_architects_examples_is_practised_and_a_change_that_solves_it_wins(tmp_path):
    """The practice suite is not only missions that already pass: the latest one that
    FAILED on the Architect's own examples is in it until a cycle solves it, so a change
    can win on the pass count."""
    k = InProcessKernel(config.load({
        "BATOS_HOME": str(tmp_path), "BATOS_MEMORY_ENABLED": "0", "BATOS_CYCLE_RETRIES": "0",
        "BATOS_CYCLE_CANDIDATES": "2", "BATOS_AUTOTELIC_INTERVAL_S": "0", "BATOS_AUTOTELIC_PRACTICE": "2"}))
    try:
        def teach(selector, methods, intent):
            k.kernel.psm.models = ScriptedModel(plan={"queries": [selector], "examples": []}, methods=methods)
            brief = MissionBrief(selector=selector, args=["n"], intent=intent,
                                 examples=[[[2], 4 if selector == "double" else 6]])
            return k.loop.run_until_complete(k.kernel.run_cycle("genesis_obj", brief))["state"]

        assert teach("double", [RIGHT], "return twice n") == "COMPLETE"
        assert teach("triple", [TRIPLE_WRONG, TRIPLE_WRONG], "return three times n") == "FAILED"
        a = k.kernel.autotelic
        deadline = time.monotonic() + 10     # the log is written asynchronously
        while not a.unsolved_missions(2) and time.monotonic() < deadline:
            k.loop.run_until_complete(asyncio.sleep(0.05))
        suite = a.practice_suite()
        assert [p.mission.selector for p in suite] == ["double", "triple"], suite
        assert suite[1].mission.examples == [[[2], 6]] and suite[1].mission.intent == "return three times n"
        assert suite[1].checks == [[[2], 6]]
        # ABBA: double (current, proposed), then triple (proposed, current); only the
        # proposed configuration's triple passes
        k.kernel.psm.models = ScriptedModel(plan={"queries": ["x"], "examples": []},
                                            methods=[RIGHT, RIGHT, TRIPLE_RIGHT, TRIPLE_WRONG, TRIPLE_WRONG])
        record = k.loop.run_until_complete(a.run_round({"kind": "tuning", "target": "skills_shown",
                                                         "value": 0, "why": "w"}))
        assert record["practice"] == ["double", "triple"]
        assert record["scores"]["current"]["passed"] == 1 and record["scores"]["proposed"]["passed"] == 2
        assert record["scores"]["current"]["paired"] == record["scores"]["proposed"]["paired"] == 1   # double
        deadline = time.monotonic() + 10     # the practice cycles' ends, written asynchronously
        while len([e for e in events(tmp_path, "cycle_end") if e.get("practice") == record["id"]]) < 4 \
                and time.monotonic() < deadline:
            k.loop.run_until_complete(asyncio.sleep(0.05))
        doubled = {e["config"]: e["duration_s"] for e in events(tmp_path, "cycle_end")
                   if e.get("practice") == record["id"] and e["selector"] == "double"}
        assert record["scores"]["current"]["paired_s"] == pytest.approx(doubled["current"], abs=0.01)
        assert record["scores"]["proposed"]["paired_s"] == pytest.approx(doubled["proposed"], abs=0.01)
        assert record["scores"]["current"]["paired_each"] == [record["scores"]["current"]["paired_s"]]
        assert record["adopted"] is True, record
        # solved by a later cycle: no longer practised as unsolved
        assert teach("triple", [TRIPLE_RIGHT], "return three times n") == "COMPLETE"
        deadline = time.monotonic() + 10
        while a.unsolved_missions(2) and time.monotonic() < deadline:
            k.loop.run_until_complete(asyncio.sleep(0.05))
        assert a.unsolved_missions(2) == []
        assert sorted(p.mission.selector for p in a.practice_suite()) == ["double", "triple"]
        # a verified method whose later cycle failed is practised once: as the unsolved one
        off = RIGHT.replace("n * 2", "n - 1")
        assert teach("double", [off, off], "return twice n") == "FAILED"
        deadline = time.monotonic() + 10
        while not a.unsolved_missions(2) and time.monotonic() < deadline:
            k.loop.run_until_complete(asyncio.sleep(0.05))
        assert [p.mission.selector for p in a.practice_suite()] == ["triple", "double"]
        # the solved triple is verified (its method taken off for practice); double is
        # practised as it failed: its installed method (the examples it keeps held the
        # failed cycle) stays
        assert [p.forget for p in a.practice_suite()] == [True, False]
        a.settings = dataclasses.replace(a.settings, AUTOTELIC_PRACTICE=3)    # room for both lists
        assert [p.mission.selector for p in a.practice_suite()] == ["triple", "double"]
    finally:
        k.close()


def test_a_change_that_adds_tries_is_practised_on_every_unsolved_mission(tmp_path):
    """A change that gives doubtful cycles more tries can pass more only where a mission
    fails: its practice holds every unsolved mission (``RESCUE_UNSOLVED`` at most) next to
    the verified ones, where any other change's holds the latest, half a suite."""
    k = InProcessKernel(config.load({
        "BATOS_HOME": str(tmp_path), "BATOS_MEMORY_ENABLED": "0", "BATOS_CYCLE_RETRIES": "0",
        "BATOS_CYCLE_CANDIDATES": "2", "BATOS_CODE_SAMPLES": "0", "BATOS_REPAIR_SAMPLES": "0",
        "BATOS_AUTOTELIC_INTERVAL_S": "0", "BATOS_AUTOTELIC_PRACTICE": "2"}))
    try:
        def teach(selector, methods, expected):
            k.kernel.psm.models = ScriptedModel(plan={"queries": [selector], "examples": []}, methods=methods)
            brief = MissionBrief(selector=selector, args=["n"], intent=f"return {selector} n",
                                 examples=[[[2], expected]])
            return k.loop.run_until_complete(k.kernel.run_cycle("genesis_obj", brief))["state"]

        assert teach("double", [RIGHT], 4) == "COMPLETE"
        assert teach("triple", [TRIPLE_WRONG, TRIPLE_WRONG], 6) == "FAILED"
        assert teach("quadruple", [TRIPLE_WRONG, TRIPLE_WRONG], 8) == "FAILED"
        a = k.kernel.autotelic
        deadline = time.monotonic() + 10     # the log is written asynchronously
        while len(a.unsolved_missions(6)) < 2 and time.monotonic() < deadline:
            k.loop.run_until_complete(asyncio.sleep(0.05))
        assert [p.mission.selector for p in a.practice_suite()] == ["double", "quadruple"]
        assert [p.mission.selector for p in a.practice_suite(rescue=True)] == ["double", "quadruple", "triple"]
        more = {"kind": "tuning", "target": "repair_samples", "value": 6, "why": "w"}
        assert autotelic.adds_tries(more, a.configuration())
        assert not autotelic.adds_tries({**more, "value": 0}, {"repair_samples": 1})
        assert not autotelic.adds_tries({**more, "target": "skills_shown"}, a.configuration())
        # a change to BRICK's examples acts on none of them (the Architect gave every one
        # its examples, so BRICK wrote none): refused unpractised
        assert a.planned_suite() == []
        refused = k.loop.run_until_complete(a.run_round({"kind": "tuning", "target": "plan_examples",
                                                         "value": 2, "why": "w"}))
        assert refused["adopted"] is False and "scores" not in refused, refused
        assert "examples BRICK wrote" in refused["outcome"], refused
        # the round practises them all, each in both arms: double passes, the others fail
        k.kernel.psm.models = ScriptedModel(plan={"queries": ["x"], "examples": []},
                                            methods=[RIGHT, RIGHT] + [TRIPLE_WRONG] * 40)
        record = k.loop.run_until_complete(a.run_round(more))
        assert record["practice"] == ["double", "quadruple", "triple"], record
        assert record["scores"]["current"] == {**record["scores"]["current"], "passed": 1, "missions": 3}
        assert record["scores"]["proposed"]["passed"] == 1 and record["adopted"] is False, record
        # any other change: the latest unsolved mission only
        record = k.loop.run_until_complete(a.run_round({"kind": "tuning", "target": "skills_shown", "value": 0,
                                                        "why": "w"}))
        assert record["practice"] == ["double", "quadruple"], record
    finally:
        k.close()


def test_the_practice_takes_verified_missions_whose_first_method_was_rescued_first(tmp_path):
    """A verified mission whose cycle sampled or repaired past a wrong first method is
    practised before a newer one whose first method passed at once: that is where the
    menu's samples, repairs and examples decide (a mission that passes at once passes in
    both arms of most proposals)."""
    k = InProcessKernel(config.load({
        "BATOS_HOME": str(tmp_path), "BATOS_MEMORY_ENABLED": "0", "BATOS_CYCLE_RETRIES": "0",
        "BATOS_CYCLE_CANDIDATES": "2", "BATOS_CODE_SAMPLES": "0", "BATOS_AUTOTELIC_INTERVAL_S": "0",
        "BATOS_AUTOTELIC_PRACTICE": "1"}))
    try:
        def teach(selector, methods, intent, expected):
            k.kernel.psm.models = ScriptedModel(plan={"queries": [selector], "examples": []}, methods=methods)
            brief = MissionBrief(selector=selector, args=["n"], intent=intent, examples=[[[2], expected]])
            return k.loop.run_until_complete(k.kernel.run_cycle("genesis_obj", brief))["state"]

        assert teach("triple", [TRIPLE_WRONG, TRIPLE_RIGHT], "return three times n", 6) == "COMPLETE"
        assert teach("double", [RIGHT], "return twice n", 4) == "COMPLETE"
        a = k.kernel.autotelic
        with k.image.reading() as s:
            kinds = {c["selector"]: autotelic.struggled(c) for c in s.root["cycles"].values()}
        assert kinds == {"triple": True, "double": False}
        assert [p.mission.selector for p in a.practice_suite()] == ["triple"]
        assert [p.mission.selector for p in a.verified_missions(2)] == ["triple", "double"]
    finally:
        k.close()


def test_a_change_that_takes_tries_away_wins_only_on_passes(tmp_path):
    """Fewer candidates, code completions, repairs or BRICK's examples: judged on passes
    alone (what it costs is a rescue the few practice missions may not hold); the same
    change upwards, or another tunable downwards, is not."""
    now = {"candidates": 4, "code_samples": 4, "repair_samples": 0, "plan_examples": 4, "skills_shown": 2}
    change = lambda target, value: {"kind": "tuning", "target": target, "value": value}   # noqa: E731
    assert autotelic.takes_tries(change("code_samples", 2), now)
    assert autotelic.takes_tries(change("plan_examples", 2), now)
    assert autotelic.takes_tries(change("candidates", 1), now)
    assert not autotelic.takes_tries(change("code_samples", 6), now)
    assert not autotelic.takes_tries(change("skills_shown", 0), now)
    assert not autotelic.takes_tries({"kind": "max_tokens", "target": "DECOMPOSING", "value": 64}, now)
    # BRICK's examples: practised only on missions BRICK planned (``planned_suite``)
    assert autotelic.acts_on_plans(change("plan_examples", 2))
    assert autotelic.acts_on_plans({"kind": "demonstrations", "target": "DECOMPOSING", "value": 3})
    assert not autotelic.acts_on_plans(change("candidates", 6))
    k = InProcessKernel(config.load({
        "BATOS_HOME": str(tmp_path), "BATOS_MEMORY_ENABLED": "0", "BATOS_CYCLE_RETRIES": "0",
        "BATOS_CYCLE_CANDIDATES": "1", "BATOS_CODE_SAMPLES": "2", "BATOS_AUTOTELIC_INTERVAL_S": "0",
        "BATOS_AUTOTELIC_PRACTICE": "1"}))
    try:
        k.kernel.psm.models = ScriptedModel(plan={"queries": ["double"], "examples": []}, methods=[RIGHT])
        brief = MissionBrief(selector="double", args=["n"], intent="return twice n", examples=[[[2], 4]])
        assert k.loop.run_until_complete(k.kernel.run_cycle("genesis_obj", brief))["state"] == "COMPLETE"
        k.kernel.psm.models = ScriptedModel(plan={"queries": ["double"], "examples": []}, methods=[RIGHT, RIGHT])
        record = k.loop.run_until_complete(k.kernel.autotelic.run_round(change("code_samples", 0)))
        assert record["scores"]["current"]["passed"] == record["scores"]["proposed"]["passed"] == 1
        assert record["adopted"] is False and record["outcome"].startswith("not adopted: fewer code_samples"), record
        with k.image.reading() as s:
            assert "code_samples" not in s.get("psm_obj")._slots
    finally:
        k.close()


def test_a_change_wins_on_passes_or_on_speed_only_when_something_passes():
    score = lambda passed, median: {"passed": passed, "missions": 3, "median_s": median}   # noqa: E731
    assert autotelic.wins(score(2, 30.0), score(1, 10.0), 0.15)          # more pass, though slower
    assert not autotelic.wins(score(1, 5.0), score(2, 30.0), 0.15)       # fewer pass, though faster
    assert autotelic.wins(score(2, 10.0), score(2, 15.0), 0.15)          # as many, 33 % faster
    assert not autotelic.wins(score(2, 13.5), score(2, 15.0), 0.15)      # 10 %: within the margin
    assert not autotelic.wins(score(2, 1.0), score(2, 1.5), 0.15)        # 33 % but 0.5 s: noise
    assert not autotelic.wins(score(0, 10.0), score(0, 30.0), 0.15)      # failing sooner is no gain
    assert not autotelic.wins(score(2, 10.0), score(2, 15.0), 0.15, speed_counts=False)   # takes tries away
    assert autotelic.wins(score(3, 20.0), score(2, 15.0), 0.15, speed_counts=False)
    # speed is judged on the missions both arms passed, not on a median that a failing
    # mission's time decides: two pass both ways, two fail both ways (the failures slower
    # in the proposed arm, which lifts its median over the current one's)
    paired = lambda passed, median, each: {**score(passed, median), "paired": len(each),  # noqa: E731
                                           "paired_s": sum(each), "paired_each": each}
    assert autotelic.wins(paired(2, 30.0, [8.0, 12.0]), paired(2, 22.0, [12.0, 18.0]), 0.15)
    assert not autotelic.wins(paired(2, 10.0, [14.0, 14.0]), paired(2, 30.0, [15.0, 15.0]), 0.15)   # failing sooner
    assert not autotelic.wins(paired(1, 10.0, []), paired(1, 30.0, []), 0.15)       # none passed both ways
    # with any one mission left out: one slow cycle in the current arm does not make a change
    # faster (22 % less in all, the other mission 19 % slower), nor does one mission alone
    assert not autotelic.wins(paired(2, 21.9, [20.7, 13.46]), paired(2, 23.7, [32.34, 11.3]), 0.15)
    assert not autotelic.wins(paired(2, 10.0, [8.0]), paired(2, 15.0, [12.0]), 0.15)
    # in all, not mission by mission: two of five much faster, three as fast (the ratios'
    # median 0.95), 25 % less in all, 17 % less with either fast one left out
    assert autotelic.wins(paired(5, 10.0, [10.0, 10.0, 10.0, 4.0, 4.0]),
                          paired(5, 10.5, [10.0, 10.5, 10.5, 10.0, 10.0]), 0.15)
    assert not autotelic.wins(paired(5, 10.0, [10.0, 10.0, 10.0, 10.0, 2.0]),   # one fast one: 18 % in all,
                              paired(5, 10.5, [10.0, 10.5, 10.5, 10.0, 10.0]), 0.15)   # 2 % without it
    assert not autotelic.wins(paired(2, 10.0, [8.0, 12.0]), paired(2, 15.0, [12.0, 18.0]), 0.15, speed_counts=False)


def test_a_practice_cycle_is_taught_as_the_architect_taught_it_and_scored_by_the_kept_checks(tmp_path):
    """A verified mission is practised from the Architect's words alone: its method is
    taken off the scratch copy first (the cycle is not shown it, nor the examples it
    keeps), BRICK is asked for examples as in a real cycle, and the method the practice
    writes passes only if it passes the kept examples afterwards, in the sandbox.  Here
    the current arm writes a wrong method that no example in its cycle catches (BRICK
    gives none): it completes, and the checks fail it."""
    k = InProcessKernel(config.load({
        "BATOS_HOME": str(tmp_path), "BATOS_MEMORY_ENABLED": "0", "BATOS_CYCLE_RETRIES": "0",
        "BATOS_CYCLE_CANDIDATES": "1", "BATOS_CODE_SAMPLES": "0", "BATOS_REPAIR_SAMPLES": "0",
        "BATOS_AUTOTELIC_INTERVAL_S": "0", "BATOS_AUTOTELIC_PRACTICE": "1"}))
    try:
        # taught from words alone; BRICK's example (3 -> 6) is what the method keeps
        k.kernel.psm.models = ScriptedModel(plan={"queries": ["double"], "examples": [{"args": [3], "expected": 6}]},
                                            methods=[RIGHT])
        brief = MissionBrief(selector="double", args=["n"], intent="return twice n")
        assert k.loop.run_until_complete(k.kernel.run_cycle("genesis_obj", brief))["state"] == "COMPLETE"
        a = k.kernel.autotelic
        [practice] = a.practice_suite()
        assert practice.mission.examples == [] and practice.checks == [[[3], 6]]
        model = ScriptedModel(plan={"queries": ["double"], "examples": []}, methods=[WRONG, RIGHT])
        k.kernel.psm.models = model
        record = k.loop.run_until_complete(a.run_round({"kind": "tuning", "target": "plan_examples",
                                                        "value": 2, "why": "w"}))
        # the current arm's cycle completed with its wrong method; the checks failed it
        k.wait_events(lambda ev: any(e.get("id") == record["id"] for e in ev))   # the log is written by a task
        ends = {e["config"]: e for e in events(tmp_path, "cycle_end") if e.get("practice") == record["id"]}
        assert ends["current"]["state"] == "COMPLETE" and "n + 2" in ends["current"]["artifact"]
        assert record["scores"]["current"]["passed"] == 0 and record["scores"]["proposed"]["passed"] == 1
        assert record["adopted"] is True, record
        # neither arm's prompts held the method or its kept example; each plan asked for
        # examples, as many as its arm's configuration says
        plans = [c for c in model.calls if c.get("grammar") is not None]
        writes = [c for c in model.calls if c.get("grammar") is None]
        assert len(plans) == 2 and len(writes) == 2
        assert all("n * 2" not in json.dumps(c["messages"]) for c in model.calls)
        assert all("double(3)" not in json.dumps(c["messages"]) for c in writes)
        asked = [json.dumps(c["messages"]) for c in plans]
        assert "3 or 4 examples" in asked[0] and "1 or 2 examples" in asked[1]
        assert [c["grammar"]["properties"]["examples"]["maxItems"] for c in plans] == [4, 2]
        # the live image still has its own method, and now the adopted tunable
        with k.image.reading() as s:
            assert s.get("genesis_obj")._slots["double"].source.strip().endswith("return n * 2")
            assert s.get("psm_obj")._slots.get("plan_examples") == 2
    finally:
        k.close()


def test_the_plan_asks_for_as_many_examples_as_configured_and_none_at_0():
    from batos.psm import MAX_PROPOSED, PLAN_SCHEMA, plan_asks, plan_schema
    assert plan_schema(True, MAX_PROPOSED) == PLAN_SCHEMA          # the default: the plan as before
    assert "examples" not in plan_schema(True, 0)["properties"] and plan_schema(True, 0)["required"] == ["queries"]
    assert plan_schema(False, 3, 1)["properties"]["examples"]["maxItems"] == 3
    assert "examples" not in plan_asks(True, 0) and "3 or 4 examples" in plan_asks(True, True)
    assert plan_asks(False, 1).startswith("1 example of calls")


def test_the_record_suggests_experiments_from_its_figures():
    """Wrong examples that cost time suggest halving BRICK's examples; failures on
    examples suggest the most sampled repairs, code completions and candidates their
    range allows (sampled repairs first); a
    state whose answers fill its budget suggests doubling it; more tries first, then
    fewer examples, then a budget.  A clean record suggests nothing."""
    now = {"candidates": 6, "code_samples": 4, "plan_examples": 4, "retries": 3, "repair_samples": 6,
           "DECOMPOSING max_tokens": 128, "SYNTHESIZING max_tokens": 512}
    record = {"cycles": 40, "failure_phases": {"examples": 5}, "installed_candidate_kinds": {"code completion": 2},
              "mean_model_use": {"DECOMPOSING": {"completion_tokens": 120.0}, "SYNTHESIZING": {"completion_tokens": 90.0}},
              "examples": {"installed_passing_all": 23, "installed_missing_some": 12,
                           "median_cycle_s_passing_all": 11.6, "median_cycle_s_missing_some": 28.2}}
    got = autotelic.suggestions(record, now)
    assert [(p["kind"], p["target"], p["value"]) for p in got] == [
        ("tuning", "code_samples", 6), ("tuning", "plan_examples", 2), ("max_tokens", "DECOMPOSING", 256)]
    assert "12 of 35" in got[1]["why"] and all(autotelic.check_proposal(p) for p in got)
    # sampled repairs first (on the harder held-out set they rescued two missions, code
    # completions none)
    fresh = autotelic.suggestions(record, {**now, "repair_samples": 0})
    assert [(p["target"], p["value"]) for p in fresh][:2] == [("repair_samples", 6), ("code_samples", 6)]
    assert "5 of 40 cycles failed" in fresh[0]["why"] and "more sampled repairs give" in fresh[0]["why"]
    assert autotelic.check_proposal(fresh[0])
    # failures take a lever to the top of its range, not a step (0 -> 2 rescued nothing)
    weak = autotelic.suggestions(record, {**now, "plan_examples": 1, "code_samples": 0, "candidates": 2})
    assert [(p["target"], p["value"]) for p in weak][:2] == [("code_samples", 6), ("candidates", 6)]
    # ... and the most repairs, once the samples are at the top of their ranges
    topped = autotelic.suggestions(record, {**now, "plan_examples": 1, "code_samples": 6, "retries": 1})
    assert [(p["target"], p["value"]) for p in topped][:1] == [("retries", 3)]
    assert [(p["target"], p["value"]) for p in autotelic.suggestions(record, {**now, "retries": 1})][:3] == [
        ("code_samples", 6), ("retries", 3), ("plan_examples", 2)]
    assert "more repairs give" in topped[0]["why"] and autotelic.check_proposal(topped[0])
    assert autotelic.takes_tries({"kind": "tuning", "target": "retries", "value": 0}, {"retries": 1})
    assert autotelic.suggestions(record, {**now, "plan_examples": 1, "code_samples": 6,
                                          "DECOMPOSING max_tokens": 1024}) == []
    clean = {"cycles": 40, "failure_phases": {"examples": 1},
             "examples": {"installed_passing_all": 38, "installed_missing_some": 1,
                          "median_cycle_s_passing_all": 11.0, "median_cycle_s_missing_some": 30.0}}
    assert autotelic.suggestions(clean, now) == []
    # methods installed matching none of their examples suggest consensus, while it is off
    blind = {**record, "examples": {**record["examples"], "installed_matching_none": 7}}
    got = autotelic.suggestions(blind, {**now, "consensus": 0})
    assert [(p["target"], p["value"]) for p in got][:3] == [("consensus", 1), ("code_samples", 6),
                                                           ("plan_examples", 2)]
    assert "7 methods were installed" in got[0]["why"] and autotelic.check_proposal(got[0])
    assert "consensus" not in [p["target"] for p in autotelic.suggestions(blind, {**now, "consensus": 1})]
    # methods installed missing some of BRICK's examples suggest worked plans while none is
    # shown: after more tries (those can win on passes), before fewer examples
    got = autotelic.suggestions(record, {**now, "DECOMPOSING demonstrations": 0})
    assert [(p["kind"], p["target"], p["value"]) for p in got][:3] == [
        ("tuning", "code_samples", 6), ("demonstrations", "DECOMPOSING", 3), ("tuning", "plan_examples", 2)]
    assert "12 of 35" in got[1]["why"] and autotelic.check_proposal(got[1])
    # a record with no failure on examples suggests them first
    calm = {**record, "failure_phases": {"examples": 1}}
    assert autotelic.suggestions(calm, {**now, "code_samples": 0, "DECOMPOSING demonstrations": 0})[0]["kind"] \
        == "demonstrations"
    assert "demonstrations" not in [p["kind"] for p in autotelic.suggestions(record, {**now, "DECOMPOSING demonstrations": 2})]


def test_the_record_counts_methods_installed_missing_examples_from_cycle_ends():
    end = lambda state, passed, run, s: {"event": "cycle_end", "state": state, "examples_passed": passed,  # noqa: E731
                                         "examples_run": run, "duration_s": s}
    events = [end("COMPLETE", 4, 4, 10.0), end("COMPLETE", 3, 3, 12.0), end("COMPLETE", 1, 4, 30.0),
              end("COMPLETE", 0, 0, 5.0), end("FAILED", 0, 1, 40.0), end("COMPLETE", 0, 2, 20.0),
              {**end("COMPLETE", 0, 4, 99.0), "practice": "r1"}]          # practice: not the record
    assert autotelic.analyze(events)["examples"] == {
        "installed_passing_all": 2, "installed_missing_some": 2, "installed_matching_none": 1,
        "median_cycle_s_passing_all": 11.0, "median_cycle_s_missing_some": 25.0}


def test_alfred_is_shown_the_suggested_experiments_and_not_those_already_tried(kernel):
    a = kernel.kernel.autotelic
    record = {"cycles": 20, "failure_phases": {}, "examples": {
        "installed_passing_all": 10, "installed_missing_some": 6,
        "median_cycle_s_passing_all": 11.0, "median_cycle_s_missing_some": 30.0}}
    suggested = {"kind": "tuning", "target": "plan_examples", "value": 2}
    model = ScriptedModel(plan={**suggested, "why": "the record"})
    kernel.kernel.psm.models = model
    # the first round (and every other one) takes the record's first suggestion, unasked
    first = a._propose(record, threading.Event(), [])
    assert first["kind"] == "demonstrations" and first["by"] == "the record" and model.calls == []
    a.rounds = 1      # ... the next asks ALFRED
    assert a._propose(record, threading.Event(), [])["target"] == "plan_examples"
    prompt = model.calls[0]["messages"][1]["content"]
    assert "Experiments the record suggests" in prompt and '"target": "plan_examples", "value": 2' in prompt
    tried = [{"event": "adaptation", "id": "x1", "ts": 1.0, "proposal": {**suggested, "why": "w"},
              "outcome": "not adopted: the practice score did not improve"}]
    with pytest.raises(autotelic.BadProposal, match="already tried"):
        a._propose(record, threading.Event(), tried)       # the scripted answer repeats it
    later = [c["messages"][1]["content"] for c in model.calls[1:]]
    assert later and all('"target": "plan_examples", "value": 2' not in x for x in later)   # tried: not suggested
    assert all('"kind": "demonstrations"' in x for x in later)        # the one suggestion left


def test_checks_that_cannot_run_count_as_a_miss_and_a_cancel_stops_them(kernel):
    a = kernel.kernel.autotelic
    practice = autotelic.Practice(MissionBrief(selector="double", args=["n"], intent="twice n"), [[[3], 6]])
    source = RIGHT.split("```python\n")[1].split("```")[0]

    def check(src):     # from a worker thread, as a round does, while the kernel's loop runs
        return kernel.loop.run_until_complete(kernel.loop.run_in_executor(
            None, lambda: a._checks_pass(practice, src, threading.Event())))
    assert check(source) is True
    assert check(source.replace("n * 2", "n + 2")) is False

    def broken(*args):
        raise TimeoutError("the sandbox did not answer")
    kernel.kernel._try_threadsafe = broken
    assert check(source) is False
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(autotelic.Preempted):
        a._checks_pass(practice, source, cancel)


def test_the_flywheel_benchmark_pairs_the_missions_both_sides_passed():
    """The benchmark's mission-by-mission comparison: only missions passed both ways,
    after's time over before's."""
    from tests.bench.flywheel import paired
    before = {"failed": ["c"], "seconds": {"a": 10.0, "b": 4.0, "c": 30.0, "d": 8.0}}
    after = {"failed": ["d"], "seconds": {"a": 5.0, "b": 4.0, "c": 20.0, "d": 2.0}}
    assert paired(before, after) == {"missions": 2, "median_ratio": 0.75, "before_s": 14.0, "after_s": 9.0}
    assert paired({"failed": ["a"], "seconds": {"a": 1.0}}, {"failed": [], "seconds": {"a": 1.0}}) == {"missions": 0}


def test_the_flywheel_report_says_when_rounds_were_cut_off(capsys):
    """A round that does not end within its allowance is stopped before the evaluation;
    the report says how many of the rounds asked for ended."""
    from tests.bench.flywheel import ROUND_ALLOWANCE_S, report
    side = {"passed": 3, "missions": 4, "median_cycle_s": 5.0, "failed": ["x"], "seconds": {}}
    out = {"before": side, "after": side, "paired": {"missions": 0}, "training": {"passed": 9, "missions": 10},
           "rounds_s": 100.0, "rounds_asked": 3,
           "rounds": [{"id": "r1", "proposal": {}, "scores": {}, "adopted": True, "outcome": "adopted"}]}
    report(out)
    assert f"1 rounds in 100 s, 1 adopted (3 asked: the others did not end within {ROUND_ALLOWANCE_S} s" \
        in capsys.readouterr().out
    report({**out, "rounds_asked": 1})
    assert "asked" not in capsys.readouterr().out


def test_the_flywheel_evaluation_sets_are_held_out_and_their_words_agree_with_their_checks():
    """No evaluation mission is a training one (the practice is drawn from training);
    each check takes as many arguments as its mission; and where the Architect's words
    state an example whose arguments a check also calls, both want the same answer (a
    wrong check would fail every configuration for nothing)."""
    from client.translator import extract_examples
    from tests.bench.flywheel import EVALUATIONS, TRAINING
    from tests.missions_harder import TRAINING as CATCHES
    trained = {m[0] for m in TRAINING}
    assert len(TRAINING) == len(trained) == 41 and {m[0] for m in CATCHES} <= trained
    assert len(EVALUATIONS["both"]) == len(EVALUATIONS["standard"]) + len(EVALUATIONS["harder"]) == 39
    assert not trained & {m[0] for m in EVALUATIONS["both"]}
    assert len({m[0] for m in EVALUATIONS["both"]}) == 39
    stated = 0
    for selector, args, intent, checks, _kind in EVALUATIONS["harder"] + CATCHES:
        assert all(len(call) == len(args) for call, _ in checks), selector
        checked = {json.dumps(call): expected for call, expected in checks}
        for call, expected in extract_examples(intent, len(args)):
            if json.dumps(call) in checked:
                stated += 1
                assert checked[json.dumps(call)] == expected, selector
    assert stated >= 40
    with pytest.raises(SystemExit):
        from tests.bench.flywheel import run
        run(1, 1, evaluation="hardest")


def test_worked_plans_come_from_verified_plans_and_a_demonstrations_round_shows_them_to_brick(tmp_path):
    """``demonstrations``: the worked plans are earlier missions whose examples BRICK
    wrote and whose first method passed them all, never a practice mission (it would be
    shown its answers), never one whose calls mix argument types.  Practised, only the
    proposed arm's plans are shown them, as earlier turns; adopted, the next cycle's plan
    is; reverted, none is."""
    k = InProcessKernel(config.load({
        "BATOS_HOME": str(tmp_path), "BATOS_MEMORY_ENABLED": "0", "BATOS_CYCLE_RETRIES": "0",
        "BATOS_CYCLE_CANDIDATES": "2", "BATOS_CODE_SAMPLES": "0", "BATOS_REPAIR_SAMPLES": "0",
        "BATOS_AUTOTELIC_INTERVAL_S": "0", "BATOS_AUTOTELIC_PRACTICE": "1"}))
    size = '```python\ndef size(self, text):\n    """How many items."""\n    return len(text)\n```'
    try:
        def teach(selector, examples, methods):
            k.kernel.psm.models = ScriptedModel(plan={"queries": [selector], "examples": examples},
                                                methods=methods)
            brief = MissionBrief(selector=selector, args=["n"] if selector != "size" else ["text"],
                                 intent=f"the {selector} mission")
            return k.loop.run_until_complete(k.kernel.run_cycle("genesis_obj", brief))["state"]

        ex = lambda *pairs: [{"args": [a], "expected": e} for a, e in pairs]   # noqa: E731
        assert teach("triple", ex((2, 6), (5, 15), (0, 0)), [TRIPLE_RIGHT]) == "COMPLETE"
        assert teach("size", ex(("ab", 2), (["x", "y"], 2)), [size]) == "COMPLETE"   # a str, then a list
        assert teach("double", ex((2, 4), (3, 6)), [WRONG, RIGHT]) == "COMPLETE"  # a sample rescued it
        a = k.kernel.autotelic
        with k.image.reading() as s:
            plans = autotelic.worked_plans(s.root)
            assert autotelic.worked_plans(s.root, exclude=frozenset({"triple"})) == []
        assert plans == [{"call": "triple(n)", "intent": "the triple mission", "target": "genesis_obj",
                          "examples": [[[2], 6], [[5], 15]]}]      # two of the three it keeps
        assert [p.mission.selector for p in a.practice_suite()] == ["double"]
        # practised on the missions BRICK planned (twice the suite), the worked plan left out
        assert [p.mission.selector for p in a.planned_suite(frozenset({"triple"}))] == ["double", "size"]

        # practised: the current arm's first method and its sample are wrong, the proposed arm's
        # right; size's first method and its sample miss BRICK's example (size(3) -> 6) in both
        # arms, are installed all the same and pass the examples size kept
        model = ScriptedModel(plan={"queries": ["double"], "examples": [{"args": [3], "expected": 6}]},
                              methods=[WRONG, WRONG, RIGHT, size, size, size, size])
        k.kernel.psm.models = model
        record = k.loop.run_until_complete(a.run_round({"kind": "demonstrations", "target": "DECOMPOSING",
                                                        "value": 3, "why": "w"}))
        assert record["proposal"]["value"] == 3 and record["proposal"]["plans"] == plans      # the one there is
        assert record["proposed_by"] == "the caller" and record["practice"] == ["double", "size"]
        assert record["adopted"] is True, record
        assert (record["scores"]["current"]["passed"], record["scores"]["proposed"]["passed"]) == (1, 2), record
        current, proposed = [c["messages"] for c in model.calls if c.get("grammar") is not None][:2]
        assert len(current) == 2 and len(proposed) == 4
        assert "Missing method: triple(n)" in proposed[1]["content"]
        assert json.loads(proposed[2]["content"])["examples"][1] == {"args": [5], "expected": 15}
        assert "Missing method: double(n)" in proposed[3]["content"]
        assert a.configuration()["DECOMPOSING demonstrations"] == 1
        again = k.loop.run_until_complete(a.run_round({"kind": "demonstrations", "target": "DECOMPOSING",
                                                       "value": 1, "why": "w"}))
        assert again["adopted"] is False and "already shows" in again["outcome"], again

        # adopted: a real cycle's plan is shown it; reverted: not
        def plan_messages():
            model = ScriptedModel(plan={"queries": ["q"], "examples": [{"args": [1], "expected": 4}]},
                                  methods=['```python\ndef quad(self, n):\n    """Four n."""\n    return n * 4\n```'])
            k.kernel.psm.models = model
            brief = MissionBrief(selector="quad", args=["n"], intent="four times n")
            assert k.loop.run_until_complete(k.kernel.run_cycle("genesis_obj", brief))["state"] == "COMPLETE"
            return next(c["messages"] for c in model.calls if c.get("grammar") is not None)

        assert len(plan_messages()) == 4
        k.loop.run_until_complete(k.kernel.revert_adaptation(record["id"]))
        assert len(plan_messages()) == 2 and a.configuration()["DECOMPOSING demonstrations"] == 0
    finally:
        k.close()


def test_a_demonstrations_proposal_with_no_worked_plan_is_refused_unpractised(kernel):
    """The fixture's one verified mission had the Architect's examples (BRICK wrote none):
    no worked plan, so nothing to practise."""
    record = round_(kernel, proposal={"kind": "demonstrations", "target": "DECOMPOSING", "value": 2, "why": "w"})
    assert record["adopted"] is False and "no worked plan" in record["outcome"] and "scores" not in record, record
    with pytest.raises(autotelic.BadProposal):
        autotelic.check_proposal({"kind": "demonstrations", "target": "SYNTHESIZING", "value": 1})
    with pytest.raises(autotelic.BadProposal):
        autotelic.check_proposal({"kind": "demonstrations", "target": "DECOMPOSING", "value": 4})


def test_a_state_shows_only_well_formed_demonstrations():
    from batos.psm import MAX_DEMONSTRATIONS, demo_turns, demonstrations
    from batos.genesis import DECOMPOSING_INSTRUCTIONS
    good = {"call": "gcd(a, b)", "intent": "greatest common divisor", "examples": [[[12, 8], 4], [[7, 3], 1]]}
    assert demonstrations([good, 5, {"call": "x()"}, {"call": "", "examples": [[[1], 1]]}, None]) == [
        {**good, "target": "genesis_obj"}]
    assert demonstrations("not a list") == [] and len(demonstrations([good] * 9)) == MAX_DEMONSTRATIONS
    user, answer = demo_turns(DECOMPOSING_INSTRUCTIONS, demonstrations([good])[0], 1)
    assert "Missing method: gcd(a, b)" in user["content"] and "1 example of calls" in user["content"]
    assert json.loads(answer["content"]) == {"examples": [{"args": [12, 8], "expected": 4}]}
    # a rewritten instruction with a field no demonstration has still renders
    assert "gcd" in demo_turns("{plan_asks} {unknown} {example_call}", demonstrations([good])[0], 2)[0]["content"]
    for stray in ("{target.name}", "{0}", "{unknown[1]}", "{"):
        assert "gcd(a, b)" in demo_turns(stray, demonstrations([good])[0], 2)[0]["content"]
