"""Kernel threads, for work that must not run on the event loop.

(Threads only: the processes installed methods run in are the sandbox's workers,
``batos/sandbox/``.)

A lean pool: a job is a plain function; its result comes back to the loop
through ``call_soon_threadsafe`` (about half the hop time of a
ThreadPoolExecutor with ``wrap_future`` here).  Each thread keeps its own ZODB
session (``Image.session`` is thread-local).  Jobs here are short (reads,
installs, commits): methods run in the sandbox's processes, not in these threads.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Any, Callable

log = logging.getLogger("batos.threads")
_STOP = object()


class ThreadPool:
    def __init__(self, loop: asyncio.AbstractEventLoop, size: int, name: str):
        self.loop = loop
        self.name = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()   # (future, fn) or _STOP
        self._lock = threading.Lock()
        self._count = 0
        for _ in range(size):
            self._spawn()

    def _spawn(self) -> None:
        with self._lock:
            self._count += 1
            n = self._count
        threading.Thread(target=self._work, name=f"{self.name}-{n}", daemon=True).start()

    def submit(self, fn: Callable[[], Any]) -> asyncio.Future:
        fut = self.loop.create_future()
        self._queue.put((fut, fn))
        return fut

    def shutdown(self, n_threads: int) -> None:
        for _ in range(n_threads):
            self._queue.put(_STOP)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            fut, fn = item
            try:
                result = fn()
            except BaseException as exc:
                self._resolve(fut, None, exc)
            else:
                self._resolve(fut, result, None)

    def _resolve(self, fut: asyncio.Future, result: Any, exc: BaseException | None) -> None:
        def settle() -> None:
            if fut.done():      # the waiter gave up (timeout or shutdown)
                return
            if exc is None:
                fut.set_result(result)
            else:
                fut.set_exception(exc)
        try:
            self.loop.call_soon_threadsafe(settle)
        except RuntimeError:    # the loop is closed: nobody is waiting any more
            pass
