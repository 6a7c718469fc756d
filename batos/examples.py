"""Examples: calls a method must answer so, and choosing among candidates by them.

An example is ``[args, expected]``.  They come from the Architect (the mission
brief, ``install_method``), from BRICK (DECOMPOSING proposes 3 or 4 with the research
queries), or from a method already installed (its examples run again when it is
replaced).  The kernel runs a candidate on every example's arguments in the
sandbox, in order, on one scratch copy of the target's slots, and hands back one
``Outcome`` per example; this module judges them (pure functions, no I/O).

Choosing (CodeT's dual agreement): candidates that give the same outputs on the
examples' inputs form a group; a group's score is its size times the number of
examples its outputs match.  Examples the Architect gave (or a replaced method
kept) must all pass; examples the model wrote may be wrong, so a group that
several candidates agree on and that matches most of them wins over one
candidate matching a model's mistaken expectation.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

# words that ask a method to keep something on its object between calls
_STATEFUL = re.compile(
    r"\b(keep|keeps|kept|remember|remembers|store|stores|stored|record|records|track|tracks|"
    r"tally|tallies|count(?:s|er)? (?:of|how many times)|so far|running total|on this object|this object.s (?!\w+ method)|accumulat\w*|history|"
    r"between calls|each call|every call|state|stack|queue|push|pop|add(?:s)? (?:it|them|an? \w+) to|"
    r"increment\w*|decrement\w*|reset\w*|balance|deposit|withdraw|register|log(?:s|ged)? |"
    r"first time|each time|next one|hand(?:s)? out|then \d)\b", re.I)


@dataclasses.dataclass
class Outcome:
    """One example's run: the value, or the error that stopped it."""
    args: list
    expected: Any
    actual: Any = None
    error: str | None = None
    changed: list[str] = dataclasses.field(default_factory=list)   # slots the call changed
    problems: list[str] = dataclasses.field(default_factory=list)  # e.g. state kept by a pure method

    @property
    def passed(self) -> bool:
        return self.error is None and not self.problems and same(self.actual, self.expected)

    def wire(self) -> dict:
        error = self.error if self.error is not None else ("; ".join(self.problems) or None)
        return {"args": self.args, "expected": self.expected, "actual": self.actual,
                "error": error, "passed": self.passed}

    def feedback(self, selector: str) -> str:
        call = f"{selector}({', '.join(_short(a) for a in self.args)})"
        if self.error is not None:
            return f"{call} should return {_short(self.expected)} but raised: {self.error[:300]}"
        if not same(self.actual, self.expected):
            text = (f"{call} should return {_short(self.expected)} but returned {_short(self.actual)}"
                    + first_difference(self.expected, self.actual))
        else:
            text = f"{call} returned {_short(self.actual)}"
        return "; ".join([text] + self.problems)


def first_difference(expected: Any, actual: Any) -> str:
    """Where two strings or lists first differ, in words (a small model does not see that
    'HelloBigWorld' is not 'helloBigWorld' until it is told where); else nothing."""
    if not (isinstance(expected, str) and isinstance(actual, str)) and not (
            isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple))):
        return ""
    for i, (e, a) in enumerate(zip(expected, actual)):
        if not same(a, e):
            near = ""
            if isinstance(expected, str) and i > 20:     # past what a short repr shows: the place
                near = f", in {expected[i - 10:i + 10]!r} against {actual[i - 10:i + 10]!r}"
            return f" (the first difference is at index {i}: expected {_short(e)}, got {_short(a)}{near})"
    what = "characters" if isinstance(expected, str) else "items"
    return f" (expected {len(expected)} {what}, got {len(actual)})" if len(expected) != len(actual) else ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:120] + "..."


def same(actual: Any, expected: Any) -> bool:
    """Equal as the wire sees them: tuples are lists, ints equal floats of the same value,
    floats within a relative 1e-6."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(actual, expected, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)):
        return len(actual) == len(expected) and all(same(a, e) for a, e in zip(actual, expected))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return set(map(str, actual)) == set(map(str, expected)) and all(
            same(actual[k], expected.get(k, expected.get(str(k)))) for k in actual)
    return actual == expected


def asks_for_state(selector: str, intent: str | None) -> bool:
    """Does the mission ask the method to keep something on its object?"""
    text = f"{selector.replace('_', ' ')} {intent or ''}"
    return bool(_STATEFUL.search(text))


def signature(outcomes: list[Outcome]) -> tuple:
    """What a candidate answered on the examples' inputs, hashable (for grouping)."""
    return tuple(repr(("error",)) if o.error is not None else repr((_norm(o.actual), bool(o.problems)))
                 for o in outcomes)


def _norm(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _norm(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, float):
        return round(value, 6)
    return value


@dataclasses.dataclass
class Choice:
    index: int            # the chosen candidate
    passed: int           # examples its outputs match
    agreeing: int         # candidates that answered exactly as it did
    accepted: bool        # good enough to install
    why: str


def choose(runs: list[list[Outcome]], trusted: int, consensus: bool = False) -> Choice | None:
    """The candidate to install among ``runs`` (one list of outcomes per candidate, the
    examples in the same order; the first ``trusted`` examples must pass), or None when
    there is no candidate.  CodeT: group by outputs, score = group size x matches.

    Raising is no answer, so candidates that raise on an example do not vouch for each
    other: such a group scores as one candidate, unless it matches more examples than
    any group that answers every input (then it is the nearer method, and a repair of
    its exception follows).  (Every exception has one signature, and the same wrong idea
    raises the same way: ``parse_duration``'s first method and the samples like it
    raised on ``'1h30m'``; agreeing, they outvoted three code completions that answered
    every input and matched as many examples, and were installed, in six of the last
    eight flywheel evaluations.)

    ``consensus`` (the state machine's ``consensus`` tunable): when no group matches an
    example, the largest group that answers is chosen, not the first candidate, and an
    input every candidate raises on is left out of the grouping (it tells no two apart).
    Without it, a cycle whose examples were all wrong installs its first method whatever
    the others agree on (``most_common_letter``: BRICK's four examples matched by none
    of nine candidates, one of them an integer for a text, the first method installed)."""
    if not runs:
        return None
    # the examples' inputs that tell candidates apart (with consensus: not one all raise on)
    told = [j for j in range(len(runs[0])) if not consensus or any(r[j].error is None for r in runs)]
    shown = [[outcomes[j] for j in told] for outcomes in runs]
    groups: dict[tuple, list[int]] = {}
    for i, outcomes in enumerate(shown):
        groups.setdefault(signature(outcomes), []).append(i)
    answering = max((sum(o.passed for o in runs[m[0]]) for m in groups.values()
                     if all(o.error is None for o in shown[m[0]])), default=-1)
    best, best_key = None, None
    for members in groups.values():
        i = members[0]
        outcomes = runs[i]
        total = len(outcomes)
        passed = sum(o.passed for o in outcomes)
        errors = sum(o.error is not None for o in shown[i])
        trusted_ok = all(o.passed for o in outcomes[:trusted])
        if passed == total:
            accepted, why = True, (f"all {total} examples pass" if total else "no examples to run")
        elif trusted_ok and errors == 0 and len(members) >= 2 and passed * 2 > total:
            accepted, why = True, (f"{len(members)} candidates agree on every output and match "
                                   f"{passed} of {total} examples (the others taken as mistaken)")
        else:
            accepted, why = False, f"{passed} of {total} examples pass"
        agree = len(members) if errors == 0 or passed > answering else 1
        key = (accepted, agree * passed, passed, agree if consensus else 0, -errors, -i)
        if best_key is None or key > best_key:
            best, best_key = Choice(i, passed, len(members), accepted, why), key
    return best
