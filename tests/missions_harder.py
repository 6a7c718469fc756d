"""Twenty more held-out missions (``./puter.sh bench --flywheel --eval harder``), each with
its own unit checks: specifications with a catch (a small word left lower-case, 11 as
'11th', a leading zero), where a first method is wrong more often than in
tests/missions_hard.py's, so that what the self-tuning loop adopts to rescue a failing
cycle has something to rescue.  None of them is in the training set or the practice.

Same shape as tests/missions_hard.py's: (selector, arg names, intent, checks, kind); the
Architect's words state an example for most of them ("'string' -> 'ingstray'"), which the
translator puts in the brief.
"""
from __future__ import annotations

MISSIONS = [
    ("title_case", ["text"], "capitalize every word except 'a', 'an', 'the', 'of' and 'and', which stay "
     "lower case unless they are the first word: 'the lord of the rings' -> 'The Lord of the Rings'",
     [(["the lord of the rings"], "The Lord of the Rings"), (["a tale of two cities"], "A Tale of Two Cities"),
      (["war and peace"], "War and Peace")], None),
    ("thousands", ["n"], "write an integer with commas between groups of three digits: "
     "1234567 -> '1,234,567'",
     [([1234567], "1,234,567"), ([999], "999"), ([-1234], "-1,234"), ([0], "0")], None),
    ("compress_ranges", ["numbers"], "describe a sorted list of distinct integers as ranges: "
     "[1, 2, 3, 5, 7, 8] -> '1-3,5,7-8'",
     [([[1, 2, 3, 5, 7, 8]], "1-3,5,7-8"), ([[]], ""), ([[4]], "4"), ([[1, 3, 4]], "1,3-4")], None),
    ("expand_ranges", ["text"], "expand a list of ranges like '1-3,5' into the numbers it names: "
     "'1-3,5' -> [1, 2, 3, 5]",
     [(["1-3,5"], [1, 2, 3, 5]), (["7"], [7]), (["2-4,10-11"], [2, 3, 4, 10, 11])], None),
    ("pig_latin", ["word"], "translate a lower-case word to Pig Latin: move the consonants before "
     "the first vowel to the end and add 'ay'; a word that starts with a vowel gets 'way': "
     "'string' -> 'ingstray'",
     [(["string"], "ingstray"), (["apple"], "appleway"), (["hello"], "ellohay")], None),
    ("rotate_list", ["items", "k"], "rotate a list to the right by k places (k may be larger than "
     "the list): [1, 2, 3, 4, 5], 2 -> [4, 5, 1, 2, 3]",
     [([[1, 2, 3, 4, 5], 2], [4, 5, 1, 2, 3]), ([[1, 2, 3], 4], [3, 1, 2]), ([[], 3], [])], None),
    ("ordinal", ["n"], "write a positive integer as an English ordinal: 1 -> '1st', 22 -> '22nd', "
     "13 -> '13th'",
     [([1], "1st"), ([2], "2nd"), ([3], "3rd"), ([4], "4th"), ([11], "11th"), ([12], "12th"),
      ([13], "13th"), ([21], "21st"), ([112], "112th")], None),
    ("common_prefix", ["words"], "return the longest common prefix of a list of words ('' when "
     "there is none or the list is empty)",
     [([["flower", "flow", "flight"]], "fl"), ([["dog", "car"]], ""), ([[]], "")], None),
    ("is_palindrome_text", ["text"], "tell whether a text reads the same backwards, ignoring case "
     "and everything that is not a letter or a digit",
     [(["A man, a plan, a canal: Panama"], True), (["race a car"], False), ([""], True)], None),
    ("merge_intervals", ["intervals"], "merge overlapping or touching intervals, given as [start, "
     "end] pairs in any order, into a sorted list: [[1, 3], [2, 6], [8, 10]] -> [[1, 6], [8, 10]]",
     [([[[1, 3], [2, 6], [8, 10]]], [[1, 6], [8, 10]]), ([[[1, 4], [4, 5]]], [[1, 5]]),
      ([[[5, 6], [1, 2]]], [[1, 2], [5, 6]])], None),
    ("clock_minutes", ["text"], "turn a 12-hour clock time like '2:30 PM' into minutes after "
     "midnight: '12:05 AM' -> 5",
     [(["2:30 PM"], 870), (["12:05 AM"], 5), (["12:00 PM"], 720), (["9:15 AM"], 555)], None),
    ("word_wrap", ["text", "width"], "wrap a text into lines of at most width characters, breaking "
     "only at spaces, and return the list of lines",
     [(["the quick brown fox", 10], ["the quick", "brown fox"]), (["a b c", 1], ["a", "b", "c"])], None),
    ("digital_root", ["n"], "add up the digits of a non-negative integer again and again until one "
     "digit is left: 493193 -> 2",
     [([493193], 2), ([0], 0), ([38], 2)], None),
    ("camel_to_snake", ["name"], "turn a camelCase name into snake_case: 'helloBigWorld' -> "
     "'hello_big_world'",
     [(["helloBigWorld"], "hello_big_world"), (["single"], "single"), (["aB"], "a_b")], None),
    ("spiral_order", ["matrix"], "return the elements of a matrix (a list of rows) in clockwise "
     "spiral order from the top left: [[1, 2], [3, 4]] -> [1, 2, 4, 3]",
     [([[[1, 2, 3], [4, 5, 6], [7, 8, 9]]], [1, 2, 3, 6, 9, 8, 7, 4, 5]), ([[[1, 2], [3, 4]]], [1, 2, 4, 3]),
      ([[]], [])], None),
    ("add_binary", ["a", "b"], "add two binary numbers written as strings and return the sum as a "
     "binary string: '11', '1' -> '100'",
     [(["11", "1"], "100"), (["0", "0"], "0"), (["1010", "1011"], "10101")], None),
    ("mask_card", ["number"], "hide every character of a card number but the last four with '#': "
     "'4556364607935616' -> '############5616'",
     [(["4556364607935616"], "############5616"), (["1234"], "1234"), ([""], "")], None),
    ("valid_ipv4", ["text"], "tell whether the text is an IPv4 address: four decimal numbers from 0 "
     "to 255 separated by dots, without leading zeros",
     [(["192.168.1.1"], True), (["256.1.1.1"], False), (["1.2.3"], False), (["01.2.3.4"], False),
      (["0.0.0.0"], True)], None),
    ("vowel_positions", ["text"], "return the 0-based positions of the vowels (a, e, i, o, u, either "
     "case) in the text: 'Hello' -> [1, 4]",
     [(["Hello"], [1, 4]), (["xyz"], []), (["AbE"], [0, 2])], None),
    ("bottles_left", ["bottles", "per_crate"], "return how many bottles are left over after filling "
     "as many full crates as possible, and how many crates, as a list [crates, left]: 17, 5 -> [3, 2]",
     [([17, 5], [3, 2]), ([10, 5], [2, 0]), ([3, 5], [0, 3])], None),
]
