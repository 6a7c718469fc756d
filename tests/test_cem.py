"""The Composite Entropy Metric (batos/cem.py) on known cases, with word similarity and
with the Fractal Memory's real embedder; and a cycle that reports it."""
import pytest

import config
from batos import cem
from batos.protocol import MissionBrief
from tests.conftest import InProcessKernel
from tests.scripted import ScriptedModel

UPPER = 'def to_upper(self, text):\n    """Return text in upper case."""\n    return text.upper()\n'


def test_known_cases_with_word_similarity():
    same = cem.score(complete=True, mission="a b c", method="a b c", pass_rate=1.0, library=[],
                     candidates=[], queries=[])
    assert same["relevance"] == 1.0 and same["novelty"] == 1.0 and same["diversity"] == 0.0
    assert same["score"] == pytest.approx((0.5 * 1 + 0.3 * 1 + 0.2 * 0) / 1.0)
    assert same["similarity"] == "words"
    # a method already in the library is not novel; half the examples halve the pass part
    copy = cem.score(complete=True, mission="a b c", method="a b c", pass_rate=0.5, library=["a b c"],
                     candidates=["x y", "x y"], queries=[])
    assert copy["novelty"] == 0.0 and copy["relevance"] == 0.75 and copy["diversity"] == 0.0
    # candidates that share no word are as diverse as can be; queries count when there is one candidate
    apart = cem.score(complete=True, mission="m", method="q", pass_rate=None, library=["r"],
                      candidates=["a b", "c d"], queries=["e"])
    assert apart["diversity"] == 1.0 and apart["relevance"] == 0.5
    queries = cem.score(complete=True, mission="m", method="q", pass_rate=None, library=[],
                        candidates=["only one"], queries=["a b", "a c"])
    assert queries["diversity"] == pytest.approx(1 - 1 / 3, abs=1e-3)
    # weights from the state machine object, normalised by their sum
    weighted = cem.score(complete=True, mission="a b c", method="a b c", pass_rate=1.0, library=[],
                         candidates=[], queries=[], weights={"relevance": 2, "novelty": 0, "diversity": 0})
    assert weighted["score"] == 1.0
    failed = cem.score(complete=False, mission="a", method="a", pass_rate=1.0, library=[],
                       candidates=[], queries=[])
    assert failed["score"] == 0.0 and failed["relevance"] == 1.0


def test_the_embedding_similarity_ranks_a_fitting_method_above_an_unrelated_one():
    from batos.memory import FractalMemory
    embed = FractalMemory(config.load({})).embedder.encode
    fits = cem.score(complete=True, mission="to upper return the text in upper case", method=UPPER,
                     pass_rate=1.0, library=[], candidates=[], queries=[], embed=embed)
    off = cem.score(complete=True, mission="compute the median of a list of numbers", method=UPPER,
                    pass_rate=1.0, library=[], candidates=[], queries=[], embed=embed)
    assert fits["similarity"] == "embedding" and fits["relevance"] > off["relevance"] + 0.1
    near = cem.score(complete=True, mission="shout", method=UPPER, pass_rate=1.0, embed=embed,
                     library=[UPPER.replace("to_upper", "shout")], candidates=[], queries=[])
    assert near["novelty"] < 0.2 < fits["novelty"]


@pytest.mark.process
def test_a_cycle_reports_its_cem_in_the_result_and_the_log(tmp_path):
    k = InProcessKernel(config.load({"BATOS_HOME": str(tmp_path), "BATOS_MEMORY_ENABLED": "0"}))
    try:
        k.kernel.psm.models = ScriptedModel(plan={"queries": ["upper case"], "examples": []},
                                            methods=[f"```python\n{UPPER}```"])
        brief = MissionBrief(selector="to_upper", args=["text"], intent="return the text in upper case",
                             examples=[[["ab"], "AB"]])
        result = k.loop.run_until_complete(k.kernel.run_cycle("genesis_obj", brief))
        assert result["state"] == "COMPLETE" and result["cem"]["relevance"] > 0.5
        assert 0 < result["cem"]["score"] <= 1 and result["cem"]["similarity"] == "words"
    finally:
        k.close()
    ends = [line for line in (tmp_path / "metacognition.jsonl").read_text().splitlines() if "cycle_end" in line]
    assert '"cem": {"score"' in ends[-1]
