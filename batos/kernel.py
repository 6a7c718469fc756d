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
import functools
import logging
import os
import threading
import time
import uuid
from typing import Any, Callable

import config
from batos import __version__, genesis, guardian, plain
from batos.examples import Outcome
from batos.image import Image, Session
from batos.knowledge import Knowledge
from batos.llm import Models
from batos.metalog import MetacognitionLog
from batos.protocol import MissionBrief, to_wire
from batos.psm import CycleResult, PrototypalStateMachine
from batos.sandbox.pool import MethodFailed, MethodTimedOut, SandboxPool
from batos.shutdown import Shutdown
from batos.threads import ThreadPool
from batos.uvm import Method, NotUnderstood

log = logging.getLogger("batos.kernel")
Progress = Callable[[dict], None] | None
CONFLICT_RETRIES = 5    # a call whose object changed under it runs again this many times


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

    def _stop_cycles(self) -> None:
        """Shutdown: running cycles stop at their next step and end FAILED."""
        for cancel in list(self._cancels):
            cancel.set()

    async def send(self, target_oid: str, selector: str, args: list, kwargs: dict,
                   progress: Progress = None) -> dict:
        try:
            return {"value": await self._invoke(target_oid, selector, args, kwargs)}
        except NotUnderstood as nu:
            brief = nu.brief
        result = await self.run_cycle(target_oid, brief, progress)
        if result["state"] != "COMPLETE":
            raise CycleFailed(target_oid, selector, result)
        try:
            value = await self._invoke(target_oid, selector, args, kwargs)
        except NotUnderstood:
            raise RuntimeError(f"the cycle {result['cycle_id']} completed but '{selector}' "
                               "is still not understood") from None
        return {"value": value, "cycle_id": result["cycle_id"]}

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


def _own_examples(obj: Any, selector: str) -> list[list]:
    """The examples of the method ``selector`` in ``obj``'s own slots (what a replacement
    must still answer), or none."""
    method = obj._slots.get(selector)
    return [[list(a), e] for a, e in (getattr(method, "examples", None) or [])] \
        if isinstance(method, Method) else []
