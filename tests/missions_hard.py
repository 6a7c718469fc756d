"""Forty harder everyday missions, each with its own unit checks (``./puter.sh bench
--missions-hard``): strings, lists, numbers, dates, parsing, objects that keep state
between calls, and methods that call their siblings.

Each is taught through ``initiate_cognitive_cycle`` as the client would send it (the
Architect's words as ``intent``; examples written in the words, "'aaab' -> 'a3b1'",
go into the brief as the translator puts them), then called through ``send_message``
with each check in order.  A method that keeps nothing is called twice per check: a
method that stores its result on the object answers wrong the second time.
"""
from __future__ import annotations

import statistics
import time

from client.translator import extract_examples

STATEFUL = "stateful"   # marks a mission whose checks depend on the calls before them

# (selector, arg names, intent, [(args, expected or predicate)], kind)
MISSIONS = [
    # strings
    ("run_length_encode", ["text"], "run-length encode a string: 'aaab' -> 'a3b1'",
     [(["aaab"], "a3b1"), (["abc"], "a1b1c1"), ([""], "")], None),
    ("run_length_decode", ["text"], "decode a run-length encoded string like 'a3b1' back to 'aaab' "
     "(counts may have several digits)",
     [(["a3b1"], "aaab"), (["x12"], "x" * 12)], None),
    ("brackets_balanced", ["text"], "tell whether the brackets (), [] and {} in the text are balanced "
     "and properly nested; other characters are ignored",
     [(["(a[b]{c})"], True), (["(]"], False), (["(("], False), ([""], True), (["{[()()]}"], True)], None),
    ("is_anagram", ["first", "second"], "tell whether two words are anagrams of each other, ignoring "
     "case and spaces",
     [(["Listen", "Silent"], True), (["abc", "abd"], False), (["a gentleman", "elegant man"], True)], None),
    ("capitalize_words", ["text"], "capitalize the first letter of every word, lower-casing the rest",
     [(["hello wORLD"], "Hello World"), (["bat os"], "Bat Os")], None),
    ("count_words", ["text"], "count how often each word occurs, case-insensitively, ignoring "
     "punctuation; return a dict word -> count",
     [(["The cat and the hat."], {"the": 2, "cat": 1, "and": 1, "hat": 1})], None),
    ("most_common_letter", ["text"], "return the most frequent letter in the text, ignoring case and "
     "non-letters; ties go to the letter that comes first in the alphabet",
     [(["Hello World"], "l"), (["aabb"], "a")], None),
    ("caesar_cipher", ["text", "shift"], "shift each letter of the text by shift places in the alphabet, "
     "wrapping around and keeping case; other characters stay",
     [(["abc xyz", 3], "def abc"), (["Hello!", 1], "Ifmmp!")], None),
    ("snake_to_camel", ["name"], "turn a snake_case name into camelCase: 'hello_big_world' -> "
     "'helloBigWorld'",
     [(["hello_big_world"], "helloBigWorld"), (["single"], "single")], None),
    ("remove_duplicates", ["items"], "remove duplicates from a list, keeping the first occurrence of "
     "each, in order",
     [([[3, 1, 3, 2, 1]], [3, 1, 2]), ([[]], [])], None),
    ("is_valid_email", ["address"], "tell whether the text looks like an email address: one @, a "
     "non-empty name before it, and a domain after it with a dot that is not at either end",
     [(["a@b.co"], True), (["ab.co"], False), (["a@b"], False), (["@b.co"], False)], None),
    ("longest_word", ["text"], "return the longest word in a sentence (the first one if several "
     "have the same length)",
     [(["a quick brownish fox"], "brownish"), (["aa bb"], "aa")], None),
    # lists and numbers
    ("flatten_list", ["items"], "flatten a nested list of any depth into a flat list",
     [([[1, [2, [3, 4]], 5]], [1, 2, 3, 4, 5]), ([[[]]], [])], None),
    ("binary_search", ["items", "target"], "return the index of target in the sorted list items using "
     "binary search, or -1 if it is not there",
     [([[1, 3, 5, 7, 9], 7], 3), ([[1, 3, 5], 4], -1), ([[], 1], -1)], None),
    ("chunk_list", ["items", "size"], "split a list into consecutive chunks of the given size (the last "
     "may be shorter)",
     [([[1, 2, 3, 4, 5], 2], [[1, 2], [3, 4], [5]])], None),
    ("second_largest", ["numbers"], "return the second largest distinct number in a list, or None if "
     "there is none",
     [([[4, 1, 4, 3]], 3), ([[7]], None)], None),
    ("running_sum", ["numbers"], "return the list of running sums: [1, 2, 3] -> [1, 3, 6]",
     [([[1, 2, 3]], [1, 3, 6]), ([[]], [])], None),
    ("to_roman", ["number"], "convert an integer from 1 to 3999 to Roman numerals",
     [([4], "IV"), ([1994], "MCMXCIV"), ([3999], "MMMCMXCIX")], None),
    ("from_roman", ["numeral"], "convert a Roman numeral to an integer: 'MCMXCIV' -> 1994",
     [(["MCMXCIV"], 1994), (["IX"], 9)], None),
    ("is_prime", ["n"], "tell whether n is a prime number",
     [([2], True), ([15], False), ([97], True), ([1], False)], None),
    ("gcd", ["a", "b"], "return the greatest common divisor of two non-negative integers",
     [([12, 18], 6), ([7, 0], 7)], None),
    ("digits_sum", ["n"], "return the sum of the decimal digits of a non-negative integer",
     [([1234], 10), ([0], 0)], None),
    ("matrix_transpose", ["matrix"], "transpose a matrix given as a list of rows",
     [([[[1, 2, 3], [4, 5, 6]]], [[1, 4], [2, 5], [3, 6]])], None),
    ("median", ["numbers"], "return the median of a non-empty list of numbers (the mean of the two "
     "middle values when the count is even)",
     [([[3, 1, 2]], 2), ([[4, 1, 3, 2]], 2.5)], None),
    # dates and parsing
    ("day_of_week", ["date_text"], "return the weekday name (like 'Monday') of a date written "
     "YYYY-MM-DD",
     [(["2024-01-01"], "Monday"), (["2000-02-29"], "Tuesday")], None),
    ("days_between", ["start", "end"], "return the number of days from one YYYY-MM-DD date to another",
     [(["2024-01-01", "2024-03-01"], 60), (["2024-01-10", "2024-01-01"], -9)], None),
    ("parse_key_values", ["text"], "parse 'key=value' pairs separated by semicolons into a dict, "
     "stripping spaces around keys and values and skipping empty parts",
     [(["a=1; b = two;"], {"a": "1", "b": "two"}), ([""], {})], None),
    ("parse_duration", ["text"], "turn a duration like '1h30m' or '45s' or '2h5s' into seconds",
     [(["1h30m"], 5400), (["45s"], 45), (["2h5s"], 7205)], None),
    ("parse_csv_line", ["line"], "split a comma-separated line into fields, trimming spaces around "
     "each field",
     [(["a, b ,c"], ["a", "b", "c"]), (["one"], ["one"])], None),
    ("format_seconds", ["seconds"], "format a number of seconds as H:MM:SS",
     [([3725], "1:02:05"), ([59], "0:00:59")], None),
    ("is_leap_year", ["year"], "tell whether a year is a leap year in the Gregorian calendar",
     [([2000], True), ([1900], False), ([2024], True), ([2023], False)], None),
    ("word_frequencies_top", ["text", "n"], "return the n most frequent words (lower case) as a list, "
     "most frequent first, ties in alphabetical order",
     [(["b a b c a b", 2], ["b", "a"])], None),
    # objects that keep state between calls
    ("tally", ["item"], "keep a tally on this object of how many times each item was given; return "
     "the count for this item after adding it",
     [(["x"], 1), (["y"], 1), (["x"], 2)], STATEFUL),
    ("push_item", ["item"], "push the item onto a stack kept on this object (empty at first) and "
     "return the stack's size",
     [(["a"], 1), (["b"], 2)], STATEFUL),
    ("record_score", ["score"], "record a score on this object and return the average of all scores "
     "recorded so far",
     [([10], 10), ([20], 15), ([30], 20)], STATEFUL),
    ("next_ticket", [], "hand out ticket numbers: return 1 the first time, then 2, 3 and so on",
     [([], 1), ([], 2), ([], 3)], STATEFUL),
    ("deposit", ["amount"], "add the amount to the balance kept on this object (it starts at 0) and "
     "return the new balance",
     [([50], 50), ([25], 75)], STATEFUL),
    # methods that call their siblings (installed by the missions above)
    ("encode_then_decode", ["text"], "run-length encode the text with this object's run_length_encode "
     "method, then decode it with its run_length_decode method, and return the result",
     [(["aaabcc"], "aaabcc")], None),
    ("roman_round_trip", ["number"], "convert the number to Roman numerals with this object's to_roman "
     "method and back with its from_roman method; return the number you get",
     [([1987], 1987)], None),
    ("primes_up_to", ["n"], "return the list of primes up to and including n, using this object's "
     "is_prime method",
     [([20], [2, 3, 5, 7, 11, 13, 17, 19])], None),
]


# the missions whose methods a sibling mission calls
BUILDS_ON = {"encode_then_decode": ["run_length_encode", "run_length_decode"],
             "roman_round_trip": ["to_roman", "from_roman"], "primes_up_to": ["is_prime"]}


def needed(selectors: list[str]) -> list[tuple]:
    """The missions named (in MISSIONS' order), with those they build on; an unknown name
    is an error."""
    known = {m[0] for m in MISSIONS}
    unknown = [s for s in selectors if s not in known]
    if unknown:
        raise SystemExit(f"unknown mission(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    wanted = set(selectors) | {d for s in selectors for d in BUILDS_ON.get(s, [])}
    return [m for m in MISSIONS if m[0] in wanted]


def run_missions(conn, target: str = "genesis_obj", missions=MISSIONS, timeout_s: float = 600) -> list[dict]:
    records = []
    for selector, args, intent, checks, kind in missions:
        brief = {"selector": selector, "args": args, "intent": intent}
        examples = extract_examples(intent, len(args) or None)
        if examples:
            brief["examples"] = examples
        t0 = time.perf_counter()
        reply = conn.request({"command": "initiate_cognitive_cycle", "target_oid": target,
                              "mission_brief": brief}, timeout_s=timeout_s)
        seconds = time.perf_counter() - t0
        result = reply.get("result") or {}
        record = {"selector": selector, "seconds": seconds, "state": result.get("state"),
                  "reason": result.get("reason"), "phase": result.get("phase"),
                  "source": result.get("source"), "failures": [], "kind": kind}
        if result.get("state") == "COMPLETE":
            for call_args, expected in checks:
                for _ in range(1 if kind == STATEFUL else 2):
                    r = conn.request({"command": "send_message", "target_oid": target,
                                      "selector": selector, "args": call_args})
                    value = r.get("result", {}).get("value") if r.get("ok") else r.get("error")
                    ok = r.get("ok") and (expected(value) if callable(expected) else _same(value, expected))
                    if not ok:
                        record["failures"].append(f"{selector}{tuple(call_args)} -> {value!r}")
                        break
        record["passed"] = result.get("state") == "COMPLETE" and not record["failures"]
        records.append(record)
    return records


def _same(value, expected) -> bool:
    if isinstance(expected, float) or isinstance(value, float):
        return isinstance(value, (int, float)) and abs(value - expected) < 1e-9
    return value == expected


def summary(records: list[dict]) -> dict:
    return {"missions": len(records), "passed": sum(r["passed"] for r in records),
            "pass_rate": sum(r["passed"] for r in records) / len(records),
            "median_cycle_s": statistics.median(r["seconds"] for r in records)}
