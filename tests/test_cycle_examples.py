"""Cycles that test what they write: examples from the brief or from BRICK, candidates
run in real sandbox workers on a scratch copy of the object, repair, agreement among
candidates, purity, and examples kept with the method (ScriptedModel stands in for the
LLM; the kernel, its image and its sandbox are real)."""
import pytest

import config
from batos.examples import Outcome, asks_for_state, choose, same
from batos.protocol import MissionBrief
from tests.conftest import InProcessKernel
from tests.scripted import ScriptedModel

pytestmark = pytest.mark.process


def code(body: str) -> str:
    return f"```python\n{body}```"


RLE_WRONG = code('def rle(self, text):\n    """Run-length encode."""\n    return text\n')
RLE_RIGHT = code('def rle(self, text):\n    """Run-length encode."""\n    out = []\n    i = 0\n'
                 '    while i < len(text):\n        j = i\n        while j < len(text) and text[j] == text[i]:\n'
                 '            j += 1\n        out.append(text[i] + str(j - i))\n        i = j\n    return "".join(out)\n')
FLATTEN_STATEFUL = code('def flatten_list(self, items):\n    """Flatten."""\n'
                        '    if not hasattr(self, "flat"):\n        self.flat = []\n'
                        '    for x in items:\n        if isinstance(x, list):\n            self.flat.extend(x)\n'
                        '        else:\n            self.flat.append(x)\n    self._p_changed = True\n    return self.flat\n')
FLATTEN_PURE = code('def flatten_list(self, items):\n    """Flatten one level."""\n    out = []\n'
                    '    for x in items:\n        if isinstance(x, list):\n            out.extend(x)\n'
                    '        else:\n            out.append(x)\n    return out\n')
DOUBLE = code('def double(self, n):\n    """Twice n."""\n    return n * 2\n')
DOUBLE_BROKEN = code('def double(self, n):\n    """Twice n."""\n    return n + 2\n')


def pusher(selector: str = "push_item", slot: str = "stack", pushed: str = "item") -> str:
    """A method that keeps a list in ``slot``, creating it first, and returns its length."""
    return code(f'def {selector}(self, item):\n    """Push."""\n    if not hasattr(self, "{slot}"):\n'
                f'        self.{slot} = []\n    self.{slot}.append({pushed})\n    self._p_changed = True\n'
                f'    return len(self.{slot})\n')


@pytest.fixture
def kernel(tmp_path):
    k = InProcessKernel(config.load({"BATOS_HOME": str(tmp_path), "BATOS_MEMORY_ENABLED": "0",
                                     "BATOS_CYCLE_RETRIES": "1", "BATOS_CYCLE_CANDIDATES": "3",
                                     "BATOS_REPAIR_SAMPLES": "0",
                                     "BATOS_CODE_SAMPLES": "0"}))   # the scripts count one repair
    yield k
    k.close()


def cycle(k, model, brief):
    k.kernel.psm.models = model
    return k.loop.run_until_complete(k.kernel.run_cycle("genesis_obj", brief))


def test_a_candidate_that_fails_an_example_is_repaired(kernel):
    # the first fails; the two sampled next to it fail too; the repair is right
    model = ScriptedModel(methods=[RLE_WRONG, RLE_WRONG, RLE_WRONG, RLE_RIGHT])
    brief = MissionBrief(selector="rle", args=["text"], intent="run-length encode 'aaab' -> 'a3b1'",
                         examples=[[["aaab"], "a3b1"], [["xy"], "x1y1"]])
    result = cycle(kernel, model, brief)
    assert result["state"] == "COMPLETE", result
    assert result["attempts"] == 2 and "j += 1" in result["source"]
    assert [e["passed"] for e in result["examples"]] == [True, True]
    assert [bool(c["temperature"]) for c in model.calls[1:]] == [False, True, True, False]
    repair = model.calls[4]["messages"][-1]["content"]    # plan, first, two samples, then the repair
    assert "rle('aaab') should return 'a3b1' but returned 'aaab'" in repair
    assert kernel.send("genesis_obj", "rle", "zzzzq") == "z4q1"


def test_a_sampled_repair_wins_where_the_greedy_repair_repeats_the_mistake(kernel):
    # the first, its two samples and the greedy repair are wrong; of the two repairs
    # sampled from the same conversation, the first is right
    kernel.kernel.settings = kernel.kernel.psm.settings = config.load(
        {"BATOS_HOME": str(kernel.kernel.settings.HOME), "BATOS_MEMORY_ENABLED": "0",
         "BATOS_CYCLE_RETRIES": "1", "BATOS_CYCLE_CANDIDATES": "3", "BATOS_REPAIR_SAMPLES": "2",
         "BATOS_CODE_SAMPLES": "0"})
    model = ScriptedModel(methods=[RLE_WRONG] * 4 + ["The loop never counts.\n" + RLE_RIGHT, RLE_WRONG])
    brief = MissionBrief(selector="rle", args=["text"], examples=[[["aaab"], "a3b1"], [["xy"], "x1y1"]])
    result = cycle(kernel, model, brief)
    assert result["state"] == "COMPLETE", result
    assert "j += 1" in result["source"] and not model.methods
    repairs = model.calls[4:]
    assert [bool(c["temperature"]) for c in repairs] == [False, True, True]
    assert len({c["seed"] for c in repairs[1:]}) == 2                  # each sample its own seed
    ask = repairs[0]["messages"][-1]["content"]
    assert "which step is wrong" in ask
    assert "rle('aaab') should return 'a3b1' but returned 'aaab' (the first difference is at index 1: " \
           "expected '3', got 'a')" in ask
    assert kernel.send("genesis_obj", "rle", "zzq") == "z2q1"


def test_a_refused_answer_gets_the_plain_repair_and_no_sampled_repairs(kernel):
    kernel.kernel.settings = kernel.kernel.psm.settings = config.load(
        {"BATOS_HOME": str(kernel.kernel.settings.HOME), "BATOS_MEMORY_ENABLED": "0",
         "BATOS_CYCLE_RETRIES": "1", "BATOS_CYCLE_CANDIDATES": "3", "BATOS_REPAIR_SAMPLES": "2",
         "BATOS_CODE_SAMPLES": "0"})
    model = ScriptedModel(methods=["I would double it.", DOUBLE])
    result = cycle(kernel, model, MissionBrief(selector="double", args=["n"], examples=[[[5], 10]]))
    assert result["state"] == "COMPLETE" and result["attempts"] == 2, result
    methods = [c for c in model.calls if c["grammar"] is None]
    assert len(methods) == 2 and not model.methods          # the answer, then one plain repair
    ask = methods[1]["messages"][-1]["content"]
    assert "was refused" in ask and "Answer with only the code" in ask and "which step is wrong" not in ask


def test_the_first_difference_is_named_for_strings_and_lists():
    from batos.examples import first_difference
    assert first_difference("helloBigWorld", "HelloBigWorld") == \
        " (the first difference is at index 0: expected 'h', got 'H')"
    assert first_difference("aaab", "aaa") == " (expected 4 characters, got 3)"
    assert first_difference([1, 2, 3], (1, 2, 4)) == " (the first difference is at index 2: expected 3, got 4)"
    assert first_difference([1, 2.0], [1, 2]) == ""        # equal as the wire sees them
    assert first_difference(5, 6) == "" and first_difference("5", 5) == ""
    long_e, long_a = "x" * 40 + "abc" + "y" * 40, "x" * 40 + "abd" + "y" * 40
    assert first_difference(long_e, long_a) == (" (the first difference is at index 42: expected 'c', got 'd', in "
                                                "'xxxxxxxxabcyyyyyyyyy' against 'xxxxxxxxabdyyyyyyyyy')")


def test_a_sampled_candidate_that_passes_is_chosen_without_a_repair(kernel):
    model = ScriptedModel(methods=[RLE_WRONG, RLE_RIGHT, RLE_WRONG])
    brief = MissionBrief(selector="rle", args=["text"], examples=[[["aaab"], "a3b1"], [["xy"], "x1y1"]])
    result = cycle(kernel, model, brief)
    assert result["state"] == "COMPLETE" and result["attempts"] == 1, result
    assert result["candidates"] == 3 and "j += 1" in result["source"]
    assert not model.methods and len(model.calls) == 4     # plan, first, two samples: no repair


def test_a_pure_mission_gets_a_method_that_answers_the_same_twice(kernel):
    model = ScriptedModel(plan={"queries": ["flatten"], "examples": [{"args": [[1, [2, 3]]], "expected": [1, 2, 3]}]},
                          methods=[FLATTEN_STATEFUL, FLATTEN_STATEFUL, FLATTEN_STATEFUL, FLATTEN_PURE])
    brief = MissionBrief(selector="flatten_list", args=["items"], intent="flatten a nested list one level")
    assert not asks_for_state(brief.selector, brief.intent)
    result = cycle(kernel, model, brief)
    assert result["state"] == "COMPLETE", result
    assert "self.flat" not in result["source"]
    repair = model.calls[4]["messages"][-1]["content"]
    assert "must keep nothing" in repair and "called twice" in repair and "then [1, 2, 3, 1, 2, 3]" in repair
    first = kernel.send("genesis_obj", "flatten_list", [1, [2]])
    assert kernel.send("genesis_obj", "flatten_list", [1, [2]]) == first == [1, 2]
    with kernel.image.reading() as s:
        assert "flat" not in s.get("genesis_obj")._slots       # nothing was ever stored


TRIPLE = code('def double(self, n):\n    """Twice n."""\n    return n * 3\n')


def test_a_wrong_model_example_does_not_block_a_correct_candidate(kernel):
    plan = {"queries": ["double"], "examples": [{"args": [5], "expected": 10},
                                                {"args": [3], "expected": 7}]}     # the last one is wrong
    # it misses the wrong example: fresh candidates are sampled to compare, they agree
    # with it, and the wrong example blocks nothing (no repair toward it)
    model = ScriptedModel(plan=plan, methods=[DOUBLE] * 4)
    result = cycle(kernel, model, MissionBrief(selector="double", args=["n"], intent="double a number"))
    assert result["state"] == "COMPLETE" and result["attempts"] == 1, result
    wanted = kernel.kernel.settings.CYCLE_CANDIDATES
    assert wanted > 1 and result["candidates"] == wanted and len(model.calls) == 1 + wanted
    assert sum(1 for c in model.calls if c["temperature"]) == wanted - 1
    assert [e["passed"] for e in result["examples"]] == [True, False]      # reported, not blocking
    with kernel.image.reading() as s:     # the wrong example is not kept with the method
        assert s.get("genesis_obj")._slots["double"].examples == [[[5], 10]]


def test_candidates_that_agree_win_over_one_that_chases_a_wrong_example(kernel):
    plan = {"queries": ["double"], "examples": [{"args": [5], "expected": 10}, {"args": [3], "expected": 5},
                                                {"args": [4], "expected": 8}]}     # the second is wrong
    # the first (n + 2) passes the Architect's example and matches only the wrong one of
    # BRICK's; the two sampled candidates agree on n * 2, which misses only the wrong one
    model = ScriptedModel(plan=plan, methods=[DOUBLE_BROKEN, DOUBLE, DOUBLE])
    brief = MissionBrief(selector="double", args=["n"], intent="double a number", examples=[[[2], 4]])
    result = cycle(kernel, model, brief)
    assert result["state"] == "COMPLETE" and result["attempts"] == 1, result
    assert "n * 2" in result["source"] and result["candidates"] == 3
    sampled = [c for c in model.calls if c["temperature"]]
    assert len(sampled) == 2 and len({c["seed"] for c in sampled}) == 2
    assert kernel.send("genesis_obj", "double", 21) == 42
    with kernel.image.reading() as s:
        assert s.get("genesis_obj")._slots["double"].examples == [[[2], 4], [[5], 10], [[4], 8]]


def test_no_candidate_passing_its_examples_fails_in_the_examples_phase(kernel):
    model = ScriptedModel(methods=[RLE_WRONG] * 6)
    result = cycle(kernel, model, MissionBrief(selector="rle", args=["text"],
                                               examples=[[["aaab"], "a3b1"]]))
    assert result["state"] == "FAILED" and result["phase"] == "examples"
    assert "should return 'a3b1'" in result["reason"]
    with kernel.image.reading() as s:
        assert "rle" not in s.get("genesis_obj")._slots


def test_a_replacement_that_breaks_a_methods_examples_is_refused(kernel):
    from batos.kernel import InstallRefused
    run = kernel.loop.run_until_complete
    src = 'def triple(self, n):\n    """Three times n."""\n    return n * 3\n'
    done = run(kernel.kernel.install("genesis_obj", "triple", src, [[[2], 6], [[0], 0]]))
    assert [e["passed"] for e in done["examples"]] == [True, True]
    described = run(kernel.kernel.describe("genesis_obj"))
    assert next(m for m in described["methods"] if m["selector"] == "triple")["examples"] == [[[2], 6], [[0], 0]]
    with pytest.raises(InstallRefused) as info:
        run(kernel.kernel.install("genesis_obj", "triple", src.replace("n * 3", "n + 3")))
    assert "examples of the one it would replace" in str(info.value)
    assert "triple(2) should return 6 but returned 5" in str(info.value)
    assert kernel.send("genesis_obj", "triple", 4) == 12        # the old one stays
    # a compatible replacement keeps the examples; an explicit new expectation overrides one
    run(kernel.kernel.install("genesis_obj", "triple", src.replace("n * 3", "3 * n")))
    run(kernel.kernel.install("genesis_obj", "triple", src.replace("n * 3", "n * 3 + (1 if n == 0 else 0)"),
                              [[[0], 1]]))
    with kernel.image.reading() as s:
        assert s.get("genesis_obj")._slots["triple"].examples == [[[0], 1], [[2], 6]]


def test_choosing_by_agreement():
    right = [Outcome([1], 2, 2), Outcome([2], 4, 4), Outcome([3], 7, 6)]
    chase = [Outcome([1], 2, 3), Outcome([2], 4, 4), Outcome([3], 7, 7)]
    pick = choose([chase, right, right], trusted=0)
    assert pick.index == 1 and pick.accepted and pick.agreeing == 2
    assert not choose([right], trusted=0).accepted            # alone, it does not outvote an example
    assert not choose([right, right], trusted=3).accepted     # the Architect's examples must all pass
    assert same((1, 2.0), [1, 2]) and not same(True, 1) and same({"a": 1}, {"a": 1.0})


def test_candidates_that_raise_do_not_vouch_for_each_other():
    """parse_duration, as a flywheel evaluation logged it: BRICK's expected values for
    '1h30m' and '2h5s' are wrong; four candidates raise on them, three answer every input."""
    args = [["1h30m"], ["45s"], ["2h5s"], ["10m"]]
    expected = [9000, 45, 750, 600]
    bad = "ValueError: invalid literal for int() with base 10: '1h30'"
    raising = [Outcome(args[0], 9000, error=bad), Outcome(args[1], 45, 45),
               Outcome(args[2], 750, error=bad), Outcome(args[3], 600, 600)]
    answering = [Outcome(a, e, v) for a, e, v in zip(args, expected, [5400, 45, 7205, 600])]
    pick = choose([raising] * 4 + [answering] * 3, trusted=0)
    assert pick.index == 4 and pick.passed == 2 and pick.agreeing == 3
    # still: a raising candidate that matches more examples beats one that matches fewer
    worse = [Outcome(a, e, v) for a, e, v in zip(args, expected, [1, 45, 2, 3])]
    assert choose([raising, raising, worse], trusted=0).index == 0
    # ... and a raising group that matches more than any answering group keeps its size
    # (then its exception is repaired): 4 x 3 matches against 2 x 2
    nearer = [Outcome(args[0], 9000, 9000), raising[1], raising[2], raising[3]]
    assert choose([nearer] * 4 + [answering] * 2, trusted=0).index == 0
    # and agreement still counts among candidates that answer
    other = [Outcome(a, e, v) for a, e, v in zip(args, expected, [90, 45, 75, 600])]
    assert choose([other, answering, answering], trusted=0).index == 1


def test_with_consensus_the_largest_group_wins_when_no_example_matches():
    """most_common_letter, as a forty-mission run logged it: BRICK's four expected values
    are all wrong and one passes an integer for the text, so every candidate raises
    there and none matches an example.  Without ``consensus`` the first method is
    installed whatever the others agree on; with it, the largest answering group."""
    args = [["Hello, World!"], ["Brick OS"], [1234567890], ["Brick OS is awesome!"]]
    expected = ["o", "B", 1, "e"]
    raised = "AttributeError: 'int' object has no attribute 'lower'"

    def run(*answers):
        return [Outcome(a, e, v, error=raised if v is None else None) for a, e, v in zip(args, expected, answers)]
    first = run("h", "b", None, "a")        # the least frequent letter
    right = run("l", "b", None, "o")
    other = run("l", "k", None, "o")        # ties not alphabetical
    runs = [first, other, right, right, right]
    assert choose(runs, trusted=0).index == 0
    pick = choose(runs, trusted=0, consensus=True)
    assert pick.index == 2 and pick.agreeing == 3 and pick.passed == 0 and not pick.accepted
    # the integer every candidate raises on is left out: a group raising on another input
    # does not vouch for itself against one that answers the rest
    partial = run("l", None, None, "o")
    assert choose([partial, partial, partial, right], trusted=0, consensus=True).index == 3
    # a match still outranks any number of agreeing candidates
    matching = run("o", "k", None, "x")
    assert choose([right, right, right, matching], trusted=0, consensus=True).index == 3
    # and with nobody agreeing, the first method stays
    assert choose([first, other, right], trusted=0, consensus=True).index == 0


LETTER_LEAST = code('def top_letter(self, text):\n    """Most frequent letter."""\n'
                   '    return min(text, key=text.count)\n')
LETTER_MOST = code('def top_letter(self, text):\n    """Most frequent letter."""\n'
                   '    return max(sorted(text), key=text.count)\n')


def test_a_cycle_whose_examples_all_miss_installs_what_its_candidates_agree_on(kernel):
    """BRICK's expected values all wrong, the first method wrong, two samples agreeing on
    a right one: the state machine object's ``consensus`` (1 unless set) installs the
    samples' method; with ``consensus`` 0, the first."""
    from batos import autotelic
    plan = {"queries": [], "examples": [{"args": ["aab"], "expected": "x"}, {"args": ["abb"], "expected": "y"}]}
    brief = MissionBrief(selector="top_letter", args=["text"], intent="the most frequent letter")
    result = cycle(kernel, ScriptedModel(plan=plan, methods=[LETTER_LEAST, LETTER_MOST, LETTER_MOST]), brief)
    assert result["state"] == "COMPLETE" and "max(sorted(text)" in result["source"], result
    assert kernel.send("genesis_obj", "top_letter", "abcbb") == "b"
    kernel.kernel.image.transact(lambda s: autotelic.apply(s.root, {"kind": "tuning", "target": "consensus",
                                                                    "value": 0}))
    kernel.kernel.image.transact(lambda s: delattr(s.get("genesis_obj"), "top_letter"))
    result = cycle(kernel, ScriptedModel(plan=plan, methods=[LETTER_LEAST, LETTER_MOST, LETTER_MOST]), brief)
    assert result["state"] == "COMPLETE" and "min(text" in result["source"], result


def test_a_method_keeping_data_under_its_own_name_is_repaired(kernel):
    """``self.tally`` in the method ``tally`` is the method itself: refused before it runs."""
    clash = code('def tally(self, item):\n    """Count item."""\n    if not hasattr(self, "tally"):\n'
                 '        self.tally = {}\n    self.tally[item] = self.tally.get(item, 0) + 1\n'
                 '    self._p_changed = True\n    return self.tally[item]\n')
    right = code('def tally(self, item):\n    """Count item."""\n    if not hasattr(self, "tally_counts"):\n'
                 '        self.tally_counts = {}\n    self.tally_counts[item] = self.tally_counts.get(item, 0) + 1\n'
                 '    self._p_changed = True\n    return self.tally_counts[item]\n')
    model = ScriptedModel(plan={"queries": ["count"], "examples": []}, methods=[clash, right])
    brief = MissionBrief(selector="tally", args=["item"],
                         intent="keep a tally on this object of how many times each item was given")
    result = cycle(kernel, model, brief)
    assert result["state"] == "COMPLETE" and result["attempts"] == 2, result
    assert "self.tally is this method itself" in model.calls[2]["messages"][-1]["content"]
    assert [kernel.send("genesis_obj", "tally", x) for x in "xyx"] == [1, 1, 2]


COUNT_NO_IMPORT = code('def count_words(self, text):\n    """Count words."""\n'
                       '    return dict(collections.Counter(text.split()))\n')


def test_a_module_used_without_its_import_gets_the_import(kernel):
    """``collections.Counter`` without ``import collections`` would raise NameError on the
    first call: the kernel adds the import of an allowed module itself."""
    model = ScriptedModel(plan={"queries": ["count"], "examples": []}, methods=[COUNT_NO_IMPORT])
    result = cycle(kernel, model, MissionBrief(selector="count_words", args=["text"], intent="count the words"))
    assert result["state"] == "COMPLETE" and result["attempts"] == 1, result
    assert "    import collections\n" in result["source"]
    assert kernel.send("genesis_obj", "count_words", "a b a") == {"a": 2, "b": 1}


def test_a_bare_call_of_the_method_itself_becomes_a_send(kernel):
    """``fact(n - 1)`` inside ``fact`` would pass n as self: the kernel makes it
    ``self.fact(n - 1)``."""
    bare = code('def fact(self, n):\n    """n!"""\n    return 1 if n < 2 else n * fact(n - 1)\n')
    model = ScriptedModel(plan={"queries": ["f"], "examples": []}, methods=[bare])
    result = cycle(kernel, model, MissionBrief(selector="fact", args=["n"], intent="n factorial"))
    assert result["state"] == "COMPLETE" and result["attempts"] == 1, result
    assert "n * self.fact(n - 1)" in result["source"]
    assert kernel.send("genesis_obj", "fact", 5) == 120


def test_a_name_nothing_defines_is_repaired_before_it_runs(kernel):
    undefined = code('def area(self, r):\n    """Area."""\n    return PI * r * r\n')
    right = code('def area(self, r):\n    """Area."""\n    import math\n    return math.pi * r * r\n')
    model = ScriptedModel(plan={"queries": ["f"], "examples": []}, methods=[undefined, right])
    result = cycle(kernel, model, MissionBrief(selector="area", args=["r"], intent="circle area"))
    assert result["state"] == "COMPLETE" and result["attempts"] == 2, result
    assert "the name 'PI' is not defined" in model.calls[2]["messages"][-1]["content"]


def test_raising_on_brick_inputs_asks_for_a_repair_but_never_blocks(kernel):
    """BRICK's expected values may be wrong, so they never block; an exception on its
    inputs is still worth one repair, and the best candidate is installed either way."""
    halve_raises = code('def halve(self, n):\n    """Half of n."""\n    return n.bit_length() // 2\n')
    halve = code('def halve(self, n):\n    """Half of n."""\n    return n / 2\n')
    model = ScriptedModel(plan={"queries": ["half"], "examples": [{"args": [3.0], "expected": 1.5}]},
                          methods=[halve_raises, halve_raises, halve_raises, halve])
    result = cycle(kernel, model, MissionBrief(selector="halve", args=["n"], intent="half of n"))
    assert result["state"] == "COMPLETE" and result["attempts"] == 2, result
    assert "raised" in model.calls[4]["messages"][-1]["content"]    # after the two samples
    assert kernel.send("genesis_obj", "halve", 3.0) == 1.5
    # with no attempt left, a candidate that raises on BRICK's input is still installed
    model = ScriptedModel(plan={"queries": ["half"], "examples": [{"args": [3.0], "expected": 1.5}]},
                          methods=[halve_raises.replace("halve", "halve2")] * 3)
    kernel.kernel.settings = kernel.kernel.psm.settings = config.load({
        "BATOS_HOME": str(kernel.kernel.settings.HOME), "BATOS_MEMORY_ENABLED": "0", "BATOS_CYCLE_RETRIES": "0",
        "BATOS_CYCLE_CANDIDATES": "3", "BATOS_CODE_SAMPLES": "0"})
    result = cycle(kernel, model, MissionBrief(selector="halve2", args=["n"], intent="half of n"))
    assert result["state"] == "COMPLETE" and result["examples"][0]["error"], result


def test_a_stateful_method_that_never_creates_its_slot_is_repaired(kernel):
    """``self.stack.append`` on an object with no ``stack``: an AttributeError on the first
    call on a fresh object, named before it runs."""
    lazy = code('def push_item(self, item):\n    """Push."""\n    self.stack.append(item)\n'
                '    self._p_changed = True\n    return len(self.stack)\n')
    model = ScriptedModel(plan={"queries": ["stack"], "examples": []}, methods=[lazy, pusher()])
    result = cycle(kernel, model, MissionBrief(selector="push_item", args=["item"],
                                               intent="push the item onto a stack kept on this object"))
    assert result["state"] == "COMPLETE" and result["attempts"] == 2, result
    assert "line 3: self.stack is read, but this object has no slot 'stack'" in model.calls[2]["messages"][-1]["content"]
    assert [kernel.send("genesis_obj", "push_item", x) for x in "ab"] == [1, 2]


def test_the_covenant_line_is_added_by_the_kernel_for_a_mission_that_keeps_something(kernel):
    forgot = code('def next_ticket(self):\n    """Next ticket."""\n    if not hasattr(self, "last_ticket"):\n'
                  '        self.last_ticket = 0\n    self.last_ticket += 1\n    return self.last_ticket\n')
    model = ScriptedModel(plan={"queries": ["t"], "examples": []}, methods=[forgot])
    result = cycle(kernel, model, MissionBrief(selector="next_ticket", args=[],
                                               intent="hand out ticket numbers: 1 the first time, then 2, 3"))
    assert result["state"] == "COMPLETE" and result["attempts"] == 1, result
    assert "    self._p_changed = True\n    return self.last_ticket" in result["source"]
    assert [kernel.send("genesis_obj", "next_ticket") for _ in range(3)] == [1, 2, 3]
    # a mission that keeps nothing is not given it: changing state there is refused
    model = ScriptedModel(plan={"queries": ["t"], "examples": []}, methods=[forgot.replace("next_ticket", "peek")] * 2)
    result = cycle(kernel, model, MissionBrief(selector="peek", args=[], intent="return the number 1"))
    assert result["state"] == "FAILED", result


def test_brick_examples_quoted_or_cut_off_are_still_read(kernel):
    """A small model quotes numbers and lists ("2020", "[1, 2]") and runs out of tokens
    mid-plan: the values are read as what they spell, and the finished examples kept."""
    from batos.psm import load_plan, typed
    assert [typed(v) for v in ("2020", "[1, 2]", "-1.5", "true", "a3b1", "12ab", "", "['a', 'b']", "[x]")] == \
        [2020, [1, 2], -1.5, True, "a3b1", "12ab", "", ["a", "b"], "[x]"]
    cut = '{"examples": [{"args": ["2000"], "expected": true}, {"args": [1900], "expected": false}, {"args": [20'
    assert load_plan(cut) == {"examples": [{"args": ["2000"], "expected": True},
                                           {"args": [1900], "expected": False}]}
    with pytest.raises(ValueError):
        load_plan('{"examples": [{"args": [')
    leap = code('def is_leap(self, year):\n    """Leap year?"""\n'
                '    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)\n')
    model = ScriptedModel(plan=cut, methods=[leap])
    result = cycle(kernel, model, MissionBrief(selector="is_leap", args=["year"], intent="is it a leap year"))
    assert result["state"] == "COMPLETE" and result["attempts"] == 1, result
    assert [(e["args"], e["passed"]) for e in result["examples"]] == [([2000], True), ([1900], True)]
    assert len(model.calls) == 2      # the plan and the method: passing both, nothing sampled
    # the plan's grammar asks for exactly as many arguments as the method takes
    args = model.calls[0]["grammar"]["properties"]["examples"]["items"]["properties"]["args"]
    assert args["minItems"] == args["maxItems"] == 1
    from llama_cpp.llama_grammar import json_schema_to_gbnf
    import json
    from batos.psm import plan_schema
    assert 'examples-item-args ::= "[" space  "]" space' in json_schema_to_gbnf(json.dumps(plan_schema(False, True, 0)))


def test_a_plan_with_as_many_examples_as_its_grammar_allows_is_taken_whole(kernel):
    """The grammar and the plan's check agree: a plan the grammar lets BRICK write (here the
    most examples it allows) is never refused afterwards as invalid."""
    from batos.psm import MAX_PROPOSED, PLAN_SCHEMA, ResearchPlan
    assert PLAN_SCHEMA["properties"]["examples"]["maxItems"] == MAX_PROPOSED == \
        ResearchPlan.model_fields["examples"].metadata[0].max_length
    years = [2000, 1900, 2024, 2023, 1600][:MAX_PROPOSED]
    plan = {"examples": [{"args": [y], "expected": y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)}
                         for y in years]}
    leap = code('def is_leap(self, year):\n    """Leap year?"""\n'
                '    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)\n')
    model = ScriptedModel(plan=plan, methods=[leap])
    result = cycle(kernel, model, MissionBrief(selector="is_leap", args=["year"], intent="is it a leap year"))
    assert result["state"] == "COMPLETE", result
    assert [e["args"][0] for e in result["examples"]] == years and all(e["passed"] for e in result["examples"])


def test_a_stateful_mission_is_shown_only_the_slots_it_relates_to(kernel):
    run = kernel.loop.run_until_complete
    run(kernel.kernel.install("genesis_obj", "push_item", pusher().removeprefix("```python\n").removesuffix("```")))
    assert kernel.send("genesis_obj", "push_item", "a") == 1
    record = code('def record_score(self, score):\n    """Average so far."""\n'
                  '    if not hasattr(self, "scores"):\n        self.scores = []\n    self.scores.append(score)\n'
                  '    self._p_changed = True\n    return sum(self.scores) / len(self.scores)\n')
    model = ScriptedModel(plan={"queries": ["x"], "examples": []}, methods=[record])
    result = cycle(kernel, model, MissionBrief(selector="record_score", args=["score"],
                                               intent="record a score on this object and return the average so far"))
    assert result["state"] == "COMPLETE", result
    prompt = model.calls[-1]["messages"][-1]["content"]
    assert "stack" not in prompt and "keep its data in a new attribute" in prompt
    pop = code('def pop_item(self):\n    """Pop."""\n    item = self.stack.pop()\n    self._p_changed = True\n'
               '    return item\n')
    model = ScriptedModel(plan={"queries": ["x"], "examples": []}, methods=[pop])
    result = cycle(kernel, model, MissionBrief(selector="pop_item", args=[],
                                               intent="pop the last item from the stack kept by push_item"))
    assert result["state"] == "COMPLETE", result
    assert "stack (list)" in model.calls[-1]["messages"][-1]["content"]
    assert kernel.send("genesis_obj", "pop_item") == "a"


def test_data_kept_under_a_private_name_is_renamed_not_refused(kernel):
    """``self._stack`` is refused by the sandbox; the kernel renames it (and the
    ``hasattr`` string) to ``stack`` rather than spending a repair on it."""
    model = ScriptedModel(plan={"queries": ["x"], "examples": []}, methods=[pusher(slot="_stack")])
    result = cycle(kernel, model, MissionBrief(selector="push_item", args=["item"],
                                               intent="push the item onto a stack kept on this object"))
    assert result["state"] == "COMPLETE" and result["attempts"] == 1, result
    assert "self.stack.append(item)" in result["source"] and "_stack" not in result["source"]
    assert [kernel.send("genesis_obj", "push_item", x) for x in "ab"] == [1, 2]


def test_a_stateful_missions_repeated_calls_are_kept_in_order(kernel):
    """next_ticket() -> 1, then 2, then 3: the same arguments with different results are
    the point of a stateful example, not duplicates."""
    stuck = code('def next_ticket(self):\n    """Next."""\n    if not hasattr(self, "ticket"):\n'
                 '        self.ticket = 1\n    self._p_changed = True\n    return self.ticket\n')
    counter = code('def next_ticket(self):\n    """Next."""\n    if not hasattr(self, "ticket"):\n'
                   '        self.ticket = 0\n    self.ticket += 1\n    self._p_changed = True\n    return self.ticket\n')
    plan = {"examples": [{"args": [], "expected": 1}, {"args": [], "expected": 2}, {"args": [], "expected": 3}]}
    model = ScriptedModel(plan=plan, methods=[stuck, counter, counter])
    result = cycle(kernel, model, MissionBrief(selector="next_ticket", args=[],
                                               intent="hand out ticket numbers: 1 the first time, then 2, 3"))
    assert result["state"] == "COMPLETE", result
    assert [e["expected"] for e in result["examples"]] == [1, 2, 3] and all(e["passed"] for e in result["examples"])
    assert "+= 1" in result["source"]
    assert [kernel.send("genesis_obj", "next_ticket") for _ in range(2)] == [1, 2]


def test_a_repair_is_shown_the_method_as_the_kernel_checked_it(kernel):
    """The findings' line numbers are those of the source after the kernel's own fixes
    (here ``self._items`` renamed), so that is the answer the repair conversation shows."""
    broken = pusher("add_item", "_items", "normalize(item)")
    model = ScriptedModel(plan={"queries": ["x"], "examples": []}, methods=[broken, pusher("add_item", "items")])
    result = cycle(kernel, model, MissionBrief(selector="add_item", args=["item"],
                                               intent="add the item to a list kept on this object"))
    assert result["state"] == "COMPLETE" and result["attempts"] == 2, result
    shown = model.calls[2]["messages"][-2]
    assert shown["role"] == "assistant" and "self.items.append(normalize(item))" in shown["content"]
    assert "_items" not in shown["content"]
    assert "the name 'normalize' is not defined" in model.calls[2]["messages"][-1]["content"]


def test_a_code_completion_candidate_wins_where_the_chat_samples_repeat_the_mistake(kernel):
    """The first answer and its chat samples fail the Architect's example; of the two code
    completions (the method's header and the example as a doctest, continued as a file),
    the greedy one is wrong and the sampled one right: it is chosen without a repair, its
    bare recursive call made a send to self."""
    kernel.kernel.settings = kernel.kernel.psm.settings = config.load(
        {"BATOS_HOME": str(kernel.kernel.settings.HOME), "BATOS_MEMORY_ENABLED": "0",
         "BATOS_CYCLE_RETRIES": "1", "BATOS_CYCLE_CANDIDATES": "3", "BATOS_CODE_SAMPLES": "2"})
    wrong = code('def flatten_list(self, items):\n    """Flatten."""\n    return list(items)\n')
    right = ("    out = []\n    for x in items:\n        if isinstance(x, list):\n"
             "            out.extend(flatten_list(x))\n        else:\n            out.append(x)\n"
             "    return out\n\n\nprint(flatten_list([1, [2]]))\n")
    model = ScriptedModel(methods=[wrong] * 3, completions=["    return items\n", right])
    brief = MissionBrief(selector="flatten_list", args=["items"], intent="flatten a nested list",
                         examples=[[[[1, [2, [3]]]], [1, 2, 3]]])
    result = cycle(kernel, model, brief)
    assert result["state"] == "COMPLETE" and result["attempts"] == 1, result
    assert "out.extend(self.flatten_list(x))" in result["source"] and "print" not in result["source"]
    assert result["source"].startswith('def flatten_list(self, items):\n    """Flatten a nested list."""')
    texts = [c for c in model.calls if "prompt" in c]
    assert [c["temperature"] for c in texts][0] == 0.0 and texts[1]["temperature"] > 0
    assert texts[0]["prompt"].endswith('def flatten_list(items):\n    """Flatten a nested list.\n\n'
                                       '    >>> flatten_list([1, [2, [3]]])\n    [1, 2, 3]\n    """\n')
    assert not model.methods and not model.completions
    assert kernel.send("genesis_obj", "flatten_list", [[1, [2]], 3]) == [1, 2, 3]
    done = lambda e: e.get("state") == "VALIDATING" and e.get("next") == "COMPLETE"   # noqa: E731
    events = kernel.wait_events(lambda ev: any(map(done, ev)))
    chosen = [e for e in events if done(e)]
    assert chosen[-1]["chosen_kind"] == "code completion"
    assert chosen[-1]["compared"] == [["first", 0, 0], ["chat sample", 0, 0], ["chat sample", 0, 0],
                                      ["code completion", 0, 0], ["code completion", 1, 0]]
    assert [e.get("code_samples") for e in events if e.get("state") == "SYNTHESIZING"] == [None, 2]


def test_a_mission_that_keeps_something_gets_no_code_completion():
    from batos.psm import CognitiveCycle, code_prompt
    import threading
    keep = CognitiveCycle("c", "genesis_obj", MissionBrief(selector="tally", args=["item"],
                          intent="keep a tally of each item"), threading.Event())
    keep.pure = False
    assert code_prompt(keep) is None
    keep.pure = True
    assert code_prompt(keep).endswith('def tally(item):\n    """Keep a tally of each item.\n    """\n')
    words = CognitiveCycle("c", "genesis_obj", MissionBrief(selector="f", args=["x"]), threading.Event())
    assert code_prompt(words) is None        # no words to write the docstring from
    caller = CognitiveCycle("c", "genesis_obj", MissionBrief(
        selector="to_capitals", args=["arg0"], intent="Write to_capitals so that shout_greeting works. "
        "The calling method:\ndef shout_greeting(self, name):\n    return self.to_capitals(name) + '!'"),
        threading.Event())
    assert code_prompt(caller) is None       # a caller's source is no docstring for the new method


def test_a_code_completion_is_reindented_and_an_empty_one_refused():
    import ast
    import threading
    from batos.psm import CognitiveCycle, ParsingError, code_method, code_prompt
    c = CognitiveCycle("c", "genesis_obj", MissionBrief(
        selector="strip_fences", args=["text"], intent='remove ``` fences and """quotes""" from \\ text\x0c now'),
        threading.Event())
    for body in ("  return text.strip('`')\n", "\treturn text.strip('`')\nprint(1)\n",
                 "        return text.strip('`')\n\n\nclass X:\n    pass\n"):
        source = code_method(c, body)
        assert source.endswith("\n    return text.strip('`')\n"), source
        ast.parse(source)
    assert '"""Remove ``` fences and \'\'\'quotes\'\'\' from \\\\ text now."""' in code_method(c, "  return 1\n")
    for empty in ("", "\n\n", "    pass\n", "print(1)\n"):
        with pytest.raises(ParsingError):
            code_method(c, empty)
    with pytest.raises(ParsingError):
        code_method(c, "    return (\n")
    assert code_prompt(c) is None            # a form feed splits the words' lines
    c = CognitiveCycle("c", "genesis_obj", MissionBrief(selector="f", args=["text"], intent="quote it"),
                       threading.Event())
    c.trusted = [[['a"""b\\'], 'x"""']]
    prompt = code_prompt(c)
    ast.parse(prompt + "    pass\n")          # the doctest's quotes do not close the docstring
    assert prompt.count('"""') == 2


def test_code_completions_are_drawn_with_one_chat_candidate_and_only_once(kernel):
    kernel.kernel.settings = kernel.kernel.psm.settings = config.load(
        {"BATOS_HOME": str(kernel.kernel.settings.HOME), "BATOS_MEMORY_ENABLED": "0",
         "BATOS_CYCLE_RETRIES": "1", "BATOS_CYCLE_CANDIDATES": "1", "BATOS_CODE_SAMPLES": "1"})
    model = ScriptedModel(methods=[DOUBLE_BROKEN, DOUBLE_BROKEN], completions=["    pass\n"])
    brief = MissionBrief(selector="double", args=["n"], intent="twice n", examples=[[[5], 10]])
    result = cycle(kernel, model, brief)
    # the refused (empty) code completion is not drawn again next to the repair
    assert result["state"] == "FAILED" and result["phase"] == "examples", result
    assert not model.methods and not model.completions
    model = ScriptedModel(methods=[DOUBLE_BROKEN], completions=["    return n * 2\n"])
    result = cycle(kernel, model, MissionBrief(selector="double", args=["n"], intent="twice n",
                                               examples=[[[5], 10]]))
    assert result["state"] == "COMPLETE" and result["attempts"] == 1, result
    assert kernel.send("genesis_obj", "double", 21) == 42


def test_brick_writes_no_more_examples_than_plan_examples_says(tmp_path):
    """``PLAN_EXAMPLES`` 2: the plan is asked for "1 or 2" (the grammar allows two), and a
    backend that writes more anyway (one without grammars reads the schema in its
    prompt) has only the first two run and kept."""
    k = InProcessKernel(config.load({"BATOS_HOME": str(tmp_path), "BATOS_MEMORY_ENABLED": "0",
                                     "BATOS_CYCLE_CANDIDATES": "1", "BATOS_CODE_SAMPLES": "0",
                                     "BATOS_PLAN_EXAMPLES": "2"}))
    try:
        plan = {"queries": ["double"], "examples": [{"args": [n], "expected": 2 * n} for n in (1, 2, 3, 4)]}
        model = ScriptedModel(plan=plan, methods=[DOUBLE])
        result = cycle(k, model, MissionBrief(selector="double", args=["n"], intent="double a number"))
        assert result["state"] == "COMPLETE" and len(result["examples"]) == 2, result
        asked = model.calls[0]
        assert "1 or 2 examples" in asked["messages"][1]["content"]
        assert asked["grammar"]["properties"]["examples"]["maxItems"] == 2
        with k.image.reading() as s:
            assert s.get("genesis_obj")._slots["double"].examples == [[[1], 2], [[2], 4]]
    finally:
        k.close()
