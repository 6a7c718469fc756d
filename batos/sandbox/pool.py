"""The kernel's side of the sandbox: warm worker processes and the call protocol.

Everything here runs on the kernel's event loop, so that a call costs no
thread hand-off: ``SandboxPool.call`` takes an idle worker (waiting, with a
deadline, when every worker is busy and the pool is at its size), writes the
request to the worker's pipe and awaits the reply with ``loop.add_reader``.
A worker that runs past the deadline, dies, or sends something that is not a
well-formed reply is killed and replaced; the caller gets ``MethodTimedOut`` or
``MethodFailed``.  A keeper task holds ``SANDBOX_WORKERS`` idle workers ready,
up to ``SANDBOX_MAX_WORKERS`` in all; a worker is started in an executor thread
(``fork``/``exec`` of a large kernel can take milliseconds) and counts as
ready when its hello arrives.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import struct
import subprocess
import sys
import time
from typing import Any

import ormsgpack

import config

log = logging.getLogger("batos.sandbox")
HEADER = struct.Struct(">I")
# A call alone in the pool waits for its reply by polling the pipe for this long before
# it yields to the event loop: a worker answers a small call in about 0.1 ms, and
# staying on the CPU saves the loop's own wake-up (in noisy runs here, p50 about
# 0.05-0.1 ms of ~0.9 ms).
# With other calls in flight the loop yields at once, so throughput is not spent on it.
SPIN_S = 200e-6
_BOOT = ("import sys; sys.path.insert(0, {root!r}); "
         "from batos.sandbox.worker import main; sys.exit(main())")


class MethodFailed(Exception):
    """The method raised, broke a rule at run time, or stopped its worker; ``exception``
    names what it raised (``SandboxViolation``, ``CovenantError``, ``WorkerLost``, ...)."""

    def __init__(self, message: str, exception: str = ""):
        super().__init__(message)
        self.details = {"exception": exception}


class MethodNeeds(MethodFailed):
    """The method sent ``self.<selector>(...)`` to a method its object does not have:
    ``needs`` = {selector, caller, args, kwargs} (args and kwargs as plain trees)."""

    def __init__(self, message: str, needs: dict):
        super().__init__(message, exception="NotUnderstood")
        self.needs = needs


class MethodTimedOut(Exception):
    """The method ran past METHOD_TIMEOUT_S (its worker was stopped)."""


class SandboxClosed(Exception):
    """The pool is closed: the kernel is shutting down."""


class SandboxBusy(Exception):
    """No worker became free in time."""


class SandboxUnavailable(Exception):
    """No worker can be started (the message says why)."""


class WorkerLost(Exception):
    """The worker died or broke the protocol."""


class WorkerGone(WorkerLost):
    """The worker was already dead when a call was sent to it (the call did not run)."""


class SandboxWorker:
    """One worker process and its two pipes (request: our wfd, reply: our rfd)."""

    def __init__(self, settings: config.Settings):
        args = json.dumps({
            "parent_pid": os.getpid(), "memory_mb": settings.SANDBOX_MEMORY_MB,
            "cpu_s": settings.SANDBOX_CPU_S, "max_reply": settings.MAX_MESSAGE_BYTES,
            "require_seccomp": settings.SANDBOX_REQUIRE_SECCOMP,
        })
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOT.format(root=str(config.PROJECT_ROOT)), args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={"LC_ALL": "C.UTF-8"}, cwd="/", close_fds=True, start_new_session=True)
        self.pid = self.proc.pid
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        os.set_blocking(self.wfd, False)
        os.set_blocking(self.rfd, False)
        self.max_reply = settings.MAX_MESSAGE_BYTES
        self.known: set[str] = set()    # digests of the method sources this worker holds
        self.calls = 0
        self.cpu_s = 0.0
        self.layers: list[str] = []
        self.dead = False

    async def exchange(self, message: dict | None, timeout: float, spin: bool = False) -> dict:
        """Send ``message`` (None: only read) and read one reply frame; TimeoutError
        past ``timeout`` seconds.  (A timer, not ``wait_for``: no task per call.)"""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        timer = loop.call_later(timeout, lambda: fut.done() or fut.set_exception(TimeoutError()))
        try:
            if message is not None:
                body = ormsgpack.packb(message)
                await self._write(loop, memoryview(HEADER.pack(len(body)) + body), fut)
            return await self._read_reply(loop, fut, spin)
        finally:
            timer.cancel()

    async def _read_reply(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future,
                          spin: bool) -> dict:
        buf = bytearray()
        need = [HEADER.size, None]      # [bytes wanted, body size once the header is in]

        def readable() -> None:
            try:
                chunk = os.read(self.rfd, max(need[0] - len(buf), 4096))
            except BlockingIOError:
                return
            except OSError as exc:
                chunk, err = b"", exc
            else:
                err = None
            if not chunk:
                loop.remove_reader(self.rfd)
                if not fut.done():
                    fut.set_exception(WorkerLost(self._death() if err is None else str(err)))
                return
            buf.extend(chunk)
            if need[1] is None and len(buf) >= HEADER.size:
                size = HEADER.unpack_from(buf)[0]
                if size > self.max_reply + 4096:
                    loop.remove_reader(self.rfd)
                    fut.set_exception(WorkerLost(f"the sandbox worker sent a reply of {size} bytes"))
                    return
                need[1] = size
                need[0] = HEADER.size + size
            if need[1] is not None and len(buf) >= need[0]:
                loop.remove_reader(self.rfd)
                if not fut.done():
                    fut.set_result(bytes(buf[HEADER.size:need[0]]))

        readable()                         # the reply may already be there
        if spin:
            spin_until = time.perf_counter() + SPIN_S
            while not fut.done() and time.perf_counter() < spin_until:
                readable()
        if not fut.done():
            loop.add_reader(self.rfd, readable)
        try:
            data = await fut
        except BaseException:
            loop.remove_reader(self.rfd)
            raise
        try:
            reply = ormsgpack.unpackb(data)
        except (ormsgpack.MsgpackDecodeError, ValueError) as exc:
            raise WorkerLost(f"the sandbox worker sent a malformed reply: {exc}") from None
        if not isinstance(reply, dict):
            raise WorkerLost("the sandbox worker sent a reply that is not a map")
        return reply

    async def _write(self, loop: asyncio.AbstractEventLoop, view: memoryview,
                     deadline: asyncio.Future) -> None:
        while view:
            try:
                view = view[os.write(self.wfd, view):]
                continue
            except BlockingIOError:
                pass
            except OSError as exc:    # a broken pipe: the worker is gone
                raise WorkerGone(f"the sandbox worker is gone ({exc.strerror})") from None
            writable = loop.create_future()
            loop.add_writer(self.wfd, lambda w=writable: w.done() or w.set_result(None))
            try:
                await asyncio.wait([writable, deadline], return_when=asyncio.FIRST_COMPLETED)
            finally:
                loop.remove_writer(self.wfd)
            if deadline.done():
                deadline.result()     # raises the TimeoutError

    def _death(self) -> str:
        code = self.proc.poll()
        if code is None:
            return "the sandbox worker closed its pipe"
        if code < 0:
            return f"the sandbox worker was killed by signal {-code}"
        return f"the sandbox worker exited with code {code}"

    def kill(self) -> None:
        """SIGKILL and close the pipes; reaping is left to ``reap``."""
        self.dead = True
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.proc.kill()
        except OSError:
            pass

    def reap(self) -> None:
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            log.error("sandbox: worker %d did not exit after SIGKILL", self.pid)


def _well_formed(reply: dict) -> bool:
    changes, deleted = reply.get("changes"), reply.get("deleted")
    return (isinstance(changes, dict) and isinstance(deleted, list)
            and all(isinstance(k, str) and isinstance(v, bytes) for k, v in changes.items())
            and all(isinstance(n, str) for n in deleted))


class SandboxPool:
    def __init__(self, settings: config.Settings):
        self.settings = settings
        self.warm = settings.SANDBOX_WORKERS
        self.size = max(settings.SANDBOX_WORKERS, settings.SANDBOX_MAX_WORKERS)
        self.cpu_budget = settings.SANDBOX_CPU_S - 2 * (settings.METHOD_TIMEOUT_S
                                                        + settings.SANDBOX_KILL_GRACE_S)
        self._idle: collections.deque[SandboxWorker] = collections.deque()
        self._busy = 0            # workers out on calls
        self._starting = 0        # workers being started
        self._changed = asyncio.Event()     # set whenever the pool's counts change
        self._closed = False
        self._tasks: set[asyncio.Task] = set()
        self._failures = 0
        self.error: str | None = None     # why the last start failed (cleared by a success)
        self.layers: list[str] = []
        self.started = 0           # workers started, ever
        self.lost = 0              # workers killed or found dead
        self._keep_warm()

    # -- keeping workers warm ----------------------------------------------------------
    def _wanted(self) -> int:
        total = len(self._idle) + self._busy + self._starting
        return max(0, min(self.warm - len(self._idle) - self._starting, self.size - total))

    def _keep_warm(self, extra: int = 0) -> None:
        if self._closed:
            return
        for _ in range(self._wanted() + extra):
            if len(self._idle) + self._busy + self._starting >= self.size:
                break
            self._starting += 1
            self._spawn(self._start_worker())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _start_worker(self) -> None:
        loop = asyncio.get_running_loop()
        worker = None
        try:
            if self._failures:
                await asyncio.sleep(min(5.0, 0.2 * 2 ** min(self._failures, 5)))
            worker = await loop.run_in_executor(None, SandboxWorker, self.settings)
            hello = await worker.exchange(None, self.settings.SANDBOX_START_TIMEOUT_S)
            if not hello.get("hello"):
                raise WorkerLost(f"the sandbox worker could not lock itself down: {hello.get('error')}")
        except asyncio.CancelledError:      # the pool is closing
            self._starting -= 1
            if worker is not None:
                worker.kill()
            raise
        except (WorkerLost, OSError, TimeoutError) as exc:
            text = "no hello in time" if isinstance(exc, TimeoutError) else str(exc)
            log.error("sandbox: cannot start a worker: %s", text)
            self._failures += 1
            self.error = text
            self._starting -= 1
            if worker is not None:
                self._discard(worker)
            self._notify()
            return
        worker.layers = list(hello.get("layers") or [])
        self._failures = 0
        self._starting -= 1
        self.started += 1
        self.error = None
        self.layers = worker.layers
        if self._closed:
            self._discard(worker)
            return
        self._idle.append(worker)
        self._notify()

    def _discard(self, worker: SandboxWorker) -> None:
        worker.kill()
        asyncio.get_running_loop().run_in_executor(None, worker.reap)

    async def _acquire(self, deadline: float) -> SandboxWorker:
        while not self._idle:
            if self._closed:
                raise SandboxClosed("the kernel is shutting down")
            if self._starting == 0:
                if self.error is not None and self._busy == 0:
                    # the keeper retries with backoff; the caller hears why now
                    self._keep_warm(extra=1)
                    raise SandboxUnavailable(f"the sandbox cannot start a worker: {self.error}")
                self._keep_warm(extra=1)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxBusy("no sandbox worker became free in time; every worker is busy")
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
        worker = self._idle.pop()
        self._busy += 1
        self._keep_warm()
        return worker

    def _release(self, worker: SandboxWorker, healthy: bool) -> None:
        self._busy -= 1
        keep = (healthy and not self._closed and worker.calls < self.settings.SANDBOX_MAX_CALLS
                and worker.cpu_s < self.cpu_budget)
        if keep:
            self._idle.append(worker)
        else:
            if not healthy:
                self.lost += 1
            self._discard(worker)
            self._keep_warm()
        self._notify()

    # -- calls ---------------------------------------------------------------------
    async def call(self, request: dict, sources: dict[str, tuple[str, str, str]], label: str) -> dict:
        """Run one method call; the reply map (``ok`` True) or MethodFailed/MethodTimedOut."""
        for _attempt in range(3):
            try:
                return await self._call(request, sources, label)
            except WorkerGone as exc:   # died while idle: the call never ran; use another
                log.warning("sandbox: %s: %s; trying another worker", label, exc)
        raise MethodFailed(f"{label}: no sandbox worker could take the call", exception="WorkerLost")

    async def _call(self, request: dict, sources: dict[str, tuple[str, str, str]], label: str) -> dict:
        timeout = self.settings.METHOD_TIMEOUT_S
        worker = await self._acquire(time.monotonic() + self.settings.SANDBOX_START_TIMEOUT_S)
        healthy = False
        try:
            missing = {d: s for d, s in sources.items() if d not in worker.known}
            request["sources"] = missing
            request["timeout"] = timeout
            try:
                reply = await worker.exchange(request, timeout + self.settings.SANDBOX_KILL_GRACE_S,
                                              spin=self._busy == 1)
            except TimeoutError:
                log.warning("sandbox: %s: worker %d ran past the deadline; killed", label, worker.pid)
                raise MethodTimedOut(f"{label} ran past its time limit of {timeout:g}s "
                              "(its sandbox worker was stopped)") from None
            except WorkerGone:
                raise
            except WorkerLost as exc:
                log.warning("sandbox: %s: %s", label, exc)
                raise MethodFailed(f"{label} stopped its sandbox worker: {exc}",
                                  exception="WorkerLost") from None
            worker.known.update(missing)
            worker.calls += 1
            cpu = reply.get("cpu_s")
            worker.cpu_s = cpu if isinstance(cpu, (int, float)) else self.cpu_budget
            healthy = not reply.get("recycle")
            if reply.get("ok") is True:
                if not _well_formed(reply):
                    healthy = False
                    raise MethodFailed(f"{label}: the sandbox worker sent a malformed reply; "
                                      "nothing was saved", exception="WorkerLost")
                return reply
            message = reply.get("message")
            message = message if isinstance(message, str) else f"{label} failed in the sandbox"
            if reply.get("type") == "Timeout":
                raise MethodTimedOut(message)
            exception = reply.get("exception")
            needs = reply.get("needs")
            if reply.get("type") == "NotUnderstood" and isinstance(needs, dict) and \
                    isinstance(needs.get("selector"), str) and isinstance(needs.get("caller"), str):
                raise MethodNeeds(message, needs)
            raise MethodFailed(message, exception=exception if isinstance(exception, str) else "")
        finally:
            self._release(worker, healthy)

    def status(self) -> dict:
        return {"idle": len(self._idle), "busy": self._busy, "starting": self._starting,
                "started": self.started, "lost": self.lost, "layers": list(self.layers),
                "error": self.error}

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = list(self._idle), collections.deque()
        for worker in idle:
            worker.kill()
        for task in list(self._tasks):
            task.cancel()
        self._notify()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, w.reap) for w in idle))
