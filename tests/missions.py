"""Small missions for real cognitive cycles, each with its own unit checks.

A mission is taught with ``initiate_cognitive_cycle`` (selector, argument names
and the Architect's words), then called through ``send_message`` with each
check's arguments.  ``run_missions`` returns one record per mission.
"""
from __future__ import annotations

import statistics
import time

# (selector, arg names, intent, [(args, expected or predicate)])
MISSIONS = [
    ("to_upper", ["text"], "return the text in upper case",
     [(["hello"], "HELLO"), (["Bat Os"], "BAT OS")]),
    ("word_count", ["text"], "count the words in a text (separated by whitespace)",
     [(["a b c"], 3), (["  one   two "], 2), ([""], 0)]),
    ("reverse_text", ["text"], "return the text reversed",
     [(["abc"], "cba"), ([""], "")]),
    ("factorial", ["n"], "return n factorial for a non-negative integer n",
     [([5], 120), ([0], 1), ([10], 3628800)]),
    ("is_palindrome", ["text"], "tell whether the text reads the same backwards (exact characters)",
     [(["level"], True), (["hello"], False)]),
    ("count_vowels", ["text"], "count the vowels a, e, i, o, u in the text, ignoring case",
     [(["banana"], 3), (["AEIOU xyz"], 5)]),
    ("fibonacci", ["n"], "return the n-th Fibonacci number, where fibonacci(0) is 0 and fibonacci(1) is 1",
     [([10], 55), ([1], 1), ([0], 0)]),
    ("celsius_to_fahrenheit", ["celsius"], "convert a temperature in Celsius to Fahrenheit",
     [([100], 212), ([0], 32)]),
    ("max_of_list", ["numbers"], "return the largest number in a list",
     [([[3, 9, 2]], 9), ([[-5, -1]], -1)]),
    ("greet_by_name", ["name"], "greet someone by name",
     [(["Architect"], lambda v: isinstance(v, str) and "Architect" in v)]),
    ("add_to_total", ["amount"],
     "add the amount to this object's running total (which starts at 0) and return the new total",
     [([5], 5), ([3], 8)]),
    ("remember_item", ["item"],
     "append the item to a list kept on this object (empty at first) and return how many items it holds",
     [(["a"], 1), (["b"], 2)]),
]


def run_missions(conn, target: str = "genesis_obj", missions=MISSIONS, timeout_s: float = 600) -> list[dict]:
    records = []
    for selector, args, intent, checks in missions:
        t0 = time.perf_counter()
        reply = conn.request({"command": "initiate_cognitive_cycle", "target_oid": target,
                              "mission_brief": {"selector": selector, "args": args, "intent": intent}},
                             timeout_s=timeout_s)
        seconds = time.perf_counter() - t0
        result = reply.get("result") or {}
        record = {"selector": selector, "seconds": seconds, "state": result.get("state"),
                  "reason": result.get("reason"), "source": result.get("source"), "failures": []}
        if result.get("state") == "COMPLETE":
            for call_args, expected in checks:
                r = conn.request({"command": "send_message", "target_oid": target,
                                  "selector": selector, "args": call_args})
                value = r.get("result", {}).get("value") if r.get("ok") else r.get("error")
                ok = r.get("ok") and (expected(value) if callable(expected) else value == expected)
                if not ok:
                    record["failures"].append(f"{selector}{tuple(call_args)} -> {value!r}")
        record["passed"] = result.get("state") == "COMPLETE" and not record["failures"]
        records.append(record)
    return records


def summary(records: list[dict]) -> dict:
    return {"missions": len(records), "passed": sum(r["passed"] for r in records),
            "pass_rate": sum(r["passed"] for r in records) / len(records),
            "median_cycle_s": statistics.median(r["seconds"] for r in records)}
