"""The Prototypal State Machine on a real FileStorage image, with ScriptedModel (a
scripted stand-in for the LLM) so each path of the seven states runs in milliseconds."""
import pytest

import config
from batos import genesis
from batos.image import Image
from batos.protocol import MissionBrief
from batos.psm import PrototypalStateMachine, extract_method
from tests.conftest import InProcessKernel
from tests.scripted import ScriptedModel

UPPER = "```python\ndef to_upper(self, text):\n    \"\"\"Upper-case.\"\"\"\n    return text.upper()\n```"
BREACH = "```python\ndef to_upper(self, text):\n    self.last = text\n    return text.upper()\n```"
BRIEF = MissionBrief(selector="to_upper", args=["arg0"], example_call="to_upper('hello')")


@pytest.fixture
def image(tmp_path):
    img = Image.open(config.load({"BATOS_HOME": str(tmp_path)}))
    img.bootstrap(genesis.incarnate)
    yield img
    img.close()


def run(image, model, brief=BRIEF, **overrides):
    settings = config.load({"BATOS_CYCLE_RETRIES": "1", "BATOS_REPAIR_SAMPLES": "0",
                            "BATOS_CODE_SAMPLES": "0"}, **overrides)
    events = []
    psm = PrototypalStateMachine(image, model, settings, emit=events.append)
    return psm.run("c1", "genesis_obj", brief), events


def storage_size(image):
    return image.db.storage.getSize()


def test_cycle_walks_the_seven_states_and_installs_the_method(image, tmp_path):
    model = ScriptedModel(methods=[UPPER])
    cycle, events = run(image, model)
    assert cycle.state == "COMPLETE", cycle.reason
    assert cycle.transitions == ["IDLE", "DECOMPOSING", "DELEGATING", "SYNTHESIZING",
                                 "VALIDATING", "COMPLETE"]
    assert [c["persona"] for c in model.calls] == ["BRICK", "ALFRED"]
    assert next(e for e in events if e.get("state") == "DECOMPOSING")["queries"] == ["how"]
    with image.reading() as s:
        assert s.root["cycles"]["c1"]["selector"] == "to_upper"
    image.close()      # the kernel opens the image itself; the method runs in its sandbox
    k = InProcessKernel(config.load({"BATOS_HOME": str(tmp_path), "BATOS_MEMORY_ENABLED": "0"}))
    try:
        assert k.send("genesis_obj", "to_upper", "abc") == "ABC"
    finally:
        k.close()
    states = [e["state"] for e in events if e["event"] == "state"]
    assert states == ["IDLE", "DECOMPOSING", "DELEGATING", "SYNTHESIZING", "VALIDATING", "COMPLETE"]
    assert events[-1]["event"] == "cycle_end" and events[-1]["artifact"].startswith("def to_upper")
    synth = next(e for e in events if e.get("state") == "SYNTHESIZING")   # its own step's record
    assert synth["prompt_chars"] > 0 and synth["answer_chars"] == len(UPPER)


def test_failed_validation_is_fed_back_once_then_succeeds(image):
    model = ScriptedModel(methods=[BREACH, UPPER])
    cycle, _ = run(image, model)
    assert cycle.state == "COMPLETE"
    assert cycle.attempts == 2
    retry_prompt = model.calls[-1]["messages"][-1]["content"]
    assert "Persistence Covenant" in retry_prompt


def test_failed_cycle_leaves_the_image_unchanged(image):
    before = storage_size(image)
    model = ScriptedModel(methods=[BREACH, BREACH])
    cycle, events = run(image, model)
    assert cycle.state == "FAILED"
    assert "Covenant" in cycle.reason
    assert storage_size(image) == before
    with image.reading() as s:
        assert "to_upper" not in s.get("genesis_obj")._slots
        assert "c1" not in s.root["cycles"]
    assert events[-1]["event"] == "cycle_end" and events[-1]["state"] == "FAILED"


def test_an_answer_that_is_not_code_fails_with_a_reason(image):
    model = ScriptedModel(methods=["I am sorry, I cannot help with that.", "Still no code here."])
    cycle, _ = run(image, model)
    assert cycle.state == "FAILED"
    assert "no usable Python function" in cycle.reason


def test_unusable_plan_is_reported_and_the_cycle_goes_on(image):
    model = ScriptedModel(plan="{not json", methods=[UPPER])
    cycle, events = run(image, model)
    assert cycle.state == "COMPLETE"
    assert any("plan_error" in e for e in events)


def test_signature_must_accept_the_call(image):
    two_args = "```python\ndef to_upper(self):\n    return 'X'\n```"
    model = ScriptedModel(methods=[two_args, two_args])
    cycle, _ = run(image, model)
    assert cycle.state == "FAILED" and "takes 0 argument" in cycle.reason


def test_states_are_objects_in_the_image_and_can_be_rewired(image):
    with image.transaction() as s:
        s.get("psm_decomposing_obj").next = "SYNTHESIZING"   # skip DELEGATING
        s.get("psm_synthesizing_obj").max_tokens = 77
    model = ScriptedModel(methods=[UPPER])
    cycle, _ = run(image, model)
    assert cycle.transitions == ["IDLE", "DECOMPOSING", "SYNTHESIZING", "VALIDATING", "COMPLETE"]
    assert model.calls[-1]["max_tokens"] == 77


def test_unknown_target_fails_cleanly(image):
    settings = config.load({})
    psm = PrototypalStateMachine(image, ScriptedModel(), settings)
    cycle = psm.run("c2", "no_such_obj", BRIEF)
    assert cycle.state == "FAILED" and "no object" in cycle.reason


def test_model_errors_fail_the_cycle_not_the_kernel(image):
    class Broken(ScriptedModel):
        def complete(self, *a, **k):
            raise RuntimeError("the model exploded")
    cycle, _ = run(image, Broken())
    assert cycle.state == "FAILED" and "internal error" in cycle.reason


@pytest.mark.parametrize("answer, expected", [
    ("```python\nimport math\n\ndef area(self, r):\n    return math.pi * r * r\n\nprint(area(None, 2))\n```",
     "import math\n\ndef area(self, r):\n    return math.pi * r * r\n"),
    ("def area(self, r):\n    return r\n", "def area(self, r):\n    return r\n"),
    ("```python\nclass Genesis:\n    def __init__(self):\n        self.x = 1\n\n    def area(self, r):\n"
     "        return r * r\n```", "def area(self, r):\n    return r * r\n"),
    ("Here:\n```py\ndef compute_area(self, r):\n    return self.compute_area(r - 1) if r else 0\n```\nDone.",
     "def area(self, r):\n    return self.area(r - 1) if r else 0\n"),
])
def test_extract_method_keeps_imports_and_the_function(answer, expected):
    assert extract_method(answer, "area") == expected


def test_prompts_list_only_the_methods_the_mission_names(image):
    """An object with many methods: a mission's prompts show the ones its words name (and
    the one it replaces), not every method on the object."""
    prime = "```python\ndef is_prime(self, n):\n    \"\"\"Primality.\"\"\"\n    return n > 1 and all(n % d for d in range(2, n))\n```"
    for brief, method in ((BRIEF, UPPER), (MissionBrief(selector="is_prime", args=["n"]), prime)):
        cycle, _ = run(image, ScriptedModel(methods=[method]), brief)
        assert cycle.state == "COMPLETE", cycle.reason
    upto = ("```python\ndef primes_up_to(self, n):\n    \"\"\"Primes.\"\"\"\n"
            "    return [k for k in range(n + 1) if self.is_prime(k)]\n```")
    model = ScriptedModel(methods=[upto])
    cycle, _ = run(image, model, MissionBrief(selector="primes_up_to", args=["n"],
                                               intent="list the primes up to n using this object's is_prime method"))
    assert cycle.state == "COMPLETE", cycle.reason
    def listed(call):
        return next(line for line in call["messages"][-1]["content"].splitlines()
                    if line.startswith("Existing methods:"))
    for call in model.calls:                       # BRICK's plan and the method prompt
        assert listed(call) == "Existing methods: is_prime(n)"
    model = ScriptedModel(methods=["```python\ndef reverse_text(self, text):\n    return text[::-1]\n```"])
    cycle, _ = run(image, model, MissionBrief(selector="reverse_text", args=["text"], intent="reverse the text"))
    assert cycle.state == "COMPLETE", cycle.reason
    assert listed(model.calls[-1]) == "Existing methods: none related to this task"
    # replacing a method: the one it replaces is shown
    model = ScriptedModel(methods=[UPPER])
    run(image, model, MissionBrief(selector="to_upper", args=["text"], intent="upper-case, again"))
    assert listed(model.calls[-1]).startswith("Existing methods: to_upper(")
