"""The kernel: wiring of the image, the models, the state machine and the server.

Work on the image runs off the event loop: quick work (sends, installs,
describes) in a pool of method workers, cognitive cycles in a pool of cycle
workers, each thread with its own ZODB connection.  The loop itself only
decodes, dispatches and replies, so ``ping`` is answered while a cycle runs.
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import config
from batos import __version__, codex, genesis, guardian, plain
from batos.errors import BadRequest, Busy, Internal, MethodError, Rejected
from batos.image import Image, ImageError, Session
from batos.llm import GenerationError, Models, ModelUnavailable
from batos.metalog import MetacognitionLog
from batos.protocol import to_wire
from batos.psm import PrototypalStateMachine
from batos.sandbox.pool import SandboxPool
from batos.uvm import Method, NotUnderstood
from batos.workers import WorkerPool

log = logging.getLogger("batos.kernel")
Progress = Callable[[dict], None] | None
CONFLICT_RETRIES = 5    # a call whose object changed under it runs again this many times


class Kernel:
    def __init__(self, settings: config.Settings):
        self.settings = settings
        self.started = time.monotonic()
        self.image = Image.open(settings, pool_size=settings.METHOD_WORKERS + settings.CYCLE_WORKERS + 4)
        self.created_oids = self.image.bootstrap(genesis.incarnate)
        self.models = Models(settings, self.image, emit=self._emit_threadsafe)
        self.memory = None   # the FractalMemory, loaded in the background after start
        self.psm = PrototypalStateMachine(self.image, self.models, settings, emit=self._emit_threadsafe,
                                          memory=self.memory, learned=self._learn_threadsafe)
        self.method_pool: WorkerPool | None = None   # started with the loop
        self.cycle_pool: WorkerPool | None = None
        self.memory_pool: WorkerPool | None = None   # background ingestion (codex, skills)
        self.sandbox: SandboxPool | None = None       # the processes installed methods run in
        self.loop: asyncio.AbstractEventLoop | None = None
        self.metalog: MetacognitionLog | None = None
        self.stopping = False
        self._cycles: dict[tuple[str, str], asyncio.Future] = {}   # {(oid, selector) -> result future}
        self._listeners: dict[str, list[Callable[[dict], None]]] = {}  # {cycle_id -> progress callbacks}
        self._cancels: set[threading.Event] = set()                 # running cycles' stop flags
        self._queued_cycles = 0

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.method_pool = WorkerPool(self.loop, self.settings.METHOD_WORKERS, "batos-method")
        self.cycle_pool = WorkerPool(self.loop, self.settings.CYCLE_WORKERS, "batos-cycle")
        self.memory_pool = WorkerPool(self.loop, 1, "batos-memory")
        self.sandbox = SandboxPool(self.settings)   # starts its warm workers
        self.metalog = MetacognitionLog(self.settings.log_path)
        self.metalog.write({"event": "kernel_start", "pid": os.getpid(), "version": __version__,
                            "image": self.image.path, "created": self.created_oids})
        if self.settings.MEMORY_ENABLED:
            self._background(self._load_memory, "loading the Fractal Memory")
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

    # -- the Fractal Memory -------------------------------------------------------------
    def _background(self, fn: Callable[[], Any], what: str) -> None:
        """Run ``fn`` on the memory worker (call on the loop); failures are logged."""
        def done(fut: asyncio.Future) -> None:
            if not fut.cancelled() and fut.exception() is not None:
                exc = fut.exception()
                log.error("kernel: %s failed: %s: %s", what, type(exc).__name__, exc)
                self.metalog.write({"event": "memory_error", "what": what, "error": str(exc)})
        self.memory_pool.submit(fn).add_done_callback(done)

    def _load_memory(self) -> None:
        """Off the start path (numpy, zope.index): then the codex, once per version."""
        from batos.memory import FractalMemory
        self.memory = self.psm.memory = FractalMemory(self.settings)
        self._ingest_codex()

    def _ingest_codex(self) -> None:
        """Ingest the Persona Codex once per codex version (in the background)."""
        with self.image.reading() as s:
            if s.root["batos"].get("codex") == codex.version():
                return
        t0 = time.monotonic()
        prepared = [(f"codex:{title}", self.memory.prepare(f"{title}\n\n{body}"))
                    for title, body in codex.sections()]

        def body(s: Session) -> int:
            n = 0
            for source, (chunks, vectors) in prepared:
                n += len(self.memory.ingest(s.root, chunks, vectors, source, kind="codex", replace=True))
            s.root["batos"]["codex"] = codex.version()
            return n
        n = self.image.transact(body, note="ingest the Persona Codex")
        self._emit_threadsafe({"event": "codex_ingested", "version": codex.version(), "chunks": n,
                               "seconds": round(time.monotonic() - t0, 3)})

    def _learn_threadsafe(self, target_oid: str, selector: str, source: str, doc: str) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._learn, target_oid, selector, source, doc)

    def _learn(self, target_oid: str, selector: str, source: str, doc: str) -> None:
        """The skill library: an installed method is ingested into the memory.  The memory
        worker is serial, so a method installed while the memory loads is learned after."""
        if not self.settings.MEMORY_ENABLED or self.stopping:
            return
        text = f"Method {selector} of {target_oid}: {doc}\n```python\n{source.strip()}\n```"

        def job() -> None:
            if self.memory is None:   # the memory failed to load (logged then)
                return
            vectors = self.memory.embedder.encode([text])
            self.image.transact(lambda s: self.memory.ingest(
                s.root, [text], vectors, f"method:{target_oid}.{selector}", kind="method",
                replace=True), note=f"learn {target_oid}.{selector}")
        self._background(job, f"learning {target_oid}.{selector}")

    def _require_memory(self) -> Any:
        if not self.settings.MEMORY_ENABLED:
            raise BadRequest("the Fractal Memory is disabled (BATOS_MEMORY_ENABLED=0)")
        if self.memory is None:
            raise Busy("the Fractal Memory is still loading; try again in a moment")
        return self.memory

    async def ingest_knowledge(self, text: str, source: str, kind: str, replace: bool) -> dict:
        memory = self._require_memory()

        def work() -> list[int]:
            from batos.memory import KnowledgeError, NothingToIngest
            try:
                chunks, vectors = memory.prepare(text)
            except NothingToIngest as exc:
                raise BadRequest(str(exc)) from None
            except KnowledgeError as exc:
                raise Internal(str(exc)) from None
            return self.image.transact(lambda s: memory.ingest(s.root, chunks, vectors, source, kind, replace),
                                       note=f"ingest {source}")
        ids = await self.in_worker(work)
        self.metalog.write({"event": "ingest", "source": source, "kind": kind, "chunks": len(ids)})
        return {"source": source, "chunks": len(ids), "ids": ids}

    async def ingest_lora(self, name: str | None, persona: str | None) -> dict:
        def work() -> list[dict]:
            try:
                return self.models.ingest_loras(name, persona)
            except ModelUnavailable as exc:
                raise BadRequest(str(exc)) from None
        adapters = await self.in_worker(work)
        return {"adapters": adapters, "persona": persona}

    async def parser_model(self) -> dict:
        def work() -> dict:
            try:
                return self.models.parser_model()
            except GenerationError as exc:
                raise Internal(str(exc)) from None
        return await self.in_worker(work)

    async def search_knowledge(self, query: str, k: int, kind: str | None) -> dict:
        memory = self._require_memory()

        def work() -> dict:
            t0 = time.perf_counter()
            results = self._read(lambda s: memory.search(s.root, query, k, kind))
            return {"results": results, "took_ms": round((time.perf_counter() - t0) * 1000, 3)}
        return await self.in_worker(work)

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

    # -- running work off the loop ------------------------------------------------------
    async def in_worker(self, fn: Callable[[], Any]) -> Any:
        if self.stopping:
            raise Busy("the kernel is shutting down")
        return await self.method_pool.submit(fn)

    # -- services -------------------------------------------------------------------
    def ping(self) -> dict:
        return {"pong": True, "version": __version__, "uptime_s": round(time.monotonic() - self.started, 3),
                "pid": os.getpid(), "protocol": 1, "cycles_running": len(self._cancels),
                "sandbox": self.sandbox.status() if self.sandbox is not None else None}

    async def run_cycle(self, target_oid: str, brief: dict, progress: Progress = None) -> dict:
        await self.in_worker(lambda: self._read(lambda s: s.get(target_oid) and None))
        key = (target_oid, brief["selector"])
        fut = self._cycles.get(key)
        if fut is None:
            if self._queued_cycles >= self.settings.CYCLE_QUEUE_MAX:
                raise Busy(f"{self._queued_cycles} cognitive cycles are already waiting; try again later")
            fut = self._start_cycle(target_oid, brief)
        cycle_id = fut.cycle_id  # type: ignore[attr-defined]
        if progress is not None:
            self._listeners.setdefault(cycle_id, []).append(progress)
        try:
            return await asyncio.shield(fut)
        finally:
            if progress is not None and cycle_id in self._listeners:
                self._listeners[cycle_id].remove(progress)

    def _start_cycle(self, target_oid: str, brief: dict) -> asyncio.Future:
        cycle_id = uuid.uuid4().hex[:12]
        key = (target_oid, brief["selector"])
        cancel = threading.Event()
        if self.stopping:
            cancel.set()

        def work() -> dict:
            self._cancels.add(cancel)
            try:
                return self.psm.run(cycle_id, target_oid, brief, cancel).result()
            finally:
                self._cancels.discard(cancel)

        self._queued_cycles += 1
        fut = self.cycle_pool.submit(work)
        fut.cycle_id = cycle_id  # type: ignore[attr-defined]

        def done(_f: asyncio.Future) -> None:
            self._queued_cycles -= 1
            self._cycles.pop(key, None)
            self._listeners.pop(cycle_id, None)

        fut.add_done_callback(done)
        self._cycles[key] = fut
        return fut

    async def send(self, target_oid: str, selector: str, args: list, kwargs: dict,
                   progress: Progress = None) -> dict:
        if self.stopping:
            raise Busy("the kernel is shutting down")
        try:
            return {"value": await self._invoke(target_oid, selector, args, kwargs)}
        except NotUnderstood as nu:
            brief = nu.brief
        result = await self.run_cycle(target_oid, brief, progress)
        if result["state"] != "COMPLETE":
            raise Rejected(f"{target_oid} does not understand '{selector}', and the cognitive cycle "
                           f"{result['cycle_id']} that tried to teach it FAILED: {result.get('reason')}",
                           result=result, cycle_id=result["cycle_id"])
        try:
            value = await self._invoke(target_oid, selector, args, kwargs)
        except NotUnderstood:
            raise Internal(f"the cycle {result['cycle_id']} completed but '{selector}' "
                           "is still not understood") from None
        return {"value": value, "cycle_id": result["cycle_id"]}

    async def _invoke(self, target_oid: str, selector: str, args: list, kwargs: dict) -> Any:
        """Call a method in a sandbox worker and store what it changed.

        The object is read on the event loop (a ZODB read of cached objects takes
        microseconds), so a call that changes nothing costs no thread hand-off.  Changes
        are committed by a method worker, only if the object's slots are still the ones
        the call saw; otherwise the call runs again on the new state (as a ZODB conflict
        would), up to ``CONFLICT_RETRIES`` times.
        """
        label = f"{target_oid}.{selector}"
        try:
            call_args = plain.to_tree(list(args)), plain.to_tree(dict(kwargs))
        except plain.NotPlain as exc:
            raise BadRequest(f"the arguments are not plain data: {exc}") from None
        for _attempt in range(CONFLICT_RETRIES + 1):
            with self.image.reading() as s:
                obj = s.get(target_oid)
                found = obj._find_slot(selector)
                if found is None:
                    obj._doesNotUnderstand_(selector, args, kwargs)
                if not isinstance(found[1], Method):
                    if args or kwargs:
                        raise MethodError(f"'{selector}' on {target_oid} is a data slot "
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
            if await self.in_worker(functools.partial(self.image.transact, commit, note=f"send {label}")):
                return reply.get("value")
            log.info("kernel: %s: the object changed during the call; running it again", label)
        raise Internal(f"{label}: the object kept changing under the call; gave up after "
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

    async def install(self, target_oid: str, selector: str, source: str) -> dict:
        event = {"event": "install", "target": target_oid, "selector": selector}
        report = guardian.audit(source, selector, max_bytes=self.settings.MAX_SOURCE_BYTES)
        self.metalog.write({**event, "state": "VALIDATING", "source_chars": len(source)})
        if not report.ok:
            self.metalog.write({**event, "state": "FAILED", "findings": report.findings})
            result = {"state": "FAILED", "findings": report.findings}
            raise Rejected("the PersistenceGuardian refused the method: " + "; ".join(report.findings),
                           result=result, findings=report.findings)

        def body(s: Session) -> None:
            s.get(target_oid)._install(selector, source, origin="architect")
        try:
            await self.in_worker(lambda: self.image.transact(body, note=f"install {target_oid}.{selector}"))
        except Exception as exc:
            self.metalog.write({**event, "state": "FAILED", "reason": str(exc)})
            raise
        self.metalog.write({**event, "state": "COMPLETE", "artifact": source})
        self._learn(target_oid, selector, source, report.doc)
        return {"state": "COMPLETE", "findings": []}

    async def describe(self, target_oid: str) -> dict:
        def body(s: Session) -> dict:
            obj = s.get(target_oid)
            return {
                "oid": target_oid, "name": str(obj._slots.get("name", "")),
                "parents": [p._label() for p in obj._slots.get("parents", ())],
                "slots": {k: type(v).__name__ for k, v in obj._slots.items()
                          if k not in ("parents",) and not isinstance(v, Method)},
                "methods": [{"selector": sel, "signature": m.signature, "doc": m.doc,
                             "owner": owner._label()} for sel, owner, m in obj._methods()],
            }
        return await self.in_worker(lambda: self._read(body))

    async def list_objects(self) -> list:
        def body(s: Session) -> list:
            return [{"oid": oid, "name": str(obj._slots.get("name", ""))}
                    for oid, obj in s.root["objects"].items()]
        return await self.in_worker(lambda: self._read(body))

    def _read(self, fn: Callable[[Session], Any]) -> Any:
        with self.image.reading() as s:
            return fn(s)

    # -- shutdown ---------------------------------------------------------------------
    def begin_shutdown(self) -> None:
        """Stop taking work and stop running cycles (they end FAILED)."""
        if not self.stopping:
            log.info("kernel: shutting down")
            self.stopping = True
            for cancel in list(self._cancels):
                cancel.set()

    async def close(self) -> None:
        deadline = self.settings.SHUTDOWN_TIMEOUT_S
        pending = [f for f in self._cycles.values() if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=deadline)
        self.method_pool.shutdown(self.settings.METHOD_WORKERS)
        self.cycle_pool.shutdown(self.settings.CYCLE_WORKERS)
        self.memory_pool.shutdown(1)
        await self.sandbox.close()
        if self.metalog is not None:
            self.metalog.write({"event": "kernel_stop", "pid": os.getpid()})
            await self.metalog.close()
        await asyncio.get_running_loop().run_in_executor(None, self.models.close)
        self.image.close()


# ------------------------------------------------------------------------- main

def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m batos", description="The BAT OS kernel.")
    p.add_argument("--home", help="BATOS_HOME: where the image, blobs and log live")
    p.add_argument("--endpoint", help="ZMQ_ENDPOINT to bind, e.g. tcp://127.0.0.1:5555")
    p.add_argument("--log-level", help="LOG_LEVEL: DEBUG, INFO, WARNING or ERROR")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        settings = config.load(HOME=_path(args.home), ZMQ_ENDPOINT=args.endpoint,
                               LOG_LEVEL=args.log_level)
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.LOG_LEVEL.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    from batos.server import serve
    try:
        return asyncio.run(serve(settings))
    except ImageError as exc:
        print(exc, file=sys.stderr)
        return 3


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
