"""doesNotUnderstand inside methods: a method that sends ``self.x(...)`` to a method its
object lacks gets ``x`` written by a cognitive cycle, then runs again from the start;
bounded by NESTED_CYCLE_DEPTH and NESTED_CYCLE_BUDGET.  ScriptedModel stands in for the
LLM here; the kernel, its image and its sandbox workers are real."""
import pytest

import config
from batos.kernel import CycleFailed, NestedLimit
from batos.sandbox.pool import MethodFailed
from tests.conftest import InProcessKernel
from tests.scripted import ScriptedModel

pytestmark = pytest.mark.process


def code(body: str) -> str:
    return f"```python\n{body}```"


@pytest.fixture
def kernel(tmp_path):
    k = InProcessKernel(config.load({"BATOS_HOME": str(tmp_path), "BATOS_MEMORY_ENABLED": "0",
                                     "BATOS_NESTED_CYCLE_DEPTH": "2", "BATOS_NESTED_CYCLE_BUDGET": "3",
                                     "BATOS_CYCLE_RETRIES": "0"}))
    yield k
    k.close()


def install(k, selector, source):
    return k.loop.run_until_complete(k.kernel.install("genesis_obj", selector, source))


def send(k, selector, *args, progress=None):
    return k.loop.run_until_complete(k.kernel.send("genesis_obj", selector, list(args), {}, progress))


SHOUT = 'def shout(self, text):\n    """Say text loudly."""\n    return self.upper_case(text) + "!"\n'


def test_a_missing_sibling_is_written_and_the_call_runs_again(kernel):
    model = ScriptedModel(plan={"queries": ["upper"], "examples": []},
                          methods=[code('def upper_case(self, arg0):\n    """Upper."""\n    return arg0.upper()\n')])
    kernel.kernel.psm.models = model
    install(kernel, "shout", SHOUT)
    events = []
    reply = send(kernel, "shout", "hi", progress=events.append)
    assert reply["value"] == "HI!"
    assert [c["selector"] for c in reply["cycles"]] == ["upper_case"]
    # the mission came from the calling method and the call
    prompt = model.calls[-1]["messages"][-1]["content"]
    assert "upper_case('hi')" in prompt and "def shout" in prompt
    # progress streamed for the nested cycle
    assert {e["state"] for e in events} >= {"DECOMPOSING", "SYNTHESIZING", "COMPLETE"}
    assert send(kernel, "shout", "ok") == {"value": "OK!"}       # no cycle the second time


def test_reading_a_missing_slot_is_still_an_error(kernel):
    kernel.kernel.psm.models = ScriptedModel(methods=[])
    install(kernel, "peek", 'def peek(self):\n    """Read a slot."""\n    return self.nothing_here\n')
    with pytest.raises(MethodFailed, match="has no slot 'nothing_here'"):
        send(kernel, "peek")
    install(kernel, "has", 'def has(self):\n    """hasattr of a missing name."""\n'
                           '    return hasattr(self, "nothing_here")\n')
    assert send(kernel, "has") == {"value": False}


def test_the_depth_limit_holds_when_each_new_method_calls_another_missing_one(kernel):
    """a -> b -> c -> d: b is written at depth 1, c at 2, d would be 3 (limit 2): a model
    that keeps writing methods that call missing things cannot loop."""
    chain = [code(f'def {x}(self, arg0):\n    """Step."""\n    return self.{y}(arg0) + 1\n')
             for x, y in (("b", "c"), ("c", "d"))]
    kernel.kernel.psm.models = ScriptedModel(plan={"queries": ["step"], "examples": []}, methods=chain)
    install(kernel, "a", 'def a(self, n):\n    """Start."""\n    return self.b(n)\n')
    with pytest.raises(NestedLimit, match="NESTED_CYCLE_DEPTH=2") as info:
        send(kernel, "a", 1)
    assert info.value.details["chain"] == ["b", "c"]


def test_the_budget_holds(kernel):
    """One method calling four missing ones: at most NESTED_CYCLE_BUDGET cycles per request."""
    install(kernel, "fan", 'def fan(self):\n    """Many."""\n    return [self.f1(), self.f2(), self.f3(), self.f4()]\n')
    kernel.kernel.psm.models = ScriptedModel(plan={"queries": ["step"], "examples": []}, methods=[
        code(f'def f{i}(self):\n    """One."""\n    return {i}\n') for i in range(1, 5)])
    with pytest.raises(NestedLimit, match="NESTED_CYCLE_BUDGET=3"):
        send(kernel, "fan")
    # the first three were written and kept: the next request needs one more cycle only
    assert send(kernel, "fan")["value"] == [1, 2, 3, 4]


def test_a_failed_nested_cycle_is_rejected_with_its_reason(kernel):
    kernel.kernel.psm.models = ScriptedModel(plan={"queries": ["x"], "examples": []},
                                             methods=["no code here"])
    install(kernel, "outer", 'def outer(self):\n    """Outer."""\n    return self.inner()\n')
    with pytest.raises(CycleFailed, match="does not understand 'inner'"):
        send(kernel, "outer")
