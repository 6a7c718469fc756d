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

from batos import guardian
from batos.genesis import PERSONA_PROTOTYPES, state_oid
from batos.image import ConflictsExhausted, ObjectNotFound
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


class ResearchPlan(BaseModel):
    """BRICK's plan: the search queries that DELEGATING runs against the memory."""
    queries: list[str] = Field(min_length=1, max_length=3)


PLAN_SCHEMA = {
    "type": "object",
    "properties": {
        "queries": {"type": "array", "items": {"type": "string", "minLength": 2, "maxLength": 48},
                    "minItems": 1, "maxItems": 3},
    },
    "required": ["queries"],
}
CONTEXT_CHARS = 1500     # knowledge handed to SYNTHESIZING
SKILLS_SHOWN = 2         # similar installed methods shown as examples


# ------------------------------------------------------------------ the records

@dataclasses.dataclass(frozen=True)
class StateConf:
    """A state object's slots, as the cycle read them."""
    next: str
    persona: Optional[str]
    instructions: str
    max_tokens: Optional[int]
    max_tokens_setting: Optional[str]


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
    phase: Optional[str] = None         # FAILED: generation, parsing, audit, install, cycle, internal

    def wire(self) -> dict:
        out = {"cycle_id": self.cycle_id, "state": self.state, "selector": self.selector,
               "transitions": self.transitions, "persona": self.persona, "attempts": self.attempts,
               "duration_s": self.duration_s}
        if self.source is not None:
            out["source"] = self.source
        if self.state == "FAILED":
            out["reason"], out["phase"] = self.reason, self.phase
        return out


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
    context: str = ""
    skills: list[str] = dataclasses.field(default_factory=list)   # sources of similar methods
    answer: str = ""                      # the last raw answer of SYNTHESIZING
    artifact: Optional[str] = None        # the method's source
    findings: list[str] = dataclasses.field(default_factory=list)
    failed_phase: str = "audit"           # what the findings are about: "parsing" or "audit"
    report: Optional[guardian.AuditReport] = None   # VALIDATING's verdict on the artifact
    attempts: int = 0

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
                           source=self.artifact, reason=reason, phase=phase)


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
                 learned: Callable[[str, str, str, str], None] | None = None):
        self.image = image
        self.models = models
        self.settings = settings
        self.emit = emit
        self.memory = memory        # the FractalMemory, or None when it is disabled or loading
        self.learned = learned      # told of every installed method (the skill library)

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

    def _finish(self, cycle: CognitiveCycle) -> CycleResult:
        result = cycle.result()
        self.emit({"event": "cycle_end", "cycle_id": cycle.cycle_id, "state": result.state,
                   "target": cycle.target_oid, "selector": cycle.selector, "persona": cycle.persona,
                   "ts": time.time(), "duration_s": result.duration_s, "artifact": cycle.artifact,
                   "attempts": cycle.attempts, "reason": result.reason, "phase": result.phase,
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
        self.emit({"event": "cycle_end", "cycle_id": cycle.cycle_id, "state": "FAILED",
                   "target": cycle.target_oid, "selector": cycle.selector, "persona": cycle.persona,
                   "ts": time.time(), "duration_s": result.duration_s, "reason": reason, "phase": phase,
                   "attempts": cycle.attempts, "artifact": cycle.artifact,
                   "steps": [{"state": r.state, "duration_s": r.duration_s} for r in cycle.steps]})
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
                                          get("max_tokens_setting"))
            prompts = {p: str(objects[oid]._slots.get("system_prompt", ""))
                       for p, (oid, _) in PERSONA_PROTOTYPES.items() if oid in objects}
        return Snapshot(persona, methods, types.MappingProxyType(slots), types.MappingProxyType(states),
                        types.MappingProxyType(prompts))

    def _ask(self, cycle: CognitiveCycle, step: StepRecord, persona: str,
             messages: list[dict], schema: dict | None = None) -> Generation:
        conf = cycle.snapshot.states[step.state]
        max_tokens = conf.max_tokens or getattr(self.settings, conf.max_tokens_setting or "METHOD_MAX_TOKENS")
        gen = self.models.complete(persona, messages, int(max_tokens), grammar=schema, cancel=cycle.cancel)
        step.exchange = Exchange(persona, gen.model, sum(len(m["content"]) for m in messages),
                                 len(gen.text), gen.prompt_tokens, gen.completion_tokens,
                                 round(gen.seconds, 3), round(gen.load_seconds, 3))
        if cycle.cancel.is_set():
            raise CycleFailure("the cycle was stopped while the model was answering")
        return gen

    def _fields(self, cycle: CognitiveCycle) -> dict:
        m = cycle.mission
        args = list(m.args) + list(m.kwargs)
        example = m.example_call or f"{cycle.selector}({', '.join(args)})"
        methods = ", ".join(x.signature for x in cycle.snapshot.methods) or "none"
        slots = ", ".join(f"{k} ({v})" for k, v in cycle.snapshot.slots.items()) or "none"
        if m.args or m.kwargs:
            hint = (f"{len(m.args)} positional argument(s)" if m.args else "no positional arguments")
            if m.kwargs:
                hint += f" and the keyword argument(s) {', '.join(m.kwargs)}"
        else:
            hint = "no arguments besides self"
        return {"target": cycle.target_oid, "selector": cycle.selector, "example_call": example,
                "intent_line": f"The Architect's words: {m.intent}\n" if m.intent else "",
                "methods": methods, "slots": slots, "params_hint": hint,
                "allowed": ", ".join(sorted(guardian.ALLOWED_MODULES)),
                "context": cycle.context or "(none)",
                "skills": "\n\n".join(cycle.skills) or "(none)"}

    def _system(self, cycle: CognitiveCycle, persona: str) -> dict:
        return {"role": "system", "content": cycle.snapshot.prompts.get(persona) or
                f"You are {persona}, a persona of BAT OS."}


# ----------------------------------------------------------------- the states

def idle(psm: PrototypalStateMachine, cycle: CognitiveCycle, step: StepRecord) -> str:
    return psm._next(cycle, "IDLE")


def decomposing(psm: PrototypalStateMachine, cycle: CognitiveCycle, step: StepRecord) -> str:
    conf = cycle.snapshot.states["DECOMPOSING"]
    persona = conf.persona or "BRICK"
    prompt = conf.instructions.format(**psm._fields(cycle))
    gen = psm._ask(cycle, step, persona, [psm._system(cycle, persona), {"role": "user", "content": prompt}],
                   PLAN_SCHEMA)
    try:
        plan = ResearchPlan.model_validate(json.loads(gen.text))
        cycle.queries = list(dict.fromkeys(q.strip() for q in plan.queries if q.strip()))
    except (json.JSONDecodeError, ValidationError) as exc:
        # the queries only guide retrieval; without them DELEGATING searches for the mission
        step.data["plan_error"] = f"BRICK's queries were not usable JSON ({type(exc).__name__})"
    step.data["queries"] = cycle.queries
    return psm._next(cycle, "DECOMPOSING")


def _mission_text(cycle: CognitiveCycle) -> str:
    return " ".join(x for x in (cycle.selector.replace("_", " "), cycle.mission.intent or "") if x)


def delegating(psm: PrototypalStateMachine, cycle: CognitiveCycle, step: StepRecord) -> str:
    """Run BRICK's queries against the Fractal Memory; collect deduplicated context and
    the most similar installed methods.  Without a memory, the target's related methods."""
    if psm.memory is None:
        return _delegating_without_memory(psm, cycle, step)
    k = psm.settings.MEMORY_SEARCH_K
    queries = cycle.queries or [_mission_text(cycle)]
    seen: set[int] = set()
    parts: list[str] = []
    sizes: list[int] = []
    sources: list[str] = []
    with psm.image.reading() as s:
        for query in queries:
            hits = [h for h in psm.memory.search(s.root, query, k) if h["kind"] != "method"]
            sizes.append(len(hits))
            for h in hits:
                if h["id"] in seen:
                    continue
                seen.add(h["id"])
                if sum(len(p) for p in parts) + len(h["text"]) > CONTEXT_CHARS:
                    continue
                parts.append(h["text"])
                sources.append(h["source"])
        skills = psm.memory.search(s.root, _mission_text(cycle), SKILLS_SHOWN, kind="method")
    cycle.context = "\n\n".join(parts)
    cycle.skills = [h["text"].split("\n", 1)[1] if "\n" in h["text"] else h["text"] for h in skills]
    step.data.update(queries=queries, retrieved=sizes, context_items=len(parts),
                     context_chars=len(cycle.context), sources=sources,
                     skills=[h["source"] for h in skills])
    return psm._next(cycle, "DELEGATING")


def _delegating_without_memory(psm: PrototypalStateMachine, cycle: CognitiveCycle,
                               step: StepRecord) -> str:
    words = set(re.findall(r"[a-z]+", " ".join([_mission_text(cycle), *cycle.queries]).lower()))
    scored = []
    for m in cycle.snapshot.methods:
        text = f"{m.selector.replace('_', ' ')} {m.doc}".lower()
        scored.append((len(words & set(re.findall(r"[a-z]+", text))), m))
    scored.sort(key=lambda x: -x[0])
    cycle.skills = [m.source.strip() for score, m in scored[:SKILLS_SHOWN] if score > 0]
    cycle.context = ""
    step.data.update(queries=cycle.queries, retrieved=[], context_chars=0, skills=len(cycle.skills))
    return psm._next(cycle, "DELEGATING")


def synthesizing(psm: PrototypalStateMachine, cycle: CognitiveCycle, step: StepRecord) -> str:
    conf = cycle.snapshot.states["SYNTHESIZING"]
    persona = conf.persona
    if persona in (None, "", "target"):
        persona = cycle.persona
    cycle.attempts += 1
    step.attempt = cycle.attempts
    prompt = conf.instructions.format(**psm._fields(cycle))
    messages = [psm._system(cycle, persona), {"role": "user", "content": prompt}]
    if cycle.findings and cycle.answer:
        messages += [{"role": "assistant", "content": cycle.answer},
                     {"role": "user", "content":
                      "The PersistenceGuardian refused that method:\n- "
                      + "\n- ".join(cycle.findings)
                      + f"\nWrite the corrected method '{cycle.selector}'. "
                        "Answer with only the code in one ```python block."}]
    gen = psm._ask(cycle, step, persona, messages)
    cycle.answer = gen.text
    cycle.report = None
    try:
        cycle.artifact = extract_method(gen.text, cycle.selector)
        cycle.findings = []
    except ParsingError as exc:
        # not final: VALIDATING feeds it back for another attempt, or fails the cycle in
        # the parsing phase when no attempt is left
        cycle.artifact = None
        cycle.failed_phase = "parsing"
        cycle.findings = [str(exc) + (" (the answer was cut off at the token limit)"
                                      if gen.finish_reason == "length" else "")]
        step.data["parse_error"] = cycle.findings[0]
    step.data["finish_reason"] = gen.finish_reason
    return psm._next(cycle, "SYNTHESIZING")


def validating(psm: PrototypalStateMachine, cycle: CognitiveCycle, step: StepRecord) -> str:
    if cycle.artifact is not None:
        report = guardian.audit(cycle.artifact, cycle.selector, max_bytes=psm.settings.MAX_SOURCE_BYTES)
        cycle.findings = list(report.findings)
        cycle.failed_phase = "audit"
        if report.ok:
            problem = report.accepts(len(cycle.mission.args), cycle.mission.kwargs)
            if problem:
                cycle.findings.append(problem)
        cycle.report = report if not cycle.findings else None
    step.data["findings"] = list(cycle.findings)
    if not cycle.findings:
        return psm._next(cycle, "VALIDATING")
    if cycle.attempts <= psm.settings.CYCLE_RETRIES:
        step.data["retry"] = True
        return "SYNTHESIZING"
    error = ParsingError if cycle.failed_phase == "parsing" else AuditError
    raise error("the method was refused: " + "; ".join(cycle.findings))


def complete(psm: PrototypalStateMachine, cycle: CognitiveCycle, step: StepRecord) -> None:
    report = cycle.report

    def install(s: Any) -> None:
        target = s.get(cycle.target_oid)
        target._install(cycle.selector, cycle.artifact, origin="cycle", cycle_id=cycle.cycle_id,
                        report=report)
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
    if psm.learned is not None:
        psm.learned(cycle.target_oid, cycle.selector, cycle.artifact, report.doc)
    step.data["installed"] = cycle.selector
    return None


PROCESSES: dict[str, Callable[[PrototypalStateMachine, CognitiveCycle, StepRecord], Optional[str]]] = {
    "IDLE": idle, "DECOMPOSING": decomposing, "DELEGATING": delegating,
    "SYNTHESIZING": synthesizing, "VALIDATING": validating, "COMPLETE": complete,
}
