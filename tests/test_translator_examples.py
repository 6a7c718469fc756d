"""Examples the Architect states in words become the mission brief's examples."""
import pytest

from batos.protocol import MissionBrief
from client.translator import extract_examples


@pytest.mark.parametrize("words, n, expected", [
    ("write run-length encoding: 'aaab' -> 'a3b1', 'xy' -> 'x1y1'", 1, [[["aaab"], "a3b1"], [["xy"], "x1y1"]]),
    ("add two numbers so that 2, 3 gives 5", 2, [[[2, 3], 5]]),
    ('roman numerals: 4 should return "IV"', 1, [[[4], "IV"]]),
    ("sum a list, e.g. sum_list([1, 2, 3]) returns 6", 1, [[[[1, 2, 3]], 6]]),
    ('count words: "a b a" -> {"a": 2, "b": 1}', 1, [[["a b a"], {"a": 2, "b": 1}]]),
    ("is_even(4) -> True", None, [[[4], True]]),
    ("make a method that reverses words", 1, []),
    ("add 2, 3 gives 5", 1, []),                       # two arguments for a one-parameter method
    ("'unterminated -> 'x'", 1, []),
    ("decode a run-length string like 'a3b1' back to 'aaab'", 1, [[["a3b1"], "aaab"]]),
    ("to_roman(1994) == 'MCMXCIV'; 'x' becomes 'X'", 1, [[[1994], "MCMXCIV"], [["x"], "X"]]),
    ("parse it: '1h' should be 3600, '2m' equals 120", 1, [[["1h"], 3600], [["2m"], 120]]),
    ("turn a duration into seconds", 1, []),          # words only: nothing to take
])
def test_examples_in_the_words_are_extracted_exactly(words, n, expected):
    found = extract_examples(words, n)
    assert found == expected
    if found:
        MissionBrief(selector="m", args=[f"a{i}" for i in range(n or 1)], examples=found)
