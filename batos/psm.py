"""The Prototypal State Machine: the seven states of a cognitive cycle.

IDLE -> DECOMPOSING -> DELEGATING -> SYNTHESIZING -> VALIDATING -> COMPLETE,
or FAILED from any state.  Each state is a prototype object in the image
(``psm_<state>_obj``): its successor, persona, prompt and token budget are
read from there at the start of every cycle.  The behaviour of each state is
the function of the same name below.

The cycle writes to the image only in COMPLETE, in one transaction that
installs the method and records the cycle; a FAILED cycle leaves no trace in
the image (its story is in metacognition.jsonl).
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
from typing import Any, Callable, Optional

from persistent.mapping import PersistentMapping
from pydantic import BaseModel, Field, ValidationError

from batos import guardian
from batos.errors import BatosError
from batos.genesis import PERSONA_PROTOTYPES, state_oid
from batos.llm import Generation, GenerationError
from batos.protocol import STATES
from batos.uvm import Method

log = logging.getLogger("batos.psm")
TERMINAL = ("COMPLETE", "FAILED")
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


@dataclasses.dataclass
class Exchange:
    """One question to a persona's model and its answer."""
    state: str
    persona: str
    prompt_chars: int
    answer_chars: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    model: str
    load_seconds: float = 0.0


@dataclasses.dataclass
class CognitiveCycle:
    cycle_id: str
    target_oid: str
    mission: dict
    persona: str = ""
    started_at: float = dataclasses.field(default_factory=time.time)
    history: list[tuple[str, float]] = dataclasses.field(default_factory=list)  # [(state, ts)]
    exchanges: list[Exchange] = dataclasses.field(default_factory=list)
    queries: list[str] = dataclasses.field(default_factory=list)
    context: str = ""
    skills: list[str] = dataclasses.field(default_factory=list)   # sources of similar methods
    answer: str = ""                      # the last raw answer of SYNTHESIZING
    artifact: Optional[str] = None        # the method's source
    findings: list[str] = dataclasses.field(default_factory=list)
    reason: Optional[str] = None
    attempts: int = 0

    @property
    def state(self) -> str:
        return self.history[-1][0] if self.history else "IDLE"

    @property
    def selector(self) -> str:
        return self.mission["selector"]

    @property
    def duration_s(self) -> float:
        return (self.history[-1][1] if self.history else time.time()) - self.started_at

    def result(self) -> dict:
        out = {"cycle_id": self.cycle_id, "state": self.state, "selector": self.selector,
               "transitions": [s for s, _ in self.history], "persona": self.persona,
               "attempts": self.attempts, "duration_s": round(self.duration_s, 3)}
        if self.state == "COMPLETE":
            out["source"] = self.artifact
        else:
            out["reason"] = self.reason
            if self.artifact:
                out["source"] = self.artifact
        return out


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
        self.memory = memory        # the FractalMemory, or None when it is disabled
        self.learned = learned      # told of every installed method (the skill library)

    # -- the run loop ---------------------------------------------------------------
    def run(self, cycle_id: str, target_oid: str, brief: dict,
            cancel: threading.Event | None = None) -> CognitiveCycle:
        cancel = cancel or threading.Event()
        cycle = CognitiveCycle(cycle_id, target_oid, dict(brief))
        timer = threading.Timer(self.settings.CYCLE_TIMEOUT_S, cancel.set)
        timer.daemon = True
        timer.start()
        ctx: dict[str, Any] = {"cancel": cancel}
        try:
            self._run(cycle, ctx)
        finally:
            timer.cancel()
        return cycle

    def _run(self, cycle: CognitiveCycle, ctx: dict) -> None:
        try:
            ctx.update(self._snapshot(cycle))
        except (BatosError, CycleFailure) as exc:
            return self._fail(cycle, getattr(exc, "message", None) or str(exc))
        state, extra = "IDLE", {}
        for _ in range(MAX_TRANSITIONS):
            self._enter(cycle, state, **extra)
            try:
                if ctx["cancel"].is_set():
                    raise CycleFailure(f"the cycle was stopped (time limit "
                                       f"{self.settings.CYCLE_TIMEOUT_S:g}s or shutdown)")
                state, extra = PROCESSES[state](self, cycle, ctx)
                if state == "":
                    return  # COMPLETE is done
                if state == "FAILED":
                    return self._fail(cycle, extra.get("reason") or "the cycle was sent to FAILED")
            except (CycleFailure, GenerationError) as exc:
                return self._fail(cycle, f"{cycle.state}: {exc}")
            except Exception as exc:  # a bug must not crash the kernel: the cycle fails
                log.error("psm: %s failed in %s:\n%s", cycle.cycle_id, cycle.state,
                          traceback.format_exc())
                return self._fail(cycle, f"{cycle.state}: internal error: {type(exc).__name__}: {exc}")
        self._fail(cycle, f"the cycle exceeded {MAX_TRANSITIONS} transitions")

    def _fail(self, cycle: CognitiveCycle, reason: str) -> None:
        """Enter FAILED: nothing of the cycle is in the image; the log keeps its story."""
        cycle.reason = reason
        self._enter(cycle, "FAILED", reason=reason)
        self.emit({"event": "cycle_end", "cycle_id": cycle.cycle_id, "state": "FAILED",
                   "target": cycle.target_oid, "selector": cycle.selector,
                   "persona": cycle.persona, "ts": time.time(),
                   "duration_s": round(time.time() - cycle.started_at, 3),
                   "reason": reason, "attempts": cycle.attempts, "artifact": cycle.artifact})

    def _enter(self, cycle: CognitiveCycle, state: str, **extra: Any) -> None:
        prev = cycle.history[-1] if cycle.history else None
        now = time.time()
        cycle.history.append((state, now))
        event = {"event": "state", "cycle_id": cycle.cycle_id, "state": state,
                 "prev": prev[0] if prev else None, "target": cycle.target_oid,
                 "selector": cycle.selector, "persona": cycle.persona, "ts": now,
                 "elapsed_s": round(now - cycle.started_at, 4),
                 "prev_state_s": round(now - prev[1], 4) if prev else 0.0,
                 "attempt": cycle.attempts}
        event.update(extra)
        self.emit(event)

    def _next(self, ctx: dict, state: str) -> str:
        successor = ctx["states"][state]["next"]
        if successor not in STATES:
            raise CycleFailure(f"the state {state}'s successor {successor!r} is not a state")
        return successor

    # -- reading what the cycle needs ---------------------------------------------------
    def _snapshot(self, cycle: CognitiveCycle) -> dict:
        """Plain copies of the target, the personas and the states, read at the start."""
        with self.image.reading() as s:
            target = s.get(cycle.target_oid)
            found = target._find_slot("persona")
            persona = found[1] if found and found[1] in PERSONA_PROTOTYPES \
                else self.settings.DEFAULT_PERSONA_MODEL
            methods = [{"selector": sel, "owner": owner._label(), "signature": m.signature,
                        "doc": m.doc, "source": m.source} for sel, owner, m in target._methods()]
            slots = {k: type(v).__name__ for k, v in target._slots.items()
                     if k not in ("parents", "name", "doc") and not isinstance(v, Method)}
            objects = s.root["objects"]
            states = {}
            for state in STATES:
                obj = objects.get(state_oid(state))
                if obj is None:
                    raise CycleFailure(f"the state object {state_oid(state)} is missing")
                states[state] = {k: obj._slots.get(k) for k in
                                 ("next", "persona", "instructions", "max_tokens",
                                  "max_tokens_setting")}
            prompts = {p: str(objects[oid]._slots.get("system_prompt", ""))
                       for p, (oid, _) in PERSONA_PROTOTYPES.items() if oid in objects}
        cycle.persona = persona
        return {"methods": methods, "slots": slots, "states": states, "prompts": prompts}

    def _ask(self, cycle: CognitiveCycle, ctx: dict, state: str, persona: str,
             messages: list[dict], schema: dict | None = None) -> Generation:
        conf = ctx["states"][state]
        max_tokens = conf.get("max_tokens") or getattr(
            self.settings, conf.get("max_tokens_setting") or "METHOD_MAX_TOKENS")
        gen = self.models.complete(persona, messages, int(max_tokens), grammar=schema,
                                   cancel=ctx["cancel"])
        cycle.exchanges.append(Exchange(
            state, persona, sum(len(m["content"]) for m in messages), len(gen.text),
            gen.prompt_tokens, gen.completion_tokens, round(gen.seconds, 3), gen.model,
            round(gen.load_seconds, 3)))
        if ctx["cancel"].is_set():
            raise CycleFailure("the cycle was stopped while the model was answering")
        return gen

    def _fields(self, cycle: CognitiveCycle, ctx: dict) -> dict:
        m = cycle.mission
        intent = m.get("intent")
        args = list(m.get("args") or []) + list((m.get("kwargs") or {}).keys())
        example = m.get("example_call") or f"{cycle.selector}({', '.join(args)})"
        methods = ", ".join(x["signature"] for x in ctx["methods"]) or "none"
        slots = ", ".join(f"{k} ({v})" for k, v in ctx["slots"].items()) or "none"
        params = m.get("args") or []
        kw = list((m.get("kwargs") or {}).keys())
        if params or kw:
            hint = (f"{len(params)} positional argument(s)" if params else "no positional arguments")
            if kw:
                hint += f" and the keyword argument(s) {', '.join(kw)}"
        else:
            hint = "no arguments besides self"
        return {"target": cycle.target_oid, "selector": cycle.selector, "example_call": example,
                "intent_line": f"The Architect's words: {intent}\n" if intent else "",
                "methods": methods, "slots": slots, "params_hint": hint,
                "allowed": ", ".join(sorted(guardian.ALLOWED_MODULES)),
                "context": cycle.context or "(none)",
                "skills": "\n\n".join(cycle.skills) or "(none)"}

    def _system(self, ctx: dict, persona: str) -> dict:
        return {"role": "system", "content": ctx["prompts"].get(persona) or
                f"You are {persona}, a persona of BAT OS."}


# ----------------------------------------------------------------- the states

def idle(psm: PrototypalStateMachine, cycle: CognitiveCycle, ctx: dict):
    return psm._next(ctx, "IDLE"), {}


def decomposing(psm: PrototypalStateMachine, cycle: CognitiveCycle, ctx: dict):
    conf = ctx["states"]["DECOMPOSING"]
    persona = conf.get("persona") or "BRICK"
    prompt = conf["instructions"].format(**psm._fields(cycle, ctx))
    gen = psm._ask(cycle, ctx, "DECOMPOSING", persona,
                   [psm._system(ctx, persona), {"role": "user", "content": prompt}], PLAN_SCHEMA)
    extra: dict[str, Any] = {}
    try:
        plan = ResearchPlan.model_validate(json.loads(gen.text))
        cycle.queries = list(dict.fromkeys(q.strip() for q in plan.queries if q.strip()))
    except (json.JSONDecodeError, ValidationError) as exc:
        # the queries only guide retrieval; without them DELEGATING searches for the mission
        extra["plan_error"] = f"BRICK's queries were not usable JSON ({type(exc).__name__})"
    extra.update(_exchange_fields(cycle), queries=cycle.queries)
    return psm._next(ctx, "DECOMPOSING"), extra


def _mission_text(cycle: CognitiveCycle) -> str:
    m = cycle.mission
    return " ".join(x for x in (cycle.selector.replace("_", " "), m.get("intent") or "") if x)


def delegating(psm: PrototypalStateMachine, cycle: CognitiveCycle, ctx: dict):
    """Run BRICK's queries against the Fractal Memory; collect deduplicated context and
    the most similar installed methods.  Without a memory, the target's related methods."""
    if psm.memory is None:
        return _delegating_without_memory(psm, cycle, ctx)
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
    return psm._next(ctx, "DELEGATING"), {
        "queries": queries, "retrieved": sizes, "context_items": len(parts),
        "context_chars": len(cycle.context), "sources": sources,
        "skills": [h["source"] for h in skills]}


def _delegating_without_memory(psm: PrototypalStateMachine, cycle: CognitiveCycle, ctx: dict):
    words = set(re.findall(r"[a-z]+", " ".join([_mission_text(cycle), *cycle.queries]).lower()))
    scored = []
    for m in ctx["methods"]:
        text = f"{m['selector'].replace('_', ' ')} {m['doc']}".lower()
        scored.append((len(words & set(re.findall(r"[a-z]+", text))), m))
    scored.sort(key=lambda x: -x[0])
    cycle.skills = [m["source"].strip() for score, m in scored[:SKILLS_SHOWN] if score > 0]
    cycle.context = ""
    return psm._next(ctx, "DELEGATING"), {"queries": cycle.queries, "retrieved": [],
                                          "context_chars": 0, "skills": len(cycle.skills)}


def synthesizing(psm: PrototypalStateMachine, cycle: CognitiveCycle, ctx: dict):
    conf = ctx["states"]["SYNTHESIZING"]
    persona = conf.get("persona")
    if persona in (None, "", "target"):
        persona = cycle.persona
    cycle.attempts += 1
    prompt = conf["instructions"].format(**psm._fields(cycle, ctx))
    messages = [psm._system(ctx, persona), {"role": "user", "content": prompt}]
    if cycle.findings and cycle.answer:
        messages += [{"role": "assistant", "content": cycle.answer},
                     {"role": "user", "content":
                      "The PersistenceGuardian refused that method:\n- "
                      + "\n- ".join(cycle.findings)
                      + f"\nWrite the corrected method '{cycle.selector}'. "
                        "Answer with only the code in one ```python block."}]
    gen = psm._ask(cycle, ctx, "SYNTHESIZING", persona, messages)
    cycle.answer = gen.text
    try:
        cycle.artifact = extract_method(gen.text, cycle.selector)
        cycle.findings = []
    except ParsingError as exc:
        cycle.artifact = None
        cycle.findings = [str(exc) + (" (the answer was cut off at the token limit)"
                                      if gen.finish_reason == "length" else "")]
    return psm._next(ctx, "SYNTHESIZING"), _exchange_fields(cycle)


def validating(psm: PrototypalStateMachine, cycle: CognitiveCycle, ctx: dict):
    if cycle.artifact is not None:
        report = guardian.audit(cycle.artifact, cycle.selector,
                                max_bytes=psm.settings.MAX_SOURCE_BYTES)
        cycle.findings = list(report.findings)
        if report.ok:
            mission = cycle.mission
            problem = report.accepts(len(mission.get("args") or []), (mission.get("kwargs") or {}))
            if problem:
                cycle.findings.append(problem)
    if not cycle.findings:
        return psm._next(ctx, "VALIDATING"), {"findings": []}
    if cycle.attempts <= psm.settings.CYCLE_RETRIES:
        return "SYNTHESIZING", {"findings": cycle.findings, "retry": True}
    raise AuditError("the method was refused: " + "; ".join(cycle.findings))


def complete(psm: PrototypalStateMachine, cycle: CognitiveCycle, ctx: dict):
    def install(s: Any) -> None:
        target = s.get(cycle.target_oid)
        target._install(cycle.selector, cycle.artifact, origin="cycle", cycle_id=cycle.cycle_id)
        s.root["cycles"][cycle.cycle_id] = PersistentMapping({
            "target": cycle.target_oid, "selector": cycle.selector, "persona": cycle.persona,
            "mission": dict(cycle.mission), "transitions": [st for st, _ in cycle.history],
            "started_at": cycle.started_at, "finished_at": time.time(),
            "attempts": cycle.attempts, "source": cycle.artifact})

    try:
        psm.image.transact(install, note=f"cycle {cycle.cycle_id}: install {cycle.selector}")
    except BatosError as exc:
        raise InstallError(exc.message) from exc
    if psm.learned is not None:
        doc = guardian.audit(cycle.artifact, cycle.selector).doc
        psm.learned(cycle.target_oid, cycle.selector, cycle.artifact, doc)
    psm.emit({"event": "cycle_end", "cycle_id": cycle.cycle_id, "state": "COMPLETE",
              "target": cycle.target_oid, "selector": cycle.selector, "persona": cycle.persona,
              "ts": time.time(), "duration_s": round(time.time() - cycle.started_at, 3),
              "artifact": cycle.artifact, "attempts": cycle.attempts})
    return "", {}


PROCESSES: dict[str, Callable[..., tuple[str, dict]]] = {
    "IDLE": idle, "DECOMPOSING": decomposing, "DELEGATING": delegating,
    "SYNTHESIZING": synthesizing, "VALIDATING": validating, "COMPLETE": complete,
}


def _exchange_fields(cycle: CognitiveCycle) -> dict:
    if not cycle.exchanges:
        return {}
    x = cycle.exchanges[-1]
    return {"asked": x.persona, "model": x.model, "prompt_chars": x.prompt_chars,
            "answer_chars": x.answer_chars, "prompt_tokens": x.prompt_tokens,
            "completion_tokens": x.completion_tokens, "llm_s": x.seconds,
            "load_s": x.load_seconds}
