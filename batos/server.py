"""The Synaptic Bridge: an asyncio ROUTER loop.

decode -> validate -> handler table -> reply.  Exceptions become protocol
errors in one place (``_error_reply``).  No request, however malformed, stops
the loop.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

import zmq
import zmq.asyncio
from pydantic import ValidationError

from batos import protocol as p
from batos.errors import BadRequest, BatosError, Busy, UnknownCommand
from batos.handlers import HANDLERS
from batos.kernel import Kernel

log = logging.getLogger("batos.server")
ALWAYS_ALLOWED = ("ping", "shutdown")   # answered even while shutting down


class Server:
    def __init__(self, kernel: Kernel, ctx: zmq.asyncio.Context):
        self.kernel = kernel
        self.settings = kernel.settings
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 500)
        # hard cap well above the protocol's limit: larger frames drop the peer
        self.sock.setsockopt(zmq.MAXMSGSIZE, self.settings.MAX_MESSAGE_BYTES * 4 + 1024)
        self.sock.setsockopt(zmq.SNDHWM, 100_000)
        self.sock.setsockopt(zmq.RCVHWM, 100_000)
        self._tasks: set[asyncio.Task] = set()
        self.stopped = asyncio.Event()

    def bind(self) -> None:
        self.sock.bind(self.settings.ZMQ_ENDPOINT)

    # -- replies -----------------------------------------------------------------------
    def _send(self, identity: bytes, message: dict) -> None:
        try:
            frame = p.pack(message)
        except Exception as exc:  # a result that cannot be packed still gets a reply
            frame = p.pack(p.error_reply(message.get("id"), "Internal",
                                         f"the reply could not be encoded: {exc}"))
        try:
            self.sock.send_multipart([identity, frame], flags=zmq.NOBLOCK)
        except zmq.Again:
            log.warning("server: dropped a reply: the peer is not reading")
        except zmq.ZMQError as exc:
            log.warning("server: could not reply: %s", exc)

    def _error_reply(self, request_id: Any, exc: BaseException) -> dict:
        if isinstance(exc, BatosError):
            reply = p.error_reply(request_id, exc.type, exc.message, **p.to_wire(exc.details))
            if exc.result is not None:
                reply["result"] = p.to_wire(exc.result)
            return reply
        log.exception("server: internal error", exc_info=exc)
        return p.error_reply(request_id, "Internal", f"{type(exc).__name__}: {exc}")

    # -- requests -------------------------------------------------------------------------
    def _decode(self, frames: list[bytes]) -> tuple[Any, p.Request]:
        """(request id, validated request) or BadRequest/UnknownCommand with the id known so far."""
        if len(frames) != 1:
            raise BadRequest(f"expected exactly one frame per request, got {len(frames)}")
        frame = frames[0]
        if len(frame) > self.settings.MAX_MESSAGE_BYTES:
            raise BadRequest(f"the request is {len(frame)} bytes; the limit is "
                             f"{self.settings.MAX_MESSAGE_BYTES}")
        try:
            msg = p.unpack(frame)
        except Exception:
            raise BadRequest("the request is not valid msgpack") from None
        if not isinstance(msg, dict):
            raise BadRequest(f"the request must be a msgpack map, not {type(msg).__name__}")
        rid = msg.get("id")
        if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int))):
            raise BadRequest("'id' must be a string (or an integer)")
        command = msg.get("command")
        if not isinstance(command, str):
            raise _WithId(rid, BadRequest("the request has no 'command' string"))
        model = p.REQUESTS.get(command)
        if model is None:
            raise _WithId(rid, UnknownCommand(
                f"unknown command {command!r}; the commands are {', '.join(sorted(p.REQUESTS))}"))
        try:
            return rid, model.model_validate(msg)
        except ValidationError as exc:
            raise _WithId(rid, BadRequest(p.describe_validation_error(command, exc))) from None

    def handle(self, identity: bytes, frames: list[bytes]) -> None:
        try:
            rid, req = self._decode(frames)
        except _WithId as w:
            self._send(identity, self._error_reply(w.rid, w.exc))
            return
        except BatosError as exc:
            self._send(identity, self._error_reply(None, exc))
            return
        if req.command == "ping":   # the fast path: answered on the loop, never queued
            self._send(identity, p.ok_reply(rid, self.kernel.ping()))
            return
        if self.kernel.stopping and req.command not in ALWAYS_ALLOWED:
            self._send(identity, self._error_reply(rid, Busy("the kernel is shutting down")))
            return
        if len(self._tasks) >= self.settings.MAX_INFLIGHT_REQUESTS:
            self._send(identity, self._error_reply(rid, Busy(
                f"{len(self._tasks)} requests are in flight; try again shortly")))
            return
        task = asyncio.create_task(self._run(identity, rid, req))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, identity: bytes, rid: Any, req: p.Request) -> None:
        progress = None
        if req.stream:
            def progress(event: dict) -> None:
                fields = {k: v for k, v in event.items() if k not in ("event", "artifact")}
                self._send(identity, p.progress(rid, event.get("event", "state"), **p.to_wire(fields)))
        try:
            result = await HANDLERS[req.command](self.kernel, req, progress)
            reply = p.ok_reply(rid, p.to_wire(result))
        except asyncio.CancelledError:
            reply = self._error_reply(rid, Busy("the kernel stopped before finishing this request"))
            self._send(identity, reply)
            raise
        except Exception as exc:
            reply = self._error_reply(rid, exc)
        self._send(identity, reply)
        if req.command == "shutdown":
            self.stopped.set()

    async def serve_forever(self) -> None:
        # one stop future for the whole loop (not one per message): stopping cancels the
        # receive in progress
        receiving: list[asyncio.Future | None] = [None]

        def on_stop(_f: asyncio.Future) -> None:
            if receiving[0] is not None:
                receiving[0].cancel()
        stop = asyncio.ensure_future(self.stopped.wait())
        stop.add_done_callback(on_stop)
        try:
            while not self.stopped.is_set() and not self.kernel.stopping:
                receiving[0] = recv = self.sock.recv_multipart(copy=True)
                try:
                    frames = await recv
                except asyncio.CancelledError:
                    if self.stopped.is_set():
                        break
                    raise
                finally:
                    receiving[0] = None
                if len(frames) < 2:
                    continue
                try:
                    self.handle(frames[0], frames[1:])
                except Exception:
                    log.exception("server: unexpected error while handling a request")
        finally:
            stop.cancel()

    async def drain(self, timeout: float) -> None:
        """Let in-flight requests finish (cycles are already told to stop), then cancel the rest."""
        if self._tasks:
            done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

    def close(self) -> None:
        self.sock.close(linger=500)


async def _watch_parent(watchdog_pid: int, kernel: Kernel, server: Server) -> None:
    """Started by a watchdog: if it dies, stop cleanly rather than run unsupervised."""
    while not server.stopped.is_set():
        if os.getppid() != watchdog_pid:
            log.warning("server: the watchdog (pid %d) is gone; stopping", watchdog_pid)
            kernel.begin_shutdown()
            server.stopped.set()
            return
        await asyncio.sleep(0.5)


class _WithId(Exception):
    def __init__(self, rid: Any, exc: BatosError):
        self.rid, self.exc = rid, exc


async def serve(settings: Any) -> int:
    """Run the kernel until SIGINT, SIGTERM or a ``shutdown`` request."""
    kernel = Kernel(settings)
    ctx = zmq.asyncio.Context()
    server = Server(kernel, ctx)
    try:
        server.bind()
    except zmq.ZMQError as exc:
        log.error("server: cannot bind %s: %s", settings.ZMQ_ENDPOINT, exc)
        kernel.image.close()
        ctx.term()
        return 4
    await kernel.start()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        log.info("server: received %s", signal.Signals(signum).name)
        kernel.begin_shutdown()
        server.stopped.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    watchdog_pid = os.environ.get("BATOS_WATCHDOG_PID")
    if watchdog_pid:
        asyncio.ensure_future(_watch_parent(int(watchdog_pid), kernel, server))
    log.info("kernel: serving on %s (image %s, %s)", settings.ZMQ_ENDPOINT, kernel.image.path,
             "new" if kernel.image.created else "resumed")
    try:
        await server.serve_forever()
    finally:
        kernel.begin_shutdown()
        await server.drain(settings.SHUTDOWN_TIMEOUT_S)
        await kernel.close()
        server.close()
        ctx.term()
        log.info("kernel: stopped")
    return 0
