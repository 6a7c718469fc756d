"""Running an installed method with a time limit, inside the kernel's worker threads.

A single deadline thread watches every running call.  When a call outlives its
limit, the deadline thread raises ``MethodTimeoutSignal`` asynchronously in
the worker thread (``PyThreadState_SetAsyncExc``); the call ends at its next
bytecode and the caller gets ``Timeout``.  Code stuck inside one long C call
cannot be interrupted this way: the server's own wait (the limit plus a grace)
still answers ``Timeout`` and the worker is written off.  The sandbox issue
moves execution into separate processes, which contain that case too.
"""
from __future__ import annotations

import ctypes
import heapq
import itertools
import threading
import time
from typing import Any, Callable

from batos.errors import MethodError, Timeout

_SetAsyncExc = ctypes.pythonapi.PyThreadState_SetAsyncExc


def _raise_in(thread_id: int, exc_type: type[BaseException]) -> None:
    _SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type))


def _withdraw(thread_id: int) -> None:
    """Clear an asynchronous exception not yet delivered (a NULL exception)."""
    _SetAsyncExc(ctypes.c_ulong(thread_id), None)


class MethodTimeoutSignal(BaseException):
    """Raised inside a method that ran past its limit (a BaseException, so that
    ``except Exception`` in the method cannot swallow it)."""


class _Call:
    __slots__ = ("thread_id", "lock", "running", "signalled")

    def __init__(self, thread_id: int):
        self.thread_id = thread_id
        self.lock = threading.Lock()
        self.running = True
        self.signalled = False


class DeadlineWatcher:
    """One thread that interrupts calls past their deadline.

    It wakes every ``TICK_S`` while calls are watched (so deadlines are kept to
    within a tick) and sleeps when there are none; registering a call is a heap
    push, with a wake-up only when the watcher is asleep.
    """

    TICK_S = 0.02

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Call]] = []   # (deadline, seq, call)
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._idle = True
        self._thread = threading.Thread(target=self._run, name="batos-deadlines", daemon=True)
        self._thread.start()

    def watch(self, call: _Call, deadline: float) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._seq), call))
            if self._idle:
                self._idle = False
                self._cond.notify()

    def _run(self) -> None:
        while True:
            expired = []
            with self._cond:
                while self._heap and not self._heap[0][2].running:
                    heapq.heappop(self._heap)          # finished calls leave lazily
                if not self._heap:
                    self._idle = True
                    self._cond.wait()
                    continue
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    expired.append(heapq.heappop(self._heap)[2])
            for call in expired:
                with call.lock:
                    if call.running:
                        call.signalled = True
                        _raise_in(call.thread_id, MethodTimeoutSignal)
            time.sleep(self.TICK_S)


_watcher: DeadlineWatcher | None = None
_watcher_lock = threading.Lock()


def _get_watcher() -> DeadlineWatcher:
    global _watcher
    with _watcher_lock:
        if _watcher is None:
            _watcher = DeadlineWatcher()
        return _watcher


def call_with_deadline(fn: Callable[..., Any], args: tuple, kwargs: dict, timeout: float,
                       label: str) -> Any:
    """``fn(*args, **kwargs)`` in this thread, interrupted after ``timeout`` seconds.

    Raises ``Timeout`` past the limit and ``MethodError`` (naming the exception)
    when the method raises anything, SystemExit and KeyboardInterrupt included.
    """
    call = _Call(threading.get_ident())
    _get_watcher().watch(call, time.monotonic() + timeout)
    try:
        try:
            return fn(*args, **kwargs)
        finally:
            with call.lock:
                call.running = False
                if call.signalled:
                    # a signal not yet delivered is withdrawn
                    _withdraw(call.thread_id)
    except MethodTimeoutSignal:
        raise Timeout(f"{label} ran past its time limit of {timeout:g}s") from None
    except RecursionError:
        raise MethodError(f"{label} raised RecursionError: maximum recursion depth exceeded") from None
    except MemoryError:
        raise MethodError(f"{label} raised MemoryError") from None
    except BaseException as exc:  # the method's own error, whatever it is
        raise MethodError(f"{label} raised {type(exc).__name__}: {_short(exc)}",
                          exception=type(exc).__name__) from None


def _short(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable>"
    return text if len(text) <= 2000 else text[:2000] + "..."
