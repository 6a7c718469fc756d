"""The kernel: the service behind the protocol's commands.

It holds the Living Image, the models, the state machine, the knowledge service
and the sandbox, and offers one coroutine per command.  Work on the image runs
off the event loop: quick work (commits, installs, reads) on the kernel threads,
cognitive cycles on the cycle threads, each thread with its own ZODB connection;
installed methods run in the sandbox's worker processes.  It knows nothing of
sockets or the wire: it raises its own exceptions (below, and the lower layers'),
and ``batos/errors.py`` maps them to protocol errors where replies are built.
The entry module (``batos/app.py``) starts it, serves it and stops it.
"""
from __future__ import annotations

import asyncio
import collections
import functools
import logging
import os
import random
import threading
import time
import uuid
from typing import Any, Callable

import config
import persistent
from batos import __version__, genesis, guardian, plain
from batos.examples import Outcome
from batos.image import Image, Session
from batos.knowledge import Knowledge
from batos.llm import Models
from batos.metalog import MetacognitionLog
from batos.protocol import MissionBrief, to_wire
from batos.psm import CycleResult, PrototypalStateMachine
from batos.sandbox.pool import MethodFailed, MethodNeeds, MethodTimedOut, SandboxPool
from batos.shutdown import Shutdown
from batos.threads import ThreadPool
from batos.uvm import Method, NotUnderstood

log = logging.getLogger("batos.kernel")
Progress = Callable[[dict], None] | None
CONFLICT_RETRIES = 10   # a call whose object changed under it runs again this many times,
CONFLICT_PAUSE_S = 0.002  # after a jittered pause that doubles each time (other kernels on a shared image)
RECENT_CYCLES = 20      # cycles the system view shows
SYSTEM_VIEW_OBJECTS = 200
SYSTEM_PARAM = "system"  # a method with a parameter of this name is passed the system view


class ShuttingDown(Exception):
    """The kernel is stopping and takes no new work."""


class CycleQueueFull(Exception):
    """CYCLE_QUEUE_MAX cycles are already waiting or running."""


class NotAMethod(Exception):
    """A data slot was sent arguments as if it were a method."""


class InstallRefused(Exception):
    """The PersistenceGuardian refused the Architect's method, or it failed its examples."""

    def __init__(self, findings: list[str], examples: list[dict] | None = None,
                 who: str = "the PersistenceGuardian refused the method"):
        super().__init__(f"{who}: " + "; ".join(findings))
        self.result = {"state": "FAILED", "findings": list(findings), "examples": list(examples or [])}
        self.details = {"findings": list(findings)}


class BadObject(ValueError):
    """``create_object`` or ``clone`` was given what no object may have."""


class NestedLimit(Exception):
    """A request needed more nested cognitive cycles than NESTED_CYCLE_DEPTH or
    NESTED_CYCLE_BUDGET allow."""

    def __init__(self, message: str, chain: list[str]):
        super().__init__(message)
        self.details = {"chain": list(chain)}


class CycleFailed(Exception):
    """The cycle that was to teach an object a selector FAILED."""

    def __init__(self, target_oid: str, selector: str, result: dict):
        super().__init__(f"{target_oid} does not understand '{selector}', and the cognitive cycle "
                         f"{result['cycle_id']} that tried to teach it FAILED: {result.get('reason')}")
        self.result = result
        self.details = {"cycle_id": result["cycle_id"]}


class Kernel:
    def __init__(self, settings: config.Settings, shutdown: Shutdown | None = None):
        self.settings = settings
        self.shutdown = shutdown or Shutdown()
        self.started = time.monotonic()
        self.image = Image.open(settings, pool_size=settings.KERNEL_THREADS + settings.CYCLE_WORKERS + 4)
        self.created_oids = self.image.bootstrap(genesis.incarnate)
        self.models = Models(settings, self.image, emit=self._emit_threadsafe)
        self.knowledge = Knowledge(settings, self.image, emit=self._emit_threadsafe)
        self.psm = PrototypalStateMachine(self.image, self.models, settings, emit=self._emit_threadsafe,
                                          learned=self._learn_threadsafe, runner=self._try_threadsafe)
        self.knowledge.on_loaded = self.psm.use_memory
        self.threads: ThreadPool | None = None        # commits, installs, reads (started with the loop)
        self.cycle_threads: ThreadPool | None = None  # cognitive cycles
        self.sandbox: SandboxPool | None = None       # the processes installed methods run in
        self.loop: asyncio.AbstractEventLoop | None = None
        self.metalog: MetacognitionLog | None = None
        self._cycles: dict[tuple[str, str], asyncio.Future] = {}   # {(oid, selector) -> result future}
        self._listeners: dict[str, list[Callable[[dict], None]]] = {}  # {cycle_id -> progress callbacks}
        self._cancels: set[threading.Event] = set()                 # running cycles' stop flags
        self._queued_cycles = 0
        self._recent_cycles: collections.deque[dict] = collections.deque(maxlen=RECENT_CYCLES)
        from batos.autotelic import Autotelic
        self.autotelic = Autotelic(self)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.threads = ThreadPool(self.loop, self.settings.KERNEL_THREADS, "batos-thread")
        self.cycle_threads = ThreadPool(self.loop, self.settings.CYCLE_WORKERS, "batos-cycle")
        self.sandbox = SandboxPool(self.settings)   # starts its warm workers
        self.metalog = MetacognitionLog(self.settings.log_path)
        self.metalog.write({"event": "kernel_start", "pid": os.getpid(), "version": __version__,
                            "image": self.image.path, "created": self.created_oids})
        self.knowledge.start(self.loop)
        self.shutdown.on_request(self._stop_cycles)
        self.autotelic.start()
        self.loop.run_in_executor(None, self._check_models)

    def _check_models(self) -> None:
        """Say at start which persona models cannot be had (off the loop; nothing downloads)."""
        try:
            problems = self.models.check_sources()
        except Exception as exc:   # a check must never stop the kernel
            log.warning("kernel: could not check the persona models: %s: %s", type(exc).__name__, exc)
            return
        for problem in problems:
            log.warning("kernel: %s", problem["message"])
            self._emit_threadsafe({"event": "model_missing", **problem})

    # -- events ---------------------------------------------------------------------
    def _emit_threadsafe(self, event: dict) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._dispatch_event, event)

    def _dispatch_event(self, event: dict) -> None:
        if self.metalog is not None:
            self.metalog.write(event)
        _narrate(event)
        if event.get("event") == "cycle_end" and not event.get("practice"):
            self._recent_cycles.append({k: event.get(k) for k in
                                        ("cycle_id", "target", "selector", "state", "duration_s", "persona")})
            self.knowledge.record_cycle(event)
        if event.get("event") == "state":
            for listener in self._listeners.get(event.get("cycle_id"), ()):
                listener(event)

    def _learn_threadsafe(self, target_oid: str, selector: str, source: str, doc: str) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.knowledge.learn, target_oid, selector, source, doc)

    # -- running work off the loop ------------------------------------------------------
    async def in_thread(self, fn: Callable[[], Any]) -> Any:
        return await self.threads.submit(fn)

    def _read(self, fn: Callable[[Session], Any]) -> Any:
        with self.image.reading() as s:
            return fn(s)

    # -- the commands ---------------------------------------------------------------
    def ping(self) -> dict:
        return {"pong": True, "version": __version__, "uptime_s": round(time.monotonic() - self.started, 3),
                "pid": os.getpid(), "protocol": 1, "cycles_running": len(self._cancels),
                "sandbox": self.sandbox.status() if self.sandbox is not None else None}

    async def run_cycle(self, target_oid: str, brief: MissionBrief, progress: Progress = None) -> dict:
        await self.in_thread(lambda: self._read(lambda s: s.get(target_oid)) and None)
        key = (target_oid, brief.selector)
        fut = self._cycles.get(key)
        if fut is None:
            if self._queued_cycles >= self.settings.CYCLE_QUEUE_MAX:
                raise CycleQueueFull(f"{self._queued_cycles} cognitive cycles are already waiting; "
                                     "try again later")
            fut = self._start_cycle(target_oid, brief)
        cycle_id = fut.cycle_id  # type: ignore[attr-defined]
        if progress is not None:
            self._listeners.setdefault(cycle_id, []).append(progress)
        try:
            result: CycleResult = await asyncio.shield(fut)
            return result.wire()
        finally:
            if progress is not None and cycle_id in self._listeners:
                self._listeners[cycle_id].remove(progress)

    def _start_cycle(self, target_oid: str, brief: MissionBrief) -> asyncio.Future:
        cycle_id = uuid.uuid4().hex[:12]
        key = (target_oid, brief.selector)
        cancel = threading.Event()
        if self.shutdown.requested:
            cancel.set()

        def work() -> CycleResult:
            self._cancels.add(cancel)
            try:
                return self.psm.run(cycle_id, target_oid, brief, cancel)
            finally:
                self._cancels.discard(cancel)

        self._queued_cycles += 1
        fut = self.cycle_threads.submit(work)
        fut.cycle_id = cycle_id  # type: ignore[attr-defined]

        def done(_f: asyncio.Future) -> None:
            self._queued_cycles -= 1
            self._cycles.pop(key, None)
            self._listeners.pop(cycle_id, None)

        fut.add_done_callback(done)
        self._cycles[key] = fut
        return fut

    def note_request(self, command: str) -> None:
        self.autotelic.note_request(command)

    def _stop_cycles(self) -> None:
        """Shutdown: running cycles stop at their next step and end FAILED."""
        self.autotelic.stop()
        for cancel in list(self._cancels):
            cancel.set()

    async def send(self, target_oid: str, selector: str, args: list, kwargs: dict,
                   progress: Progress = None) -> dict:
        """Call a method; teach the object what it does not understand on the way.

        A selector the object lacks starts a cognitive cycle, and so does a ``self.x(...)``
        inside a method that the object lacks (doesNotUnderstand inside methods): the
        call stopped there having committed nothing, the cycle writes ``x`` (its mission
        built from the calling method and the call), and the original call runs again
        from the start.  Bounded per request: ``NESTED_CYCLE_DEPTH`` (a method written
        for a method written for ... the call) and ``NESTED_CYCLE_BUDGET`` cycles."""
        taught: list[str] = []            # cycle ids, in order
        depth: dict[str, int] = {selector: 0}   # how far each selector is from the call
        chain: list[str] = []
        while True:
            try:
                value = await self._invoke(target_oid, selector, args, kwargs)
                break
            except NotUnderstood as nu:
                if nu.brief.selector != selector or taught:
                    raise RuntimeError(f"'{nu.brief.selector}' is still not understood after "
                                       f"the cycles {', '.join(taught)}") from None
                brief, level = nu.brief, 0
            except MethodNeeds as need:
                brief, level = await self._nested_brief(target_oid, need.needs, depth, chain)
            if len(taught) >= self.settings.NESTED_CYCLE_BUDGET:
                raise NestedLimit(f"{target_oid}.{selector} needed more than NESTED_CYCLE_BUDGET="
                                  f"{self.settings.NESTED_CYCLE_BUDGET} cognitive cycles "
                                  f"({' -> '.join(chain + [brief.selector])}); nothing was saved", chain)
            chain.append(brief.selector)
            depth[brief.selector] = level
            result = await self.run_cycle(target_oid, brief, progress)
            if result["state"] != "COMPLETE":
                raise CycleFailed(target_oid, brief.selector, result)
            taught.append(result["cycle_id"])
        out = {"value": value}
        if taught:
            out["cycle_id"] = taught[0] if chain[0] == selector else taught[-1]
            if len(taught) > 1 or chain[0] != selector:
                out["cycles"] = [{"selector": s, "cycle_id": c} for s, c in zip(chain, taught)]
        return out

    async def _nested_brief(self, target_oid: str, needs: dict, depth: dict[str, int],
                            chain: list[str]) -> tuple[MissionBrief, int]:
        """The mission for a method another method called without having it."""
        name, caller = needs["selector"], needs["caller"]
        level = depth.get(caller, 0) + 1
        if name in depth:     # already written in this request, and still missing: a loop
            raise NestedLimit(f"{target_oid}.{caller} still calls the missing '{name}' after a cycle "
                              "wrote it; giving up", chain)
        if level > self.settings.NESTED_CYCLE_DEPTH:
            raise NestedLimit(f"{target_oid}.{caller} calls the missing '{name}', which would be a "
                              f"method written {level} levels deep for this call (NESTED_CYCLE_DEPTH="
                              f"{self.settings.NESTED_CYCLE_DEPTH}): "
                              f"{' -> '.join(chain + [name])}; nothing was saved", chain)
        try:
            args = plain.from_tree(needs.get("args") or ["l"])
            kwargs = plain.from_tree(needs.get("kwargs") or ["d"])
        except Exception as exc:
            raise MethodFailed(f"{target_oid}.{caller} called the missing '{name}' with arguments "
                               f"that are not plain data: {exc}", exception="NotUnderstood") from None

        def read(s: Session) -> tuple[str, str]:
            found = s.get(target_oid)._find_slot(caller)
            method = found[1] if found is not None else None
            return (method.source, method.doc) if isinstance(method, Method) else ("", "")
        source, doc = await self.in_thread(lambda: self._read(read))
        from batos.uvm import _example, _example_call
        call = _example_call(name, list(args), dict(kwargs))[:500]
        intent = (f"The method {caller} of this object calls self.{call}, which does not exist yet. "
                  f"Write {name} so that {caller} works" + (f" ({caller}: {doc})" if doc else "")
                  + f". The calling method:\n{source.strip()[:2500]}")
        brief = MissionBrief(selector=name, args=[f"arg{i}" for i in range(len(args))],
                             kwargs={k: _example(v) for k, v in kwargs.items() if isinstance(k, str)},
                             intent=intent[:4000], example_call=call)
        return brief, level

    async def _invoke(self, target_oid: str, selector: str, args: list, kwargs: dict) -> Any:
        """Call a method in a sandbox worker and store what it changed.

        The object is read on the event loop (a ZODB read of cached objects takes
        microseconds), so a call that changes nothing costs no thread hand-off.  Changes
        are committed on a kernel thread, only if the object's slots are still the ones
        the call saw; otherwise the call runs again on the new state (as a ZODB conflict
        would), up to ``CONFLICT_RETRIES`` times.
        """
        label = f"{target_oid}.{selector}"
        try:
            call_args = plain.to_tree(list(args)), plain.to_tree(dict(kwargs))
        except plain.NotPlain as exc:
            raise plain.NotPlain(f"the arguments are not plain data: {exc}") from None
        for _attempt in range(CONFLICT_RETRIES + 1):
            with self.image.reading() as s:
                obj = s.get(target_oid)
                found = obj._find_slot(selector)
                if found is None:
                    obj._doesNotUnderstand_(selector, args, kwargs)
                if not isinstance(found[1], Method):
                    if args or kwargs:
                        raise NotAMethod(f"'{selector}' on {target_oid} is a data slot "
                                         f"({type(found[1]).__name__}), not a method")
                    return to_wire(found[1])
                position = _param_position(found[1], SYSTEM_PARAM)
                if position is not None and len(args) <= position and SYSTEM_PARAM not in kwargs:
                    # the method asks for the system's state: a plain-data view, passed in
                    call_args = call_args[0], plain.to_tree({**kwargs, SYSTEM_PARAM: self._system_view(s)})
                view, sources = obj._sandbox_view()
                seen = obj._state_serial()
            request = {"oid": target_oid, "selector": selector, "args": call_args[0],
                       "kwargs": call_args[1], **view}
            reply = await self.sandbox.call(request, sources, label)
            if not reply["changes"] and not reply["deleted"]:
                return reply.get("value")
            commit = functools.partial(self._commit_call, target_oid, seen, view, reply, label)
            if await self.in_thread(functools.partial(self.image.transact, commit, note=f"send {label}")):
                return reply.get("value")
            log.info("kernel: %s: the object changed during the call; running it again", label)
            await asyncio.sleep(random.uniform(0.5, 1.0) * min(0.25, CONFLICT_PAUSE_S * 2 ** _attempt))
        raise RuntimeError(f"{label}: the object kept changing under the call; gave up after "
                           f"{CONFLICT_RETRIES + 1} attempts")

    @staticmethod
    def _commit_call(target_oid: str, seen: bytes, view: dict, reply: dict, label: str,
                     s: Session) -> bool:
        """Store a call's changes if the object's slots are still those the call saw."""
        obj = s.get(target_oid)
        if obj._state_serial() != seen:
            return False
        obj._apply_changes(view, reply["changes"], reply["deleted"], label)
        return True

    def system_view(self) -> dict:
        """The system's state as plain data (what a ``system`` parameter is given)."""
        with self.image.reading() as s:
            return self._system_view(s)

    def _system_view(self, s: Session) -> dict:
        objects = []
        for oid, obj in list(s.root["objects"].items())[:SYSTEM_VIEW_OBJECTS]:
            objects.append({"oid": oid, "name": str(obj._slots.get("name", "")),
                            "parents": [p._label() for p in obj._slots.get("parents", ())],
                            "methods": sorted(k for k, v in obj._slots.items() if isinstance(v, Method)),
                            "slots": sorted(k for k, v in obj._slots.items()
                                            if k not in ("name", "parents") and not isinstance(v, Method))})
        return {"version": __version__, "uptime_s": round(time.monotonic() - self.started, 1),
                "objects": objects, "object_count": len(s.root["objects"]),
                "recent_cycles": list(self._recent_cycles)}

    async def try_method(self, target_oid: str, selector: str, source: str,
                         calls: list[list]) -> list[Outcome]:
        """Run ``source`` as ``target_oid``'s ``selector`` on each ``[args, expected]`` in
        order, in the sandbox, on one scratch copy of the object's slots: each call sees what
        the ones before it changed; nothing is committed."""
        with self.image.reading() as s:
            view, sources = s.get(target_oid)._sandbox_view()
        import hashlib
        digest = "cand-" + hashlib.sha256(f"{selector}\0{source}".encode()).hexdigest()[:24]
        view["methods"][selector] = digest
        sources[digest] = (selector, source, f"{target_oid}.{selector} (candidate)")
        view["slots"] = dict(view["slots"])
        label = f"{target_oid}.{selector}"
        outcomes = []
        for args, expected in calls:
            outcome = Outcome(list(args), expected)
            try:
                request = {"oid": target_oid, "selector": selector, "args": plain.to_tree(list(args)),
                           "kwargs": plain.to_tree({}), **view}
                reply = await self.sandbox.call(request, sources, label)
            except (MethodFailed, MethodTimedOut, plain.NotPlain) as exc:
                outcome.error = str(exc)
            else:
                outcome.actual = reply.get("value")
                outcome.changed = sorted(set(reply["changes"]) | set(reply["deleted"]))
                view["slots"].update(reply["changes"])
                for name in reply["deleted"]:
                    view["slots"].pop(name, None)
                view["own"] = sorted(set(view["own"]) | set(reply["changes"]))
            outcomes.append(outcome)
        return outcomes

    def _try_threadsafe(self, target_oid: str, selector: str, source: str, calls: list[list]) -> list[Outcome]:
        """``try_method`` from a cycle's thread."""
        fut = asyncio.run_coroutine_threadsafe(self.try_method(target_oid, selector, source, calls), self.loop)
        limit = (self.settings.METHOD_TIMEOUT_S + self.settings.SANDBOX_KILL_GRACE_S
                 + self.settings.SANDBOX_START_TIMEOUT_S) * (len(calls) + 1)
        return fut.result(timeout=limit)

    async def install(self, target_oid: str, selector: str, source: str,
                      examples: list | None = None) -> dict:
        event = {"event": "install", "target": target_oid, "selector": selector}
        report = guardian.audit(source, selector, max_bytes=self.settings.MAX_SOURCE_BYTES)
        self.metalog.write({**event, "state": "VALIDATING", "source_chars": len(source)})
        if not report.ok:
            self.metalog.write({**event, "state": "FAILED", "findings": report.findings})
            raise InstallRefused(report.findings)
        kept = await self.in_thread(lambda: self._read(lambda s: _own_examples(s.get(target_oid), selector)))
        given = [[list(a), e] for a, e in (examples or [])]
        # the replaced method's examples run again, except where the Architect gave a new
        # expectation for the same arguments
        to_run = given + [x for x in kept if all(x[0] != g[0] for g in given)]
        outcomes = await self.try_method(target_oid, selector, source, to_run) if to_run else []
        failed = [o for o in outcomes if not o.passed]
        if failed:
            findings = [o.feedback(selector) for o in failed]
            self.metalog.write({**event, "state": "FAILED", "findings": findings})
            who = ("the method fails the examples of the one it would replace"
                   if any(o.args == k[0] for o in failed for k in kept) else "the method fails its examples")
            raise InstallRefused(findings, [o.wire() for o in outcomes], who=who)
        keep = to_run

        def body(s: Session) -> None:
            s.get(target_oid)._install(selector, source, origin="architect", report=report, examples=keep)
        try:
            await self.in_thread(lambda: self.image.transact(body, note=f"install {target_oid}.{selector}"))
        except Exception as exc:
            self.metalog.write({**event, "state": "FAILED", "reason": str(exc)})
            raise
        self.metalog.write({**event, "state": "COMPLETE", "artifact": source, "examples": len(outcomes)})
        self.knowledge.learn(target_oid, selector, source, report.doc)
        return {"state": "COMPLETE", "findings": [], "examples": [o.wire() for o in outcomes]}

    async def describe(self, target_oid: str) -> dict:
        def body(s: Session) -> dict:
            obj = s.get(target_oid)
            return {
                "oid": target_oid, "name": str(obj._slots.get("name", "")),
                "parents": [p._label() for p in obj._slots.get("parents", ())],
                "slots": {k: type(v).__name__ for k, v in obj._slots.items()
                          if k not in ("parents",) and not isinstance(v, Method)},
                "methods": [{"selector": sel, "signature": m.signature, "doc": m.doc,
                             "owner": owner._label(), "examples": list(getattr(m, "examples", None) or [])}
                            for sel, owner, m in obj._methods()],
            }
        return await self.in_thread(lambda: self._read(body))

    async def create_object(self, name: str | None, parents: list[str], slots: dict) -> dict:
        """A new UvmObject delegating to ``parents`` with the plain-data ``slots``."""
        if len(set(parents)) != len(parents):
            raise BadObject(f"create_object: a parent is named twice: {parents}")
        values = {}
        for key, value in slots.items():
            if not key.isidentifier() or key.startswith("_") or key in ("name", "parents"):
                raise BadObject(f"create_object: {key!r} is not a slot name an object may be given "
                                "(an identifier, not private, not 'name' or 'parents')")
            try:
                values[key] = plain.decode(plain.encode(value))
            except plain.NotPlain as exc:
                raise BadObject(f"create_object: the slot {key!r} is not plain data: {exc}") from None

        def body(s: Session) -> dict:
            objects = s.root["objects"]
            missing = [p for p in parents if p not in objects]
            if missing:
                raise BadObject(f"create_object: no parent object {', '.join(map(repr, missing))} "
                                "in the image (list_objects shows them)")
            from batos.uvm import UvmObject
            obj = UvmObject(name or "object", parents=tuple(objects[p] for p in parents), **values)
            return self._register(s, obj, name)
        ref = await self.in_thread(lambda: self.image.transact(body, note="create_object"))
        self.metalog.write({"event": "object_created", **ref, "parents": parents, "slots": sorted(values)})
        return ref

    async def clone(self, target_oid: str, name: str | None) -> dict:
        """A new object with a shallow copy of ``target_oid``'s slots and the same parents."""
        def body(s: Session) -> dict:
            from persistent.list import PersistentList

            from batos.uvm import UvmObject
            original = s.get(target_oid)
            obj = UvmObject(name or f"{original._slots.get('name') or target_oid} copy",
                            parents=tuple(original._slots.get("parents") or ()))
            for key, value in original._slots.items():
                if key in ("name", "parents"):
                    continue
                if isinstance(value, Method) or isinstance(value, persistent.Persistent):
                    obj._slots[key] = value if not isinstance(value, PersistentList) else PersistentList(value)
                    continue
                try:
                    obj._slots[key] = plain.decode(plain.encode(value))   # a copy: no shared lists
                except plain.NotPlain:
                    obj._slots[key] = value
            return self._register(s, obj, name)
        ref = await self.in_thread(lambda: self.image.transact(body, note=f"clone {target_oid}"))
        self.metalog.write({"event": "object_created", **ref, "clone_of": target_oid})
        return ref

    @staticmethod
    def _register(s: Session, obj: Any, name: str | None) -> dict:
        """Give ``obj`` a new oid (from its name) and add it to the image's objects."""
        import re
        stem = re.sub(r"[^a-z0-9]+", "_", (name or "object").lower()).strip("_")[:40] or "object"
        objects = s.root["objects"]
        oid = f"{stem}_{uuid.uuid4().hex[:8]}"
        while oid in objects:
            oid = f"{stem}_{uuid.uuid4().hex[:8]}"
        obj._oid = oid
        objects[oid] = obj
        return {"oid": oid, "name": str(obj._slots.get("name", ""))}

    async def list_adaptations(self) -> dict:
        from batos import autotelic
        return {"adaptations": await self.in_thread(lambda: self._read(lambda s: autotelic.list_adaptations(s.root)))}

    async def revert_adaptation(self, adaptation_id: str) -> dict:
        from batos import autotelic

        def body(s: Session) -> dict:
            try:
                return autotelic.revert(s.root, adaptation_id)
            except KeyError:
                raise BadObject(f"revert_adaptation: no adaptation {adaptation_id!r} "
                                "(list_adaptations shows them)") from None
            except autotelic.BadProposal as exc:
                raise BadObject(f"revert_adaptation: {exc}") from None
        done = await self.in_thread(lambda: self.image.transact(body, note=f"revert adaptation {adaptation_id}"))
        self.metalog.write({"event": "adaptation_reverted", "id": adaptation_id})
        return done

    async def list_objects(self) -> list:
        def body(s: Session) -> list:
            return [{"oid": oid, "name": str(obj._slots.get("name", ""))}
                    for oid, obj in s.root["objects"].items()]
        return await self.in_thread(lambda: self._read(body))

    async def ingest_knowledge(self, text: str, source: str, kind: str, replace: bool) -> dict:
        self.knowledge.require()        # before a thread is taken: disabled or loading
        result = await self.in_thread(lambda: self.knowledge.ingest(text, source, kind, replace))
        self.metalog.write({"event": "ingest", "source": source, "kind": kind, "chunks": result["chunks"]})
        return result

    async def search_knowledge(self, query: str, k: int, kind: str | None) -> dict:
        self.knowledge.require()
        return await self.in_thread(lambda: self.knowledge.search(query, k, kind))

    async def ingest_lora(self, name: str | None, persona: str | None) -> dict:
        adapters = await self.in_thread(lambda: self.models.ingest_loras(name, persona))
        return {"adapters": adapters, "persona": persona}

    async def parser_model(self) -> dict:
        return await self.in_thread(self.models.parser_model)

    # -- closing ----------------------------------------------------------------------
    async def close(self) -> None:
        """After a shutdown request and the server's drain: wait for cycles, then close."""
        await self.autotelic.aclose()
        pending = [f for f in self._cycles.values() if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=self.settings.SHUTDOWN_TIMEOUT_S)
        self.threads.shutdown(self.settings.KERNEL_THREADS)
        self.cycle_threads.shutdown(self.settings.CYCLE_WORKERS)
        self.knowledge.close()
        await self.sandbox.close()
        if self.metalog is not None:
            self.metalog.write({"event": "kernel_stop", "pid": os.getpid()})
            await self.metalog.close()
        await asyncio.get_running_loop().run_in_executor(None, self.models.close)
        self.image.close()


def _param_position(method: Method, name: str) -> int | None:
    """Where the parameter ``name`` comes among a method's arguments (self not counted),
    or None when it has none of that name."""
    params = getattr(method, "_v_params", None)
    if params is None:
        import ast
        try:
            fn = ast.parse(method.source).body[0]
            params = [a.arg for a in fn.args.posonlyargs + fn.args.args][1:] + \
                [a.arg for a in fn.args.kwonlyargs]
        except (SyntaxError, IndexError, AttributeError):
            params = []
        method._v_params = params
    return params.index(name) if name in params else None


NARRATED = ("DECOMPOSING", "DELEGATING", "SYNTHESIZING", "VALIDATING", "COMPLETE", "FAILED")


def _narrate(event: dict) -> None:
    """kernel.log, for the Architect who watches the kernel's terminal: a line per state of
    each cycle, with the persona and the time."""
    kind = event.get("event")
    if kind == "state" and event.get("state") in NARRATED:
        extra = ""
        if event.get("findings"):
            extra = "  findings: " + "; ".join(event["findings"])[:160]
        log.info("cycle %s %s.%s %-12s %-6s %5.1fs%s", str(event.get("cycle_id"))[:8], event.get("target"),
                 event.get("selector"), event.get("state"), event.get("asked") or event.get("persona") or "",
                 float(event.get("duration_s") or 0), extra)
    elif kind == "cycle_end":
        log.info("cycle %s %s.%s ended %s in %.1fs%s", str(event.get("cycle_id"))[:8], event.get("target"),
                 event.get("selector"), event.get("state"), float(event.get("duration_s") or 0),
                 f": {event.get('reason')}" if event.get("reason") else "")
    elif kind in ("genesis", "codex_ingested", "model_missing"):
        log.info("%s: %s", kind, {k: v for k, v in event.items() if k not in ("event", "ts")})


def _own_examples(obj: Any, selector: str) -> list[list]:
    """The examples of the method ``selector`` in ``obj``'s own slots (what a replacement
    must still answer), or none."""
    method = obj._slots.get(selector)
    return [[list(a), e] for a, e in (getattr(method, "examples", None) or [])] \
        if isinstance(method, Method) else []
