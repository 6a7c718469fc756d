"""The knowledge service: what the kernel knows beside its objects.

It owns the Fractal Memory (``batos/memory.py``, loaded off the start path), the
Persona Codex's ingestion (once per codex version), the skill library (every
installed method is learned as a ``method`` chunk), and the Architect's
``ingest_knowledge`` / ``search_knowledge``.  Work on it runs on one thread of
its own, in order, so a method installed while the memory loads is learned after.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable

from batos import codex
from batos.threads import ThreadPool

LESSON_SUFFIX = ":failed"     # the source of a failed cycle's record: ``cycle:<id>:failed``

if TYPE_CHECKING:
    from batos.image import Image, Session
    from batos.memory import FractalMemory

log = logging.getLogger("batos.knowledge")


def cycle_summary(event: dict) -> str:
    """One cycle's record as the memory keeps it: the mission (the Architect's words), the
    outcome, persona, model, timings, examples and score, and for a failed cycle what went
    wrong (the lesson a later cycle on a similar mission is shown)."""
    cem = event.get("cem") or {}
    steps = ", ".join(f"{s.get('state')} {s.get('duration_s')}s" for s in event.get("steps") or [])
    words = f' ("{event["intent"]}")' if event.get("intent") else ""
    examples = (f", examples passed {event.get('examples_passed')} of {event.get('examples_run')}"
                if event.get("examples_run") else "")
    text = (f"Cycle {event.get('cycle_id')}: the mission {event.get('target')}.{event.get('selector')}"
            f"{words} ended {event.get('state')} in {event.get('duration_s')}s after "
            f"{event.get('attempts')} attempt(s), persona {event.get('persona')}, model "
            f"{event.get('model')}{examples}, CEM {cem.get('score')}. Steps: {steps}.")
    if event.get("state") == "FAILED":
        text += f" Failed in {event.get('phase')}: {str(event.get('reason'))[:400]}"
    return text


class KnowledgeUnavailable(Exception):
    """The memory is turned off (BATOS_MEMORY_ENABLED=0)."""


class KnowledgeLoading(Exception):
    """The memory is still loading."""


class Knowledge:
    def __init__(self, settings: Any, image: "Image", emit: Callable[[dict], None]):
        self.settings = settings
        self.image = image
        self.emit = emit                   # metacognition events (from any thread)
        self.memory: FractalMemory | None = None
        self.pool: ThreadPool | None = None
        self.on_loaded: Callable[["FractalMemory"], None] = lambda memory: None
        self.codex_ready = False           # the Persona Codex is in the memory

    @property
    def enabled(self) -> bool:
        return self.settings.MEMORY_ENABLED

    def start(self, loop: Any) -> None:
        self.pool = ThreadPool(loop, 1, "batos-knowledge")
        if self.enabled:
            self._background(self._load, "loading the Fractal Memory")

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(1)

    def _background(self, fn: Callable[[], Any], what: str) -> None:
        """Run ``fn`` on the knowledge thread (call on the loop); failures are logged."""
        def done(fut: Any) -> None:
            if not fut.cancelled() and fut.exception() is not None:
                exc = fut.exception()
                log.error("knowledge: %s failed: %s: %s", what, type(exc).__name__, exc)
                self.emit({"event": "memory_error", "what": what, "error": str(exc)})
        self.pool.submit(fn).add_done_callback(done)

    def _load(self) -> None:
        from batos.memory import FractalMemory    # numpy, zope.index: off the start path
        self.memory = FractalMemory(self.settings)
        self.on_loaded(self.memory)
        self._ingest_codex()

    def _ingest_codex(self) -> None:
        """Ingest the Persona Codex once per codex version."""
        with self.image.reading() as s:
            if s.root["batos"].get("codex") == codex.version():
                self.codex_ready = True
                return
        t0 = time.monotonic()
        prepared = [(f"codex:{title}", self.memory.prepare(f"{title}\n\n{body}"))
                    for title, body in codex.sections()]

        def body(s: "Session") -> int:
            n = 0
            for source, (chunks, vectors) in prepared:
                n += len(self.memory.ingest(s.root, chunks, vectors, source, kind="codex", replace=True))
            s.root["batos"]["codex"] = codex.version()
            return n
        n = self.image.transact(body, note="ingest the Persona Codex")
        self.codex_ready = True
        self.emit({"event": "codex_ingested", "version": codex.version(), "chunks": n,
                   "seconds": round(time.monotonic() - t0, 3)})

    def record_cycle(self, event: dict) -> None:
        """The record, read back: one summary per cycle in the memory (kind ``cycle``), so
        later cycles can retrieve lessons from earlier ones (call on the loop)."""
        if not self.enabled or self.pool is None or self.memory is None or event.get("practice"):
            return
        text = cycle_summary(event)
        # a failed cycle's record is a lesson later cycles are shown (batos.psm.is_lesson);
        # it is told by its source, as a long record is split into chunks
        source = f"cycle:{event.get('cycle_id')}" + (LESSON_SUFFIX if event.get("state") == "FAILED" else "")

        def job() -> None:
            chunks, vectors = self.memory.prepare(text)
            self.image.transact(lambda s: self.memory.ingest(s.root, chunks, vectors, source, kind="cycle"),
                                note=f"record {source}")
        self._background(job, f"recording {source}")

    def learn(self, target_oid: str, selector: str, source: str, doc: str) -> None:
        """The skill library: an installed method is ingested (call on the loop)."""
        if not self.enabled or self.pool is None:
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

    def require(self) -> "FractalMemory":
        if not self.enabled:
            raise KnowledgeUnavailable("the Fractal Memory is disabled (BATOS_MEMORY_ENABLED=0)")
        if self.memory is None:
            raise KnowledgeLoading("the Fractal Memory is still loading; try again in a moment")
        return self.memory

    def ingest(self, text: str, source: str, kind: str, replace: bool) -> dict:
        """Chunk, embed and store ``text`` (on a kernel thread)."""
        memory = self.require()
        chunks, vectors = memory.prepare(text)
        ids = self.image.transact(lambda s: memory.ingest(s.root, chunks, vectors, source, kind, replace),
                                  note=f"ingest {source}")
        return {"source": source, "chunks": len(ids), "ids": ids}

    def search(self, query: str, k: int, kind: str | None) -> dict:
        memory = self.require()
        t0 = time.perf_counter()
        with self.image.reading() as s:
            results = memory.search(s.root, query, k, kind)
        return {"results": results, "took_ms": round((time.perf_counter() - t0) * 1000, 3)}
