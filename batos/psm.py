"""The Prototypal State Machine: the seven states of a cognitive cycle.

IDLE -> DECOMPOSING -> DELEGATING -> SYNTHESIZING -> VALIDATING -> COMPLETE,
or FAILED from any state.  Each state is a prototype object in the image
(``psm_<state>_obj``): its successor, persona, prompt and token budget are
read, once, at the start of every cycle into a frozen ``Snapshot``.  The
behaviour of each state is the function of the same name below; it fills in
the ``StepRecord`` of its step (who was asked, with which model, the tokens and
times, the queries, what was retrieved, the findings) and returns the next
state.  A step's record is emitted when the step ends: it is the one source of
the progress events, of metacognition.jsonl's ``state`` lines and of the
cycle's result.

The cycle writes to the image only in COMPLETE, in one transaction that
installs the method (with the audit report VALIDATING made: a source is audited
once per attempt) and records the cycle; a FAILED cycle leaves no trace in the
image (its story is in metacognition.jsonl) and its result names the phase that
failed: generation, parsing, audit, install, cycle (stopped, timed out) or
internal (a bug).
"""
from __future__ import annotations

import ast
import collections
import dataclasses
import json
import logging
import re
import textwrap
import threading
import time
import traceback
import types
from typing import Any, Callable, Mapping, Optional

from persistent.mapping import PersistentMapping
from pydantic import BaseModel, Field, ValidationError

from batos import cem, guardian
from batos.examples import Outcome, asks_for_state, choose
from batos.genesis import PERSONA_PROTOTYPES, PURE_RULE, STATEFUL_RULE, state_oid
from batos.image import ConflictsExhausted, ObjectNotFound
from batos.knowledge import LESSON_SUFFIX
from batos.llm import Generation, GenerationError
from batos.protocol import STATES, MissionBrief
from batos.uvm import Method

log = logging.getLogger("batos.psm")
MAX_TRANSITIONS = 24


# one error class per phase of a cycle
class CycleFailure(Exception):
    phase = "cycle"


class ParsingError(CycleFailure):
    phase = "parsing"


class AuditError(CycleFailure):
    phase = "audit"


class InstallError(CycleFailure):
    phase = "install"


class ExamplesError(CycleFailure):
    phase = "examples"


class ProposedExample(BaseModel):
    args: list[Any] = Field(max_length=6)
    expected: Any = None


MAX_QUERIES = 3           # a plan's search queries, at most
MAX_PROPOSED = 4          # a plan's example calls, at most (the grammar and the check share it)


class ResearchPlan(BaseModel):
    """BRICK's plan: the search queries that DELEGATING runs against the memory, and
    example calls with the results the method must give (VALIDATING runs them).  A
    plan asks only for what the cycle lacks (``plan_schema``)."""
    queries: list[str] = Field(default_factory=list, max_length=MAX_QUERIES)
    examples: list[ProposedExample] = Field(default_factory=list, max_length=MAX_PROPOSED)


PLAN_SCHEMA = {
    "type": "object",
    "properties": {
        "queries": {"type": "array", "items": {"type": "string", "minLength": 2, "maxLength": 48},
                    "minItems": 1, "maxItems": MAX_QUERIES},
        "examples": {"type": "array", "minItems": 1, "maxItems": MAX_PROPOSED, "items": {
            "type": "object",
            # the value itself: an object here tempts the model to wrap it ({"result": ...})
            "properties": {"args": {"type": "array", "maxItems": 4},
                           "expected": {"anyOf": [{"type": "string"}, {"type": "number"},
                                                  {"type": "boolean"}, {"type": "null"},
                                                  {"type": "array"}]}},
            "required": ["args", "expected"]}},
    },
    "required": ["queries", "examples"],
}
CONTEXT_CHARS = 1500     # knowledge handed to SYNTHESIZING

ASK_QUERIES = "1 to 3 short search queries (a few words each) for facts that would help write the method below"
ASK_EXAMPLES = ("{count} of calls to {it}, one for each rule or edge case in the Architect's words: "
                "the arguments (a JSON list of values of the types the method takes; numbers, lists and "
                "booleans as JSON values, not in quotes) and the exact value it must return")
MAX_DEMONSTRATIONS = 3  # worked plans DECOMPOSING may show (``demonstrations``)
PLAN_EXAMPLES_COUNT = {1: "1 example", 2: "1 or 2 examples", 3: "2 or 3 examples", 4: "3 or 4 examples"}


def plan_schema(queries: bool, examples: int, n_args: Optional[int] = None) -> dict:
    """PLAN_SCHEMA with only the parts asked for (``examples``: at most that many example
    calls, 0: none; True: MAX_PROPOSED); with ``n_args``, every example's arguments are
    exactly that many (a plan for ``next_ticket()`` otherwise gave calls with one
    argument, which the method cannot take, and so no example at all)."""
    examples = MAX_PROPOSED if examples is True else int(examples)
    props = {k: v for k, v in PLAN_SCHEMA["properties"].items()
             if (k == "queries" and queries) or (k == "examples" and examples > 0)}
    if "examples" in props and (n_args is not None or examples < MAX_PROPOSED):
        ex = json.loads(json.dumps(props["examples"]))
        ex["maxItems"] = min(examples, MAX_PROPOSED)
        if n_args is not None:
            ex["items"]["properties"]["args"] = {"type": "array", "minItems": n_args, "maxItems": n_args, "items": {
                "anyOf": [{"type": t} for t in ("string", "number", "boolean", "null", "array", "object")]}}
        props["examples"] = ex
    return {"type": "object", "properties": props, "required": list(props)}


def plan_asks(queries: bool, examples: int) -> str:
    """What DECOMPOSING's instructions ask BRICK for (their ``{plan_asks}``);
    ``examples``: how many example calls (0: none; True: MAX_PROPOSED)."""
    examples = MAX_PROPOSED if examples is True else int(examples)
    count = PLAN_EXAMPLES_COUNT[min(examples, MAX_PROPOSED)] if examples > 0 else ""
    if queries and examples:
        return f"{ASK_QUERIES}, and {ASK_EXAMPLES.format(count=count, it='it')}"
    return ASK_QUERIES if queries else ASK_EXAMPLES.format(count=count, it="the method below")
SKILLS_SHOWN = 2         # similar installed methods shown as examples
# the state machine object's tunable slots (the self-tuning loop may change them):
# {slot -> (kind, lowest, highest)}; unset, a cycle uses the setting or constant
TUNABLES = {"candidates": (int, 1, 6), "context_chars": (int, 0, 4000), "skills_shown": (int, 0, 4),
            "repair_samples": (int, 0, 6), "code_samples": (int, 0, 6), "plan_examples": (int, 0, MAX_PROPOSED),
            "retries": (int, 0, 3), "consensus": (int, 0, 1)}
# with no example matched by any candidate, 1: the largest agreeing group is installed;
# 0: the first method (choose's ``consensus``).  The forty missions with 0: 37/40; with 1:
# 38/40 (most_common_letter: BRICK's four examples all wrong, six of nine candidates agreed
# on a right method; the first, installed with 0, returned the least frequent letter)
CONSENSUS = 1
# a repair of a method that fails examples asks for the bug in words before the code: the
# embedded model, shown its method and the failure, mostly rewrote the same method (0 of
# 15 lab repairs right); asked to say first which step is wrong, 3 of 15 were
EXPLAIN_FIRST = ("First say in one or two sentences which step is wrong and what it must do instead. "
                 "Then write the corrected method '{selector}' in one ```python block.")
# (the answer ends at the first closed code block holding a ``def``: a quoted line does not cut it)


# ------------------------------------------------------------------ the records

@dataclasses.dataclass(frozen=True)
class StateConf:
    """A state object's slots, as the cycle read them."""
    next: str
    persona: Optional[str]
    instructions: str
    max_tokens: Optional[int]
    max_tokens_setting: Optional[str]
    demonstrations: tuple = ()      # DECOMPOSING: worked plans shown first (``demonstrations``)


@dataclasses.dataclass(frozen=True)
class MethodView:
    selector: str
    owner: str
    signature: str
    doc: str
    source: str


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What a cycle reads from the image at its start, frozen: the target's persona,
    methods and slots, the states' configuration and the personas' system prompts."""
    persona: str
    methods: tuple[MethodView, ...]
    slots: Mapping[str, str]              # {slot name -> type name}
    states: Mapping[str, StateConf]       # {state -> its configuration}
    prompts: Mapping[str, str]            # {persona -> system prompt}
    replaced_examples: tuple = ()         # the examples of the method this cycle would replace
    tuning: Mapping[str, Any] = dataclasses.field(default_factory=dict)   # psm_obj tunables (TUNABLES)
    visible: frozenset = frozenset()      # every slot name the target sees (its own and its parents')


@dataclasses.dataclass
class Exchange:
    """One question to a persona's model and its answer."""
    persona: str
    model: str
    prompt_chars: int
    answer_chars: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    load_seconds: float = 0.0

    def fields(self) -> dict:
        return {"asked": self.persona, "model": self.model, "prompt_chars": self.prompt_chars,
                "answer_chars": self.answer_chars, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "llm_s": self.seconds,
                "load_s": self.load_seconds}


@dataclasses.dataclass
class StepRecord:
    """One state of one cycle, from its start to its end, with its own data."""
    state: str
    attempt: int
    started_at: float
    ended_at: float = 0.0
    next: Optional[str] = None           # the state it led to (None: the cycle ended)
    exchange: Optional[Exchange] = None  # the model's answer, for states that ask one
    data: dict = dataclasses.field(default_factory=dict)   # the state's own findings

    @property
    def duration_s(self) -> float:
        return round(self.ended_at - self.started_at, 4)


@dataclasses.dataclass
class CycleResult:
    """The outcome of a cycle, built from its records."""
    cycle_id: str
    state: str                          # "COMPLETE" or "FAILED"
    selector: str
    transitions: list[str]
    persona: str
    attempts: int
    duration_s: float
    source: Optional[str] = None
    reason: Optional[str] = None
    phase: Optional[str] = None   # FAILED: generation, parsing, audit, examples, install, cycle, internal
    examples: list[dict] = dataclasses.field(default_factory=list)   # the chosen candidate's outcomes
    candidates: int = 0
    cem: Optional[dict] = None          # the Composite Entropy Metric (batos/cem.py)

    def wire(self) -> dict:
        out = {"cycle_id": self.cycle_id, "state": self.state, "selector": self.selector,
               "transitions": self.transitions, "persona": self.persona, "attempts": self.attempts,
               "duration_s": self.duration_s, "examples": self.examples, "candidates": self.candidates}
        if self.cem is not None:
            out["cem"] = self.cem
        if self.source is not None:
            out["source"] = self.source
        if self.state == "FAILED":
            out["reason"], out["phase"] = self.reason, self.phase
        return out


@dataclasses.dataclass
class Candidate:
    """One method the model wrote, and what VALIDATING found of it."""
    answer: str
    source: Optional[str] = None
    report: Optional[guardian.AuditReport] = None
    findings: list[str] = dataclasses.field(default_factory=list)   # audit or parsing
    outcomes: list[Outcome] = dataclasses.field(default_factory=list)
    temperature: float = 0.0
    imported: list[str] = dataclasses.field(default_factory=list)   # imports (and self.) the kernel added
    repair: bool = False     # sampled from a repair's conversation, not from the first prompt
    code: bool = False       # written by code completion (CODE_SAMPLES), not from the chat prompt
    attempt: int = 1         # the attempt whose greedy answer this is (2: the first repair)

    @property
    def admitted(self) -> bool:
        return self.source is not None and self.report is not None and not self.findings

    @property
    def kind(self) -> str:
        """Where it came from: "first" (the first greedy answer), "repair" (a greedy repair),
        "chat sample", "sampled repair" or "code completion"."""
        if self.code:
            return "code completion"
        if self.repair:
            return "sampled repair"
        if self.temperature > 0:
            return "chat sample"
        return "first" if self.attempt <= 1 else "repair"


@dataclasses.dataclass
class CognitiveCycle:
    cycle_id: str
    target_oid: str
    mission: MissionBrief
    cancel: threading.Event
    started_at: float = dataclasses.field(default_factory=time.time)
    snapshot: Optional[Snapshot] = None
    steps: list[StepRecord] = dataclasses.field(default_factory=list)
    queries: list[str] = dataclasses.field(default_factory=list)
    plan_wants: tuple[bool, int] = (True, MAX_PROPOSED)   # DECOMPOSING asks for (queries, how many examples)
    relevant: Optional[list[dict]] = None  # memory chunks similar to the mission (None: not searched)
    context: str = ""
    skills: list[str] = dataclasses.field(default_factory=list)   # sources of similar methods
    answer: str = ""                      # the last raw answer of SYNTHESIZING
    artifact: Optional[str] = None        # the method's source
    findings: list[str] = dataclasses.field(default_factory=list)
    failed_phase: str = "audit"           # what the findings are about: "parsing" or "audit"
    report: Optional[guardian.AuditReport] = None   # VALIDATING's verdict on the artifact
    attempts: int = 0
    pure: bool = True                     # the mission keeps nothing on the object
    trusted: list[list] = dataclasses.field(default_factory=list)    # [[args, expected]] that must pass
    proposed: list[list] = dataclasses.field(default_factory=list)   # BRICK's, maybe wrong
    candidates: list[Candidate] = dataclasses.field(default_factory=list)   # validated so far
    pending: list[Candidate] = dataclasses.field(default_factory=list)      # written, not validated
    sample_only: bool = False             # SYNTHESIZING next samples candidates, repairs nothing
    sampled: bool = False                 # candidates were sampled (once per cycle)
    code_sampled: bool = False            # code completions were drawn (once per cycle)
    repair: Optional[Candidate] = None    # the candidate the next attempt repairs
    feedback: list[str] = dataclasses.field(default_factory=list)    # why it must be repaired
    outcomes: list[Outcome] = dataclasses.field(default_factory=list)       # the chosen one's

    @property
    def examples(self) -> list[list]:
        return self.trusted + [p for p in self.proposed if all(p[0] != t[0] for t in self.trusted)]

    @property
    def selector(self) -> str:
        return self.mission.selector

    @property
    def persona(self) -> str:
        return self.snapshot.persona if self.snapshot else ""

    @property
    def state(self) -> str:
        return self.steps[-1].state if self.steps else "IDLE"

    def result(self, reason: str | None = None, phase: str | None = None) -> CycleResult:
        ended = self.steps[-1].ended_at if self.steps else time.time()
        return CycleResult(self.cycle_id, self.state, self.selector, [r.state for r in self.steps],
                           self.persona, self.attempts, round(ended - self.started_at, 3),
                           source=self.artifact, reason=reason, phase=phase,
                           examples=[o.wire() for o in self.outcomes],
                           candidates=len(self.candidates))


# -------------------------------------------------------------- extracting code

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|\Z)", re.S | re.I)


def extract_method(text: str, selector: str) -> str:
    """The method's source from a model's answer: the code block's imports and
    the function (taken out of a class if the model wrote one, and renamed to
    the selector if the model named it otherwise)."""
    blocks = [b for b in _FENCE.findall(text) if b.strip()] or [text]
    errors = []
    for block in blocks:
        block = block.strip("\n")
        try:
            tree = ast.parse(block)
        except SyntaxError as exc:
            errors.append(f"line {exc.lineno}: {exc.msg}")
            continue
        funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            funcs += [n for n in cls.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
        if not funcs:
            errors.append("no function definition")
            continue
        func = next((f for f in funcs if f.name == selector), None) or next(
            (f for f in funcs if f.args.args and f.args.args[0].arg == "self"), funcs[0])
        imports = [ast.get_source_segment(block, n) for n in tree.body
                   if isinstance(n, (ast.Import, ast.ImportFrom))]
        start = func.decorator_list[0].lineno if func.decorator_list else func.lineno
        source = textwrap.dedent("\n".join(block.splitlines()[start - 1:func.end_lineno]))
        if func.name != selector:
            source = re.sub(rf"^(\s*)def\s+{re.escape(func.name)}\s*\(",
                            rf"\1def {selector}(", source, count=1, flags=re.M)
            source = re.sub(rf"\bself\.{re.escape(func.name)}\(", f"self.{selector}(", source)
        head = "\n".join(i for i in imports if i)
        return (head + "\n\n" if head else "") + source + "\n"
    raise ParsingError("the answer holds no usable Python function"
                       + (f" ({'; '.join(errors[:3])})" if errors else ""))


# ------------------------------------------------------------- the state machine

class PrototypalStateMachine:
    def __init__(self, image: Any, models: Any, settings: Any,
                 emit: Callable[[dict], None] = lambda event: None, memory: Any = None,
                 learned: Callable[[str, str, str, str], None] | None = None,
                 runner: Callable[[str, str, str, list], list[Outcome]] | None = None):
        self.image = image
        self.models = models
        self.settings = settings
        self.emit = emit
        self.memory = memory        # the FractalMemory, or None when it is disabled or loading
        self.learned = learned      # told of every installed method (the skill library)
        self.runner = runner        # runs a candidate on examples in the sandbox (None: not run)

    def use_memory(self, memory: Any) -> None:
        self.memory = memory

    # -- the run loop ---------------------------------------------------------------
    def run(self, cycle_id: str, target_oid: str, brief: MissionBrief | dict,
            cancel: threading.Event | None = None) -> CycleResult:
        mission = brief if isinstance(brief, MissionBrief) else MissionBrief.model_validate(brief)
        cycle = CognitiveCycle(cycle_id, target_oid, mission, cancel or threading.Event())
        timer = threading.Timer(self.settings.CYCLE_TIMEOUT_S, cycle.cancel.set)
        timer.daemon = True
        timer.start()
        try:
            return self._run(cycle)
        finally:
            timer.cancel()

    def _run(self, cycle: CognitiveCycle) -> CycleResult:
        try:
            cycle.snapshot = self._snapshot(cycle)
        except (ObjectNotFound, ConflictsExhausted, CycleFailure) as exc:
            return self._fail(cycle, str(exc), "cycle")
        cycle.pure = not asks_for_state(cycle.selector, cycle.mission.intent)
        cycle.trusted = [list(x) for x in cycle.mission.examples]
        cycle.trusted += [[a, e] for a, e in cycle.snapshot.replaced_examples
                          if all(a != t[0] for t in cycle.trusted)]
        state = "IDLE"
        for _ in range(MAX_TRANSITIONS):
            step = StepRecord(state, cycle.attempts, time.time())
            try:
                if cycle.cancel.is_set():
                    raise CycleFailure(f"the cycle was stopped (time limit "
                                       f"{self.settings.CYCLE_TIMEOUT_S:g}s or shutdown)")
                successor = PROCESSES[state](self, cycle, step)
            except GenerationError as exc:
                return self._fail(cycle, f"{state}: {exc}", "generation", step)
            except CycleFailure as exc:
                return self._fail(cycle, f"{state}: {exc}", exc.phase, step)
            except Exception as exc:  # a bug must not crash the kernel: the cycle fails
                log.error("psm: %s failed in %s:\n%s", cycle.cycle_id, state, traceback.format_exc())
                return self._fail(cycle, f"{state}: internal error: {type(exc).__name__}: {exc}",
                                  "internal", step)
            if successor == "FAILED":    # a state object rewired to fail
                return self._fail(cycle, f"{state} leads to FAILED", "cycle", step)
            self._end(cycle, step, successor)
            if successor is None:
                return self._finish(cycle)
            state = successor
        return self._fail(cycle, f"the cycle exceeded {MAX_TRANSITIONS} transitions", "cycle")

    def _end(self, cycle: CognitiveCycle, step: StepRecord, successor: str | None) -> None:
        """Close a step and emit its record (a ``state`` event)."""
        step.ended_at, step.next = time.time(), successor
        cycle.steps.append(step)
        event = {"event": "state", "cycle_id": cycle.cycle_id, "state": step.state,
                 "target": cycle.target_oid, "selector": cycle.selector, "persona": cycle.persona,
                 "ts": step.ended_at, "elapsed_s": round(step.ended_at - cycle.started_at, 4),
                 "duration_s": step.duration_s, "next": successor, "attempt": step.attempt}
        if step.exchange is not None:
            event.update(step.exchange.fields())
        event.update(step.data)
        self.emit(event)

    def _cem(self, cycle: CognitiveCycle, complete: bool) -> Optional[dict]:
        """The cycle's Composite Entropy Metric (batos/cem.py); None if it cannot be had."""
        try:
            embed = self.memory.embedder.encode if self.memory is not None else None
            library: list[str] = []
            if cycle.artifact:
                if self.memory is not None:
                    with self.image.reading() as s:
                        library = [h["text"] for h in self.memory.search(s.root, cycle.artifact, 3, kind="method")]
                elif cycle.snapshot is not None:
                    library = [m.source for m in cycle.snapshot.methods if m.selector != cycle.selector]
            outcomes = cycle.outcomes
            tuning = cycle.snapshot.tuning if cycle.snapshot is not None else {}
            return cem.score(complete=complete, mission=_mission_text(cycle), method=cycle.artifact,
                             pass_rate=(sum(o.passed for o in outcomes) / len(outcomes)) if outcomes else None,
                             library=library, candidates=[c.source for c in cycle.candidates if c.source],
                             queries=cycle.queries, weights=tuning.get("cem_weights"), embed=embed)
        except Exception as exc:      # a score must never change a cycle's outcome
            log.warning("psm: no CEM for cycle %s: %s: %s", cycle.cycle_id, type(exc).__name__, exc)
            return None

    def _finish(self, cycle: CognitiveCycle) -> CycleResult:
        result = cycle.result()
        result.cem = self._cem(cycle, True)
        self.emit({"event": "cycle_end", "cycle_id": cycle.cycle_id, "state": result.state, "cem": result.cem,
                   "target": cycle.target_oid, "selector": cycle.selector, "persona": cycle.persona,
                   "ts": time.time(), "duration_s": result.duration_s, "artifact": cycle.artifact,
                   "attempts": cycle.attempts, "reason": result.reason, "phase": result.phase,
                   **_end_facts(cycle),
                   "steps": [{"state": r.state, "duration_s": r.duration_s} for r in cycle.steps]})
        return result

    def _fail(self, cycle: CognitiveCycle, reason: str, phase: str,
              step: StepRecord | None = None) -> CycleResult:
        """Enter FAILED: nothing of the cycle is in the image; the log keeps its story."""
        if step is not None:   # the step that failed ends here, with what it had found
            step.data.setdefault("error", reason)
            self._end(cycle, step, "FAILED")
        failed = StepRecord("FAILED", cycle.attempts, time.time(), data={"reason": reason, "phase": phase})
        self._end(cycle, failed, None)
        result = cycle.result(reason, phase)
        result.cem = self._cem(cycle, False)
        event = {"event": "cycle_end", "cycle_id": cycle.cycle_id, "state": "FAILED", "cem": result.cem,
                 "target": cycle.target_oid, "selector": cycle.selector, "persona": cycle.persona,
                 "ts": time.time(), "duration_s": result.duration_s, "reason": reason, "phase": phase,
                 "attempts": cycle.attempts, "artifact": cycle.artifact, **_end_facts(cycle),
                 "steps": [{"state": r.state, "duration_s": r.duration_s} for r in cycle.steps]}
        if isinstance(cycle.mission, MissionBrief) and cycle.mission.examples:
            # the Architect's examples are a yardstick even for a mission no cycle has
            # solved yet: the self-tuning loop practises on it (batos/autotelic.py)
            event["mission"] = cycle.mission.model_dump(mode="json")
        self.emit(event)
        return result

    def _next(self, cycle: CognitiveCycle, state: str) -> str:
        successor = cycle.snapshot.states[state].next
        if successor not in STATES:
            raise CycleFailure(f"the state {state}'s successor {successor!r} is not a state")
        return successor

    # -- reading what the cycle needs ---------------------------------------------------
    def _snapshot(self, cycle: CognitiveCycle) -> Snapshot:
        """Plain, frozen copies of the target, the personas and the states, read at the start."""
        with self.image.reading() as s:
            target = s.get(cycle.target_oid)
            found = target._find_slot("persona")
            persona = found[1] if found and found[1] in PERSONA_PROTOTYPES \
                else self.settings.DEFAULT_PERSONA_MODEL
            methods = tuple(MethodView(sel, owner._label(), m.signature, m.doc, m.source)
                            for sel, owner, m in target._methods())
            slots = {k: type(v).__name__ for k, v in target._slots.items()
                     if k not in ("parents", "name", "doc") and not isinstance(v, Method)}
            objects = s.root["objects"]
            states = {}
            for state in STATES:
                obj = objects.get(state_oid(state))
                if obj is None:
                    raise CycleFailure(f"the state object {state_oid(state)} is missing")
                get = obj._slots.get
                states[state] = StateConf(str(get("next") or ""), get("persona"),
                                          str(get("instructions") or ""), get("max_tokens"),
                                          get("max_tokens_setting"),
                                          tuple(demonstrations(get("demonstrations"))))
            prompts = {p: str(objects[oid]._slots.get("system_prompt", ""))
                       for p, (oid, _) in PERSONA_PROTOTYPES.items() if oid in objects}
            replaced = target._slots.get(cycle.selector)
            replaced_examples = tuple((list(a), e) for a, e in getattr(replaced, "examples", None) or ()) \
                if isinstance(replaced, Method) else ()
            machine = objects.get("psm_obj")
            tuning: dict[str, Any] = tunables(machine)
            if machine is not None:
                weights = machine._slots.get("cem_weights")
                if weights is not None:
                    tuning["cem_weights"] = dict(weights)
            visible = frozenset(k for owner in target._delegation_chain() for k in owner._slots)
        return Snapshot(persona, methods, types.MappingProxyType(slots), types.MappingProxyType(states),
                        types.MappingProxyType(prompts), replaced_examples, types.MappingProxyType(tuning),
                        visible)

    def _ask(self, cycle: CognitiveCycle, step: StepRecord, persona: str,
             messages: list[dict], schema: dict | None = None, **sampling: Any) -> Generation:
        """One model call for this step (``sampling``: ``temperature`` and ``seed`` for a
        sampled candidate); a step with several calls reports their sums."""
        conf = cycle.snapshot.states[step.state]
        max_tokens = token_budget(conf.max_tokens, conf.max_tokens_setting, self.settings)
        gen = self.models.complete(persona, messages, int(max_tokens), grammar=schema, cancel=cycle.cancel,
                                   stop_after_code=schema is None, **sampling)
        self._count(cycle, step, persona, gen, sum(len(m["content"]) for m in messages))
        return gen

    def _count(self, cycle: CognitiveCycle, step: StepRecord, persona: str, gen: Generation,
               prompt_chars: int) -> None:
        """Add one model call to the step's exchange (a step with several reports their sums)."""
        x = Exchange(persona, gen.model, prompt_chars,
                     len(gen.text), gen.prompt_tokens, gen.completion_tokens,
                     round(gen.seconds, 3), round(gen.load_seconds, 3))
        if step.exchange is not None:    # a second call in the same step: add it up
            p = step.exchange
            x = Exchange(persona, gen.model, p.prompt_chars + x.prompt_chars, p.answer_chars + x.answer_chars,
                         p.prompt_tokens + x.prompt_tokens, p.completion_tokens + x.completion_tokens,
                         round(p.seconds + x.seconds, 3), round(p.load_seconds + x.load_seconds, 3))
        step.exchange = x
        if cycle.cancel.is_set():
            raise CycleFailure("the cycle was stopped while the model was answering")

    def _fields(self, cycle: CognitiveCycle) -> dict:
        m = cycle.mission
        args = list(m.args) + list(m.kwargs)
        example = m.example_call or f"{cycle.selector}({', '.join(args)})"
        related = related_methods(cycle)
        methods = ", ".join(x.signature for x in related) or (
            "none related to this task" if cycle.snapshot.methods else "none")
        slots = ", ".join(f"{k} ({v})" for k, v in related_slots(cycle).items()) or \
            "none this method needs (keep its data in a new attribute named for what it holds)"
        if m.args or m.kwargs:
            hint = (f"{len(m.args)} positional argument(s)" if m.args else "no positional arguments")
            if m.kwargs:
                hint += f" and the keyword argument(s) {', '.join(m.kwargs)}"
        else:
            hint = "no arguments besides self"
        shown = cycle.trusted[:4]    # BRICK's own examples may be wrong: they rank, they do not instruct
        examples_line = ("Examples it must satisfy: " + "; ".join(
            f"{cycle.selector}({', '.join(repr(a) for a in args)}) == {expected!r}" for args, expected in shown)
            + "\n") if shown else ""
        return {"target": cycle.target_oid, "selector": cycle.selector, "example_call": example,
                "intent_line": f"The Architect's words: {m.intent}\n" if m.intent else "",
                "examples_line": examples_line,
                "state_rule": PURE_RULE if cycle.pure else STATEFUL_RULE,
                "methods": methods, "slots": slots if not cycle.pure else "(this method keeps none)",
                "params_hint": hint,
                "allowed": ", ".join(sorted(guardian.ALLOWED_MODULES)),
                "context": cycle.context or "(none)",
                "skills": "\n\n".join(cycle.skills) or "(none)",
                "knowledge_block": f"Relevant knowledge:\n{cycle.context}\n\n" if cycle.context else "",
                "skills_block": ("Similar methods already installed:\n" + "\n\n".join(cycle.skills) + "\n\n"
                                 if cycle.skills else ""),
                "plan_asks": plan_asks(*cycle.plan_wants)}

    def _system(self, cycle: CognitiveCycle, persona: str) -> dict:
        return {"role": "system", "content": cycle.snapshot.prompts.get(persona) or
                f"You are {persona}, a persona of BAT OS."}


def _end_facts(cycle: CognitiveCycle) -> dict:
    """What ``cycle_end`` says of the mission besides its story: the Architect's words,
    the model that wrote the method, and the examples the chosen candidate passed."""
    models = [r.exchange.model for r in cycle.steps if r.exchange is not None and r.state == "SYNTHESIZING"]
    intent = cycle.mission.intent if isinstance(cycle.mission, MissionBrief) else None
    return {"intent": intent, "model": models[-1] if models else None,
            "examples_passed": sum(o.passed for o in cycle.outcomes), "examples_run": len(cycle.outcomes)}


def tunables(machine: Any) -> dict:
    """The state machine object's tunable slots (TUNABLES) that hold a value in range."""
    out: dict[str, Any] = {}
    for name, (kind, low, high) in TUNABLES.items():
        value = machine._slots.get(name) if machine is not None else None
        if isinstance(value, kind) and low <= value <= high:
            out[name] = value
    return out


def token_budget(max_tokens: Optional[int], setting: Optional[str], settings: Any) -> int:
    """A state's token budget: its own ``max_tokens`` slot, else the setting it names."""
    return int(max_tokens or getattr(settings, setting or "METHOD_MAX_TOKENS"))


# ----------------------------------------------------------------- the states

def related_methods(cycle: CognitiveCycle) -> list:
    """The target's methods a mission's prompts show: those its words (or its selector)
    name, and the method it replaces.  Every method, listed, grew each prompt by a
    hundred tokens or more on an object with dozens (about 1.5 s a call here) and
    invited calls to unrelated ones; a method the Architect's words name (``using this
    object's is_prime method``) is shown."""
    text = f"{_mission_text(cycle)} {cycle.mission.example_call or ''}".lower()
    return [m for m in cycle.snapshot.methods
            if m.selector == cycle.selector or re.search(rf"(?<![a-z0-9_]){re.escape(m.selector.lower())}"
                                                          rf"(?![a-z0-9_])", text)]


def related_slots(cycle: CognitiveCycle) -> dict:
    """The target's data slots a mission may use: those its words (or its selector)
    name, those of the method it replaces, and those of a method its words name.  The
    rest belong to other methods: shown, a small model reuses them (a new
    ``record_score`` kept its scores in ``tally``'s dict), so they are not."""
    text = _mission_text(cycle).lower()
    words = set(re.findall(r"[a-z0-9]+", text))
    named = {m.selector for m in cycle.snapshot.methods
             if m.selector == cycle.selector or m.selector.lower() in text}
    used: set[str] = set()
    for m in cycle.snapshot.methods:
        if m.selector in named:
            used |= set(re.findall(r"self\.([A-Za-z][A-Za-z0-9_]*)", m.source))
    out = {}
    for name, kind in cycle.snapshot.slots.items():
        parts = [p for p in name.lower().split("_") if p]
        if name in used or name.lower() in text or (parts and all(p in words for p in parts)):
            out[name] = kind
    return out


def idle(psm: PrototypalStateMachine, cycle: CognitiveCycle, step: StepRecord) -> str:
    return psm._next(cycle, "IDLE")


def decomposing(psm: PrototypalStateMachine, cycle: CognitiveCycle, step: StepRecord) -> str:
    """BRICK's plan, asking only for what the cycle lacks: research queries when the
    memory holds something similar to the mission, examples when nobody gave any.
    Lacking neither, no model call."""
    conf = cycle.snapshot.states["DECOMPOSING"]
    persona = conf.persona or "BRICK"
    if psm.memory is not None:
        cycle.relevant = _similar_chunks(psm, cycle, None)
    want_queries = psm.memory is None or bool(cycle.relevant)
    # how many example calls BRICK writes (PLAN_EXAMPLES, or the tunable): each costs
    # about 12 tokens of the plan, and a wrong one sends a right first method to be
    # sampled and repaired; 0: none (only the Architect's own examples are run)
    configured = cycle.snapshot.tuning.get("plan_examples", psm.settings.PLAN_EXAMPLES)
    want_examples = 0 if cycle.trusted else configured
    cycle.plan_wants = (want_queries, want_examples)
    step.data["plan_asked"] = [w for w, on in (("queries", want_queries), ("examples", want_examples)) if on]
    if not (want_queries or want_examples):
        step.data["skipped"] = "the memory holds nothing similar and the examples are given"
        return psm._next(cycle, "DECOMPOSING")
    prompt = conf.instructions.format(**psm._fields(cycle))
    shown = list(conf.demonstrations) if want_examples else []
    turns = [t for demo in shown for t in demo_turns(conf.instructions, demo, want_examples)]
    if shown:
        step.data["demonstrations"] = [d["call"] for d in shown]
    gen = psm._ask(cycle, step, persona, [psm._system(cycle, persona), *turns, {"role": "user", "content": prompt}],
                   plan_schema(want_queries, want_examples, len(cycle.mission.args)))
    try:
        plan = ResearchPlan.model_validate(load_plan(gen.text))
        cycle.queries = list(dict.fromkeys(q.strip() for q in plan.queries if q.strip()))
        n_params = len(cycle.mission.args)
        # only calls the mission's signature can take, and no more than were asked for (a
        # backend without grammars only reads the schema in the prompt)
        for ex in plan.examples[:configured]:
            args = [typed(a) for a in ex.args]
            # a stateful method's calls repeat (next_ticket() -> 1, then 2): only a pure
            # one's are deduplicated
            if len(args) == n_params and (not cycle.pure or all(args != p[0] for p in cycle.proposed)):
                cycle.proposed.append([args, typed(ex.expected)])
    except (json.JSONDecodeError, ValidationError) as exc:
        # the queries only guide retrieval; without them DELEGATING searches for the mission
        step.data["plan_error"] = f"BRICK's plan was not usable JSON ({type(exc).__name__})"
    step.data["queries"] = cycle.queries
    step.data["examples"] = cycle.proposed
    return psm._next(cycle, "DECOMPOSING")


def demonstrations(value: Any) -> list[dict]:
    """The worked plans a DECOMPOSING state object keeps, those well formed (anything
    else in the slot is ignored): its ``demonstrations`` slot, set by the self-tuning
    loop's ``demonstrations`` proposal, is a list of ``{"call", "intent", "examples",
    "target"}``."""
    out = []
    for d in value if isinstance(value, (list, tuple)) else ():
        try:
            call, intent, examples = str(d["call"]), str(d.get("intent") or ""), list(d["examples"])
            target = str(d.get("target") or "genesis_obj")
            examples = [[list(a), e] for a, e in examples][:MAX_PROPOSED]
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        if call and examples:
            out.append({"call": call, "intent": intent, "examples": examples, "target": target})
    return out[:MAX_DEMONSTRATIONS]


def demo_turns(instructions: str, demo: dict, examples: int) -> list[dict]:
    """One worked plan as two chat turns before the mission's own: the instructions
    filled in for an earlier verified mission, asking for examples only, and the plan
    its verified method satisfied (its kept examples), written as BRICK's grammar
    writes one."""
    fields = {"target": demo["target"], "selector": demo["call"].split("(")[0], "example_call": demo["call"],
              "intent_line": f"The Architect's words: {demo['intent']}\n" if demo["intent"] else "",
              "methods": "none", "plan_asks": plan_asks(False, examples)}
    try:
        asked = instructions.format_map(collections.defaultdict(str, fields))
    except (ValueError, IndexError, KeyError, AttributeError):    # a rewritten instruction's stray braces
        asked = plan_asks(False, examples) + "\n" + demo["call"]
    answer = {"examples": [{"args": args, "expected": expected} for args, expected in demo["examples"][:examples]]}
    return [{"role": "user", "content": asked}, {"role": "assistant", "content": json.dumps(answer)}]


def load_plan(text: str) -> Any:
    """BRICK's plan from its JSON; an answer cut off at the token limit keeps the
    examples it finished (``{"examples": [{...}, {...}, {"ar`` gives the first two)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    ends = [i for i, c in enumerate(text) if c == "}"]
    for i in reversed(ends[-24:]):
        for closing in ("]}", "}", "]}}", "}]}"):
            try:
                return json.loads(text[:i + 1] + closing)
            except json.JSONDecodeError:
                continue
    return json.loads(text)     # raises the original error


_LITERAL = re.compile(r"-?\d+(\.\d+)?|\[.*\]|\{.*\}|true|false|null|True|False", re.S)


def typed(value: Any) -> Any:
    """A value BRICK wrote as the JSON text of a number, list, object or boolean
    ("2020", "[1, 2, 3]") as that value: a small model quotes them far more often than
    it means a string of digits, and a method given "2020" for a year fails its
    examples for the wrong reason."""
    if isinstance(value, str) and _LITERAL.fullmatch(value.strip()):
        try:
            return json.loads(value.strip())
        except json.JSONDecodeError:
            pass
        try:        # Python's spelling: "['a', 'b']", "{'k': 1}", "True"
            literal = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return value
        try:        # only what JSON could carry: no tuples, sets, or keys that are not text
            plain = json.loads(json.dumps(literal)) == literal and not isinstance(literal, str)
        except (TypeError, ValueError):
            plain = False
        return literal if plain else value
    return value


def _mission_text(cycle: CognitiveCycle) -> str:
    return " ".join(x for x in (cycle.selector.replace("_", " "), cycle.mission.intent or "") if x)




def is_lesson(hit: dict) -> bool:
    """Is a memory hit (any chunk of it: a long record is split) part of a failed cycle's
    record?  Told by its source, set when the record was stored (``Knowledge.record_cycle``)."""
    return hit.get("kind") == "cycle" and str(hit.get("source", "")).endswith(LESSON_SUFFIX)


def _similar_chunks(psm: PrototypalStateMachine, cycle: CognitiveCycle,
                    queries: Optional[list[str]]) -> list[dict]:
    """Knowledge chunks (not methods) found by ``queries`` (default: the mission's own
    words), each with its cosine similarity to the mission, best first; only those at
    least ``CONTEXT_MIN_COSINE`` similar.  A mission that keeps nothing is never shown
    how to keep things."""
    k = psm.settings.MEMORY_SEARCH_K
    mission = _mission_text(cycle)
    found: dict[int, dict] = {}
    with psm.image.reading() as s:
        for query in queries or [mission]:
            for h in psm.memory.search(s.root, query, k):
                if h["kind"] == "method" or (cycle.pure and "_p_changed" in h["text"]):
                    continue
                # a cycle's record is a lesson only when the cycle failed (what went wrong);
                # a completed one's timings say nothing about the method to write (its
                # method is in the skill library)
                if h["kind"] == "cycle" and not is_lesson(h):
                    continue
                found.setdefault(h["id"], h)
    hits = list(found.values())
    if not hits:
        return []
    vectors = psm.memory.embedder.encode([mission] + [h["text"] for h in hits])
    for h, v in zip(hits, vectors[1:]):
        h["similarity"] = round(float(vectors[0] @ v), 3)
    hits.sort(key=lambda h: -h["similarity"])
    return [h for h in hits if h["similarity"] >= psm.settings.CONTEXT_MIN_COSINE]


def delegating(psm: PrototypalStateMachine, cycle: CognitiveCycle, step: StepRecord) -> str:
    """Run BRICK's queries against the Fractal Memory (or take the chunks DECOMPOSING
    found for the mission); keep those similar enough to the mission, and the most
    similar installed methods.  Without a memory, the target's related methods."""
    if psm.memory is None:
        return _delegating_without_memory(psm, cycle, step)
    hits = _similar_chunks(psm, cycle, cycle.queries) if cycle.queries else (cycle.relevant or [])
    parts: list[str] = []
    sources: list[str] = []
    similarities: list[float] = []
    for h in hits:
        if sum(len(p) for p in parts) + len(h["text"]) > cycle.snapshot.tuning.get("context_chars", CONTEXT_CHARS):
            continue
        parts.append(h["text"])
        sources.append(h["source"])
        similarities.append(h["similarity"])
    with psm.image.reading() as s:
        found = psm.memory.search(s.root, _mission_text(cycle), SKILLS_SHOWN * 3, kind="method")
    # a skill only when it is really similar, and never one that keeps state for a mission
    # that keeps nothing (its pattern would be copied)
    own = f"method:{cycle.target_oid}.{cycle.selector}"    # the method this cycle would replace
    found = [h for h in found if not (cycle.pure and "_p_changed" in h["text"]) and h["source"] != own]
    if found:   # the similarity of each to the mission itself (fused search ranks are not one)
        vectors = psm.memory.embedder.encode([_mission_text(cycle)] + [h["text"] for h in found])
        for h, v in zip(found, vectors[1:]):
            h["similarity"] = float(vectors[0] @ v)
    shown = cycle.snapshot.tuning.get("skills_shown", SKILLS_SHOWN)
    skills = [h for h in found if h["similarity"] >= psm.settings.SKILL_MIN_COSINE][:shown]
    cycle.context = "\n\n".join(parts)
    cycle.skills = [h["text"].split("\n", 1)[1] if "\n" in h["text"] else h["text"] for h in skills]
    step.data.update(queries=cycle.queries, retrieved=len(hits), context_items=len(parts),
                     context_chars=len(cycle.context), sources=sources,
                     similarities=similarities,
                     skills=[h["source"] for h in skills])
    return psm._next(cycle, "DELEGATING")


def _delegating_without_memory(psm: PrototypalStateMachine, cycle: CognitiveCycle,
                               step: StepRecord) -> str:
    words = set(re.findall(r"[a-z]+", " ".join([_mission_text(cycle), *cycle.queries]).lower()))
    scored = []
    for m in cycle.snapshot.methods:
        if (cycle.pure and "_p_changed" in m.source) or m.selector == cycle.selector:
            continue
        text = f"{m.selector.replace('_', ' ')} {m.doc}".lower()
        scored.append((len(words & set(re.findall(r"[a-z]+", text))), m))
    scored.sort(key=lambda x: -x[0])
    cycle.skills = [m.source.strip() for score, m in scored[:SKILLS_SHOWN] if score > 0]
    cycle.context = ""
    step.data.update(queries=cycle.queries, retrieved=0, context_chars=0, skills=len(cycle.skills))
    return psm._next(cycle, "DELEGATING")


def _candidate(text: str, selector: str, finish_reason: str, temperature: float = 0.0) -> Candidate:
    cand = Candidate(answer=text, temperature=temperature)
    try:
        cand.source = extract_method(text, selector)
    except ParsingError as exc:
        cand.findings = [str(exc) + (" (the answer was cut off at the token limit)"
                                     if finish_reason == "length" else "")]
    return cand


def synthesizing(psm: PrototypalStateMachine, cycle: CognitiveCycle, step: StepRecord) -> str:
    """Write a candidate (a repair of the last one when it was refused or failed examples);
    once a candidate has failed its examples, also sample fresh ones to compare (CodeT)."""
    conf = cycle.snapshot.states["SYNTHESIZING"]
    persona = conf.persona
    if persona in (None, "", "target"):
        persona = cycle.persona
    prompt = conf.instructions.format(**psm._fields(cycle))
    first = [psm._system(cycle, persona), {"role": "user", "content": prompt}]
    if cycle.sample_only:     # the first candidate missed an example: fresh samples to compare
        cycle.sample_only = False
        step.attempt = cycle.attempts
        cycle.pending = _samples(psm, cycle, step, persona, first)
        step.data.update(sampled=len(cycle.pending), candidates_written=len(cycle.pending))
        return psm._next(cycle, "SYNTHESIZING")
    cycle.attempts += 1
    step.attempt = cycle.attempts
    messages = list(first)
    failed_examples = cycle.repair is not None and cycle.repair.admitted
    if cycle.repair is not None and cycle.feedback:
        what = ("fails these examples" if failed_examples else "was refused")
        # the method as it was checked (with the kernel's own fixes: the findings' line
        # numbers are its lines), else the raw answer that could not be parsed
        shown = f"```python\n{cycle.repair.source.rstrip()}\n```" if cycle.repair.source else cycle.repair.answer
        ask = (EXPLAIN_FIRST.format(selector=cycle.selector) if failed_examples else
               f"Write the corrected method '{cycle.selector}'. Answer with only the code in one ```python block.")
        messages += [{"role": "assistant", "content": shown},
                     {"role": "user", "content":
                      f"That method {what}:\n- " + "\n- ".join(cycle.feedback)
                      + (f"\n{PURE_RULE[2:]}" if cycle.pure else "") + "\n" + ask}]
    gen = psm._ask(cycle, step, persona, messages)
    cycle.answer = gen.text
    cycle.pending = [_candidate(gen.text, cycle.selector, gen.finish_reason)]
    cycle.pending[0].attempt = cycle.attempts
    if failed_examples and cycle.examples:
        # the greedy repair mostly repeats the method it was shown: sampled repairs of the
        # same conversation (its prefix just decoded) join the candidates, and agreement chooses
        n = cycle.snapshot.tuning.get("repair_samples", psm.settings.REPAIR_SAMPLES)
        for k in range(n):
            sampled = psm._ask(cycle, step, persona, messages, temperature=psm.settings.CANDIDATE_TEMPERATURE,
                               seed=psm.settings.LLM_SEED + 1000 * cycle.attempts + 100 + k)
            cand = _candidate(sampled.text, cycle.selector, sampled.finish_reason, psm.settings.CANDIDATE_TEMPERATURE)
            cand.repair = True
            cycle.pending.append(cand)
        if n:
            step.data["repairs_sampled"] = n
        cycle.pending += _samples(psm, cycle, step, persona, first)
    head = cycle.pending[0]
    if head.source is None:
        step.data["parse_error"] = head.findings[0]
    step.data.update(finish_reason=gen.finish_reason, candidates_written=len(cycle.pending))
    return psm._next(cycle, "SYNTHESIZING")


def _samples(psm: PrototypalStateMachine, cycle: CognitiveCycle, step: StepRecord, persona: str,
             first: list[dict]) -> list[Candidate]:
    """Candidates sampled from the first prompt (its prefix is cached: each costs only its
    answer's tokens), up to the ``candidates`` setting with those sampled before."""
    wanted = cycle.snapshot.tuning.get("candidates", psm.settings.CYCLE_CANDIDATES)
    extra = wanted - 1 - sum(c.temperature > 0 and not (c.repair or c.code) for c in cycle.candidates)
    out = []
    for k in range(max(0, extra)):
        sampled = psm._ask(cycle, step, persona, first, temperature=psm.settings.CANDIDATE_TEMPERATURE,
                           seed=psm.settings.LLM_SEED + 1000 * cycle.attempts + k + 1)
        out.append(_candidate(sampled.text, cycle.selector, sampled.finish_reason,
                              psm.settings.CANDIDATE_TEMPERATURE))
    if not cycle.code_sampled:
        out += _code_samples(psm, cycle, step, persona)
    cycle.sampled = True
    return out


# Code completion: the method's header, docstring and the Architect's examples as
# doctests, continued by the model as a code model continues a file (no chat, no rules).
# Chat samples of one prompt mostly repeat one method (snake_to_camel: 4 of 4 the same
# wrong one); the embedded model continuing code is weaker alone (23 of 32 pure hard
# missions right at its first try) but wrong in other places: it wrote
# run_length_decode right 3 times in 4, where 0 of 15 chat repairs did.
CODE_HEADER = "import re\nimport math\nimport collections\nimport datetime\n\n\n"
CODE_STOP = ["\ndef ", "\nclass ", "\nif __name__", "\n#", "\nprint(", "\nassert ", "\n@",
             "\nimport ", "\nfrom ", "\n```", "\n>>>"]


def _quoted(text: str) -> str:
    """``text`` as it can stand inside a triple-quoted docstring."""
    return text.replace("\\", "\\\\").replace('"""', "'''")


def _docstring(words: str) -> str:
    """The Architect's words as one docstring line: no control characters, spaces collapsed."""
    doc = _quoted(" ".join("".join(c if c.isprintable() else " " for c in words).split()))
    return doc[:1].upper() + doc[1:] + ("" if doc.endswith((".", "?", "!")) else ".")


def code_prompt(cycle: CognitiveCycle) -> Optional[str]:
    """The file a code-completion candidate continues, or None when the mission cannot be
    written so: no words, keyword arguments, a method that keeps state, or words of more
    than one line.  The kernel's brief for a method a caller is missing holds the caller's
    source; as a docstring it reads as the new method's own job (``to_capitals`` for
    ``shout_greeting``, "Greet name in capital letters with an exclamation mark": all
    four code completions added the caller's '!', matched BRICK's examples that had it
    too, and won over the chat candidates that had it right)."""
    m = cycle.mission
    if not cycle.pure or not m.intent or m.kwargs or len(m.intent.strip().splitlines()) > 1 \
            or "self" in m.args or len(set(m.args)) != len(m.args):
        return None
    tests = "".join(f"\n\n    >>> {cycle.selector}({_quoted(', '.join(repr(a) for a in args))})"
                    f"\n    {_quoted(repr(expected))}" for args, expected in cycle.trusted[:4])
    return f'{CODE_HEADER}def {cycle.selector}({", ".join(m.args)}):\n    """{_docstring(m.intent)}{tests}\n    """\n'


def code_method(cycle: CognitiveCycle, body: str) -> str:
    """The method from a code completion: its body (up to the first line back at the left
    margin, re-indented by four spaces) under ``def selector(self, ...)`` with the
    Architect's words as docstring (its bare calls of itself or of siblings become sends
    when it is checked: fix_bare_sends).  ParsingError when there is no body."""
    kept = []
    for line in body.expandtabs(4).splitlines():
        if line.strip() and not line[:1].isspace():
            break
        kept.append(line)
    code = textwrap.indent(textwrap.dedent("\n".join(kept)).strip("\n"), "    ")
    if all(x.strip() in ("", "pass", "...") for x in code.splitlines()):
        raise ParsingError("the code completion wrote no body")
    m = cycle.mission
    source = (f"def {cycle.selector}({', '.join(['self', *m.args])}):\n"
              f'    """{_docstring(m.intent or cycle.selector)}"""\n' + code.rstrip() + "\n")
    try:
        ast.parse(source)
    except (SyntaxError, ValueError) as exc:
        raise ParsingError(f"the code completion is not valid Python: {exc}") from None
    return source


def _code_samples(psm: PrototypalStateMachine, cycle: CognitiveCycle, step: StepRecord,
                  persona: str) -> list[Candidate]:
    """``code_samples`` candidates by code completion (the first greedy, the others at
    CANDIDATE_TEMPERATURE), for a pure mission with words."""
    n = cycle.snapshot.tuning.get("code_samples", psm.settings.CODE_SAMPLES)
    prompt = code_prompt(cycle) if n else None
    if prompt is None:
        return []
    conf = cycle.snapshot.states[step.state]
    max_tokens = int(token_budget(conf.max_tokens, conf.max_tokens_setting, psm.settings))
    out = []
    for k in range(n):
        t = 0.0 if k == 0 else psm.settings.CANDIDATE_TEMPERATURE
        gen = psm.models.complete_text(persona, prompt, max_tokens, temperature=t, stop=CODE_STOP,
                                       seed=psm.settings.LLM_SEED + 1000 * cycle.attempts + 500 + k,
                                       cancel=cycle.cancel)
        psm._count(cycle, step, persona, gen, len(prompt))
        cand = Candidate(answer=gen.text, temperature=t, code=True)
        try:
            cand.source = code_method(cycle, gen.text)
        except ParsingError as exc:
            cand.findings = [str(exc)]
        out.append(cand)
    cycle.code_sampled = True
    step.data["code_samples"] = n
    return out


def _unknown_names(source: str, selector: str) -> Optional[str]:
    """Names a method reads that nothing gives it: not a builtin the sandbox hands out,
    not imported, assigned or a parameter (``collections.Counter`` without ``import
    collections``: a NameError on its first call).  Calling itself as a bare function
    (``flatten(x)`` for ``self.flatten(x)``) is named too."""
    import ast
    from batos.policy import GUARDED_BUILTINS, SAFE_BUILTINS
    tree = ast.parse(source)
    known = set(SAFE_BUILTINS) | set(GUARDED_BUILTINS)
    loads: dict[str, int] = {}
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = n.args
            known.update(x.arg for x in a.posonlyargs + a.args + a.kwonlyargs)
            known.update(x.arg for x in (a.vararg, a.kwarg) if x is not None)
            if not isinstance(n, ast.Lambda) and n is not tree.body[0]:
                known.add(n.name)
        elif isinstance(n, ast.Name):
            if isinstance(n.ctx, ast.Load):
                loads.setdefault(n.id, n.lineno)
            else:
                known.add(n.id)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            known.update((x.asname or x.name).split(".")[0] for x in n.names)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            known.add(n.name)
        elif isinstance(n, (ast.Global, ast.Nonlocal)):
            known.update(n.names)
        elif isinstance(n, (ast.MatchAs, ast.MatchStar)) and n.name:
            known.add(n.name)
        elif isinstance(n, ast.MatchMapping) and n.rest:
            known.add(n.rest)
    if selector in loads and selector not in known:
        return (f"line {loads[selector]}: {selector}(...) calls the method as a bare function; "
                f"a method calls itself (and its siblings) as self.{selector}(...)")
    unknown = sorted((line, name) for name, line in loads.items() if name not in known)
    if unknown:
        line, name = unknown[0]
        return (f"line {line}: the name '{name}' is not defined: import it first (import {name}) "
                "if it is a module, or define it" if len(unknown) == 1 else
                f"line {line}: the names {', '.join(repr(n) for _, n in unknown)} are not defined: "
                "import or define each before using it")
    return None


def missing_imports(source: str) -> list[str]:
    """The allowed modules a method uses without importing them (``collections.Counter``
    with no ``import collections``)."""
    import ast
    from batos.policy import GUARDED_BUILTINS, SAFE_BUILTINS
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    bound = set(SAFE_BUILTINS) | set(GUARDED_BUILTINS)
    used: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name):
            (used if isinstance(n.ctx, ast.Load) else bound).add(n.id)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            bound.update((x.asname or x.name).split(".")[0] for x in n.names)
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            bound.add(n.name)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            bound.add(n.name)
    return sorted(m for m in used - bound if m in guardian.ALLOWED_MODULES)


def add_imports(source: str, modules: list[str]) -> str:
    """``source`` with ``import m`` for each module at the top of the function's body
    (after its docstring)."""
    import ast
    fn = ast.parse(source).body[0]
    first = fn.body[0]
    after = first if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                      and isinstance(first.value.value, str) and len(fn.body) > 1) else None
    anchor = fn.body[1] if after is not None else first
    if anchor.lineno == fn.lineno:
        raise ValueError("the body is on the def line")
    lines = source.splitlines(keepends=True)
    indent = " " * anchor.col_offset
    at = anchor.lineno - 1
    return "".join(lines[:at] + [f"{indent}import {m}\n" for m in modules] + lines[at:])


def fix_private_slots(source: str) -> tuple[str, list[str]]:
    """``self._name`` (one underscore, not ``_p_changed``) as ``self.name``: the sandbox
    refuses private attributes, and a small model told to keep its data in a new
    attribute often names it so, at times beside a ``self.name`` it meant as the same
    (a repair of ``record_score`` created ``self.scores`` and appended to ``self._scores``)."""
    import ast
    tree = ast.parse(source)
    attrs = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute)
             and isinstance(n.value, ast.Name) and n.value.id == "self"]
    def private(name: str) -> bool:
        return bool(re.fullmatch(r"_[A-Za-z][A-Za-z0-9_]*", name)) and name != "_p_changed"
    # self._name, and "_name" in hasattr(self, "_name") and its kin
    spots = [(n.lineno, n.col_offset, n.end_lineno, n.end_col_offset, "self." + n.attr[1:], n.attr[1:])
             for n in attrs if private(n.attr)]
    spots += [(a.lineno, a.col_offset, a.end_lineno, a.end_col_offset, repr(a.value[1:]), a.value[1:])
              for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
              and n.func.id in ("hasattr", "getattr", "setattr", "delattr") and len(n.args) >= 2
              and isinstance(n.args[0], ast.Name) and n.args[0].id == "self"
              for a in [n.args[1]] if isinstance(a, ast.Constant) and isinstance(a.value, str) and private(a.value)]
    lines = source.splitlines(keepends=True)
    done = set()
    for line, col, end_line, end_col, text_new, name in sorted(spots, reverse=True):
        if end_line != line:
            continue
        text = lines[line - 1].encode()
        lines[line - 1] = (text[:col] + text_new.encode() + text[end_col:]).decode()
        done.add(name)
    return "".join(lines), sorted(done)


def fix_bare_sends(source: str, methods: set[str]) -> tuple[str, list[str]]:
    """``name(...)`` where ``name`` is the method itself or a sibling and nothing in the
    method binds it: a send meant as ``self.name(...)``.  Returns the fixed source and the
    names fixed."""
    import ast
    tree = ast.parse(source)
    bound: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load):
            bound.add(n.id)
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n is not tree.body[0]:
            bound.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            bound.update((x.asname or x.name).split(".")[0] for x in n.names)
    spots = sorted(((n.func.lineno, n.func.col_offset, n.func.id) for n in ast.walk(tree)
                    if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                    and n.func.id in methods and n.func.id not in bound), reverse=True)
    lines = source.splitlines(keepends=True)
    for line, col, name in spots:
        text = lines[line - 1].encode()
        lines[line - 1] = (text[:col] + b"self." + text[col:]).decode()
    return "".join(lines), sorted({name for _, _, name in spots})


def reads_missing_slot(source: str, visible: frozenset) -> Optional[str]:
    """``self.stack.append(x)`` on an object with no ``stack`` slot, where the method never
    creates it (no ``self.stack = ...``, no ``hasattr``/``getattr`` of it): an
    AttributeError on the first call."""
    import ast
    tree = ast.parse(source)
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    created: set[str] = set()
    reads: dict[str, int] = {}
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self":
            if not isinstance(n.ctx, ast.Load):
                created.add(n.attr)
            elif id(n) not in called and not n.attr.startswith("_"):
                reads[n.attr] = min(n.lineno, reads.get(n.attr, n.lineno))
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and \
                n.func.id in ("hasattr", "getattr", "setattr") and len(n.args) >= 2 and \
                isinstance(n.args[1], ast.Constant) and isinstance(n.args[1].value, str):
            created.add(n.args[1].value)
    missing = sorted((line, name) for name, line in reads.items() if name not in visible and name not in created)
    if not missing:
        return None
    line, name = missing[0]
    return (f"line {line}: self.{name} is read, but this object has no slot '{name}' yet and the method "
            f"never creates it: start with  if not hasattr(self, '{name}'): self.{name} = <its first value>")


_COVENANT_RETURN = re.compile(r"^line (\d+): Persistence Covenant: this return can follow a state change")
_COVENANT_END = "but does not end with 'self._p_changed = True'"


def add_covenant(source: str, findings: list[str]) -> Optional[str]:
    """The covenant line added where the guardian's findings ask for it (before the
    returns that can follow a change, and at the end), or None when a finding is of
    another kind or a return shares its line with other code."""
    import ast
    fn = ast.parse(source).body[0]
    lines = source.splitlines(keepends=True)
    inserts: dict[int, str] = {}       # 0-based line index -> indentation
    for finding in findings:
        m = _COVENANT_RETURN.match(finding)
        if m:
            index = int(m.group(1)) - 1
            text = lines[index]
            if not text.lstrip().startswith("return"):
                return None
            inserts[index] = text[:len(text) - len(text.lstrip())]
        elif _COVENANT_END in finding:
            last = fn.body[-1]
            if last.lineno == fn.lineno:
                return None
            indent = " " * last.col_offset
            index = last.lineno - 1 if isinstance(last, ast.Return) else (last.end_lineno or last.lineno)
            inserts[index] = indent
        else:
            return None
    for index in sorted(inserts, reverse=True):
        lines.insert(index, f"{inserts[index]}self._p_changed = True\n")
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return "".join(lines)


def _uses_own_name(source: str, selector: str) -> Optional[str]:
    """A method that keeps data in ``self.<its own name>`` reads itself (a bound method)
    instead: ``tally`` writing ``self.tally[item]``.  Calling itself is fine."""
    import ast
    tree = ast.parse(source)
    calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for n in ast.walk(tree):
        if (isinstance(n, ast.Attribute) and n.attr == selector and isinstance(n.value, ast.Name)
                and n.value.id == "self" and id(n) not in calls):
            return (f"line {n.lineno}: self.{selector} is this method itself, not data: keep the data "
                    f"under another name, such as self.{selector}_data")
    return None


def _check(psm: PrototypalStateMachine, cycle: CognitiveCycle, cand: Candidate) -> None:
    """Audit a candidate and, if admitted, run it on the examples (twice on the first for
    a mission that keeps nothing: it must answer the same and change nothing)."""
    if cand.source is None:
        return
    from batos.policy import GUARDED_BUILTINS, SAFE_BUILTINS
    # a sibling named like a builtin (a method 'sum') leaves the builtin call alone
    siblings = ({cycle.selector} | {m.selector for m in cycle.snapshot.methods}) \
        - set(SAFE_BUILTINS) - set(GUARDED_BUILTINS)
    try:            # data kept under a private name (self._stack): the sandbox refuses it
        cand.source, renamed = fix_private_slots(cand.source)
        cand.imported += [f"self.{name} (was self._{name})" for name in renamed]
    except (SyntaxError, ValueError):
        pass
    try:            # the method or a sibling called as a bare function: meant as a send to self
        cand.source, fixed = fix_bare_sends(cand.source, siblings)
        cand.imported += [f"self.{name}" for name in fixed]
    except (SyntaxError, ValueError):
        pass
    modules = missing_imports(cand.source)
    if modules:     # an allowed module used without its import: the kernel adds the import
        try:
            cand.source = add_imports(cand.source, modules)
            cand.imported += modules
        except (SyntaxError, IndexError, AttributeError, ValueError):
            pass
    report = guardian.audit(cand.source, cycle.selector, max_bytes=psm.settings.MAX_SOURCE_BYTES)
    if not report.ok and not cycle.pure:   # a mission that keeps something: the covenant line is the kernel's to add
        try:
            fixed = add_covenant(cand.source, report.findings)
        except (SyntaxError, IndexError, AttributeError):
            fixed = None
        if fixed is not None:
            again = guardian.audit(fixed, cycle.selector, max_bytes=psm.settings.MAX_SOURCE_BYTES)
            if again.ok:
                cand.source, report = fixed, again
                cand.imported.append("self._p_changed")
    cand.findings = list(report.findings)
    if report.ok:
        problem = report.accepts(len(cycle.mission.args), cycle.mission.kwargs) or \
            _uses_own_name(cand.source, cycle.selector) or _unknown_names(cand.source, cycle.selector) or \
            reads_missing_slot(cand.source, cycle.snapshot.visible | {m.selector for m in cycle.snapshot.methods})
        if problem:
            cand.findings.append(problem)
    if cand.findings:
        return
    cand.report = report
    examples = cycle.examples
    if not examples or psm.runner is None:
        return
    calls = examples + ([examples[0]] if cycle.pure else [])
    outcomes = psm.runner(cycle.target_oid, cycle.selector, cand.source, calls)
    if cycle.pure:
        again = outcomes.pop()
        first = outcomes[0]
        for o in outcomes:
            if o.changed and o.error is None:
                o.problems.append(f"but it stored {', '.join(o.changed)} on self, and this method must "
                                  "keep nothing: compute the answer from the arguments and return it")
        if first.error is None and again.error is None and repr(again.actual) != repr(first.actual):
            first.problems.append(f"called twice with the same arguments it answered {first.actual!r}, "
                                  f"then {again.actual!r}: it must give the same answer every time")
    cand.outcomes = outcomes


def retries(psm: PrototypalStateMachine, cycle: CognitiveCycle) -> int:
    """How many times a refused method, or one that fails an example, is fed back: the
    state machine object's ``retries`` slot, else ``CYCLE_RETRIES``."""
    return cycle.snapshot.tuning.get("retries", psm.settings.CYCLE_RETRIES)


def validating(psm: PrototypalStateMachine, cycle: CognitiveCycle, step: StepRecord) -> str:
    new, cycle.pending = cycle.pending, []
    for cand in new:
        _check(psm, cycle, cand)
    cycle.candidates += [c for c in new if c.admitted]
    added = sorted({m for c in new for m in c.imported})
    if added:
        step.data["imports_added"] = added
    latest = new[0] if new else None
    cycle.findings = list(latest.findings) if latest else []
    step.data["findings"] = list(cycle.findings)
    if not cycle.candidates:     # nothing admitted yet: parsing or audit findings
        cycle.failed_phase = "parsing" if latest is not None and latest.source is None else "audit"
        if cycle.attempts <= retries(psm, cycle):
            cycle.repair, cycle.feedback = latest, list(cycle.findings)
            step.data["retry"] = True
            return "SYNTHESIZING"
        error = ParsingError if cycle.failed_phase == "parsing" else AuditError
        raise error("the method was refused: " + "; ".join(cycle.findings))
    n_trusted = len(cycle.trusted)

    def blocking(c: Candidate) -> list[Outcome]:
        """What stops a candidate: the Architect's (or the replaced method's) examples it fails,
        and kept state or changing answers in a method that must keep nothing.  BRICK's own
        examples are advice: a small model's expected values are often wrong, so they rank
        candidates (with agreement) but never block one."""
        return [o for o in c.outcomes[:n_trusted] if not o.passed] + \
               [o for o in c.outcomes[n_trusted:] if o.problems]

    clear = [i for i, c in enumerate(cycle.candidates) if not blocking(c)]
    consensus = bool(cycle.snapshot.tuning.get("consensus", CONSENSUS))
    if clear:
        choice = choose([cycle.candidates[i].outcomes for i in clear], trusted=n_trusted, consensus=consensus)
        index = clear[choice.index]
        why = choice.why if choice.accepted else (
            f"passes every blocking check; {choice.passed} of {len(cycle.candidates[index].outcomes)} "
            f"examples match, {choice.agreeing} candidate(s) agree")
    else:
        choice = choose([c.outcomes for c in cycle.candidates], trusted=n_trusted, consensus=consensus)
        index, why = choice.index, choice.why
    chosen = cycle.candidates[index]
    cycle.outcomes = chosen.outcomes
    step.data.update(candidates=len(cycle.candidates), chosen=index, chosen_kind=chosen.kind,
                     agreeing=choice.agreeing,
                     examples_passed=sum(o.passed for o in chosen.outcomes),
                     examples=len(chosen.outcomes), choice=why)
    if len(cycle.candidates) > 1:   # each candidate: its kind, the examples it passed, those it raised on
        step.data["compared"] = [[c.kind, sum(o.passed for o in c.outcomes), sum(o.error is not None
                                                                                  for o in c.outcomes)]
                                 for c in cycle.candidates]
    # the first candidate fails a blocking check, raises, or misses any of BRICK's
    # examples (which are often wrong, so they never block, but a miss is a reason to
    # compare: is_valid_email passed 3 of 4, accepting 'a@b'): before any repair,
    # sample more from the same (cached) prompt and let agreement choose
    wanted = cycle.snapshot.tuning.get("candidates", psm.settings.CYCLE_CANDIDATES)
    coded = cycle.snapshot.tuning.get("code_samples", psm.settings.CODE_SAMPLES) \
        if code_prompt(cycle) is not None else 0
    brick = chosen.outcomes[n_trusted:]
    doubtful = not clear or any(o.error is not None for o in chosen.outcomes) or \
        sum(o.passed for o in brick) < len(brick)
    if not cycle.sampled and (wanted > 1 or coded) and doubtful:
        cycle.sample_only = True
        step.data["sampling"] = wanted - 1 + coded
        return "SYNTHESIZING"
    # BRICK's expected values may be wrong, but a method should not raise on its inputs:
    # an exception there asks for a repair while retries remain (the best candidate so far
    # stays in the running)
    raised = [o for o in chosen.outcomes[n_trusted:] if o.error is not None] if clear else []
    if raised and cycle.attempts <= retries(psm, cycle):
        cycle.feedback = [o.feedback(cycle.selector) for o in raised] + [
            "(an example's expected value may be wrong, but the method must not raise on such input)"]
        step.data.update(failures=cycle.feedback, retry=True)
        cycle.repair = chosen
        return "SYNTHESIZING"
    if clear:
        cycle.artifact, cycle.report = chosen.source, chosen.report
        return psm._next(cycle, "VALIDATING")
    cycle.feedback = [o.feedback(cycle.selector) for o in blocking(chosen)]
    step.data["failures"] = cycle.feedback
    if cycle.attempts <= retries(psm, cycle):
        cycle.repair = chosen
        step.data["retry"] = True
        return "SYNTHESIZING"
    cycle.artifact = chosen.source
    raise ExamplesError(f"no candidate answered its examples ({why}): " + "; ".join(cycle.feedback[:3]))


def complete(psm: PrototypalStateMachine, cycle: CognitiveCycle, step: StepRecord) -> None:
    report = cycle.report
    adopted: dict = {}   # the method someone else installed while this cycle ran, if any

    def install(s: Any) -> None:
        target = s.get(cycle.target_oid)
        present = target._slots.get(cycle.selector)
        adopted.clear()    # a retry after a ConflictError checks again
        if isinstance(present, Method) and present.installed_at > cycle.started_at \
                and present.cycle_id != cycle.cycle_id:
            # taught meanwhile (another kernel on a shared image, or the Architect): adopt it
            adopted.update(source=present.source, cycle_id=present.cycle_id, origin=present.origin)
            return
        target._install(cycle.selector, cycle.artifact, origin="cycle", cycle_id=cycle.cycle_id,
                        report=report, examples=[[o.args, o.expected] for o in cycle.outcomes if o.passed])
        s.root["cycles"][cycle.cycle_id] = PersistentMapping({
            "target": cycle.target_oid, "selector": cycle.selector, "persona": cycle.persona,
            "mission": cycle.mission.model_dump(), "transitions": [r.state for r in cycle.steps] + ["COMPLETE"],
            "started_at": cycle.started_at, "finished_at": time.time(),
            "attempts": cycle.attempts, "source": cycle.artifact})

    if report is None:
        raise InstallError("COMPLETE was reached without a VALIDATING verdict")
    try:
        psm.image.transact(install, note=f"cycle {cycle.cycle_id}: install {cycle.selector}")
    except (ObjectNotFound, ConflictsExhausted) as exc:
        raise InstallError(str(exc)) from exc
    if adopted:
        cycle.artifact = adopted["source"]
        step.data["adopted"] = {"cycle_id": adopted["cycle_id"], "origin": adopted["origin"]}
    elif psm.learned is not None:
        psm.learned(cycle.target_oid, cycle.selector, cycle.artifact, report.doc)
    step.data["installed"] = cycle.selector
    return None


PROCESSES: dict[str, Callable[[PrototypalStateMachine, CognitiveCycle, StepRecord], Optional[str]]] = {
    "IDLE": idle, "DECOMPOSING": decomposing, "DELEGATING": delegating,
    "SYNTHESIZING": synthesizing, "VALIDATING": validating, "COMPLETE": complete,
}
