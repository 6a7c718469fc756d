"""The Synaptic Bridge: an asyncio ROUTER loop.

decode -> validate -> the handler table -> reply.  Exceptions become protocol
errors in one place (``_error_reply``, through ``batos.errors.wire_error``).  No
request, however malformed, stops the loop.

Backpressure, not refusal: at most ``MAX_INFLIGHT_REQUESTS`` requests run at
once; requests read beyond that wait, in arrival order, in a local queue of at
most ``MAX_QUEUED_REQUESTS``, and when that is full the server stops taking
frames off the socket until a slot frees, so ZeroMQ queues (and then holds back)
what clients send.  ``inline`` requests (``ping``) are answered as they are read
and never wait behind that queue.  ``Busy`` is kept for real refusals: the kernel
is shutting down, the cycle queue is full, no sandbox worker came free in time.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING, Any

import zmq
import zmq.asyncio
from pydantic import ValidationError

from batos import protocol as p
from batos.errors import BadRequest, Busy, UnknownCommand, wire_error

if TYPE_CHECKING:
    from batos.handlers import Handler
    from batos.kernel import Kernel
    from batos.shutdown import Shutdown

log = logging.getLogger("batos.server")


class Server:
    def __init__(self, kernel: "Kernel", handlers: dict[str, "Handler"], ctx: zmq.asyncio.Context,
                 shutdown: "Shutdown"):
        self.kernel = kernel
        self.handlers = handlers
        self.shutdown = shutdown
        self.settings = kernel.settings
        self.ctx = ctx
        self.auth = None     # the CURVE authenticator (batos.curve), when CURVE is on
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 500)
        # hard cap well above the protocol's limit: larger frames drop the peer
        self.sock.setsockopt(zmq.MAXMSGSIZE, self.settings.MAX_MESSAGE_BYTES * 4 + 1024)
        self.sock.setsockopt(zmq.SNDHWM, 100_000)
        self.sock.setsockopt(zmq.RCVHWM, 100_000)
        self._tasks: set[asyncio.Task] = set()
        self._queued: collections.deque[tuple[bytes, Any, p.Request]] = collections.deque()
        self._slot_freed = asyncio.Event()
        self._receiving: asyncio.Future | None = None
        shutdown.on_request(self._stop_receiving)

    def bind(self) -> None:
        """Bind ZMQ_ENDPOINT (with CURVE when it is on); on failure the socket is closed, so the
        context can terminate."""
        try:
            if self.settings.curve_enabled:
                self._secure()
            self.sock.bind(self.settings.ZMQ_ENDPOINT)
        except zmq.ZMQError:
            self.close()
            raise

    def _secure(self) -> None:
        """CURVE: the kernel's pair on the socket, and the ZAP authenticator started before the
        bind (with no ZAP handler, libzmq lets every CURVE client in).  Certificates that cannot
        be made or read stop the start as a failed bind does."""
        from batos import curve
        try:
            public, secret = curve.server_pair(self.settings.HOME)
            self.auth = curve.Authenticator(self.ctx, self.settings.HOME, on_refused=self._refused)
            self.auth.start()
        except (curve.CurveError, OSError) as exc:
            raise zmq.ZMQError(msg=f"CURVE is on, but {exc}") from None
        self.sock.curve_secretkey = secret
        self.sock.curve_publickey = public
        self.sock.curve_server = True
        log.info("server: CURVE on; clients need %s and a certificate in %s (%d there now, "
                 "and this machine's local pair)", curve.curve_dir(self.settings.HOME) / "server.key",
                 curve.authorized_dir(self.settings.HOME), len(self.auth.keys))

    def _refused(self, event: dict) -> None:
        metalog = getattr(self.kernel, "metalog", None)
        if metalog is not None:
            metalog.write(event)

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
        mapped = wire_error(exc)
        if mapped is None:
            log.error("server: internal error", exc_info=exc)
            return p.error_reply(request_id, "Internal", f"{type(exc).__name__}: {exc}")
        reply = p.error_reply(request_id, mapped.type, mapped.message, **p.to_wire(mapped.details))
        if mapped.result is not None:
            reply["result"] = p.to_wire(mapped.result)
        return reply

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
        except BadRequest as exc:
            self._send(identity, self._error_reply(None, exc))
            return
        handler = self.handlers[req.command]
        note = getattr(self.kernel, "note_request", None)
        if note is not None:
            note(req.command)     # the self-tuning loop waits for quiet, and yields to the Architect
        if self.shutdown.requested and not handler.while_stopping:
            self._send(identity, self._error_reply(rid, Busy("the kernel is shutting down")))
            return
        if handler.inline:   # answered on the loop, never queued
            try:
                self._send(identity, p.ok_reply(rid, p.to_wire(handler.run(self.kernel, req, None))))
            except Exception as exc:
                self._send(identity, self._error_reply(rid, exc))
            return
        if len(self._tasks) < self.settings.MAX_INFLIGHT_REQUESTS or handler.while_stopping:
            self._start(identity, rid, req)
        else:
            self._queued.append((identity, rid, req))

    def _start(self, identity: bytes, rid: Any, req: p.Request) -> None:
        task = asyncio.create_task(self._run(identity, rid, req))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        while self._queued and len(self._tasks) < self.settings.MAX_INFLIGHT_REQUESTS:
            identity, rid, req = self._queued.popleft()
            if self.shutdown.requested and not self.handlers[req.command].while_stopping:
                self._send(identity, self._error_reply(rid, Busy("the kernel is shutting down")))
                continue
            self._start(identity, rid, req)
        self._slot_freed.set()

    async def _run(self, identity: bytes, rid: Any, req: p.Request) -> None:
        progress = None
        if req.streams:
            def progress(event: dict) -> None:
                fields = {k: v for k, v in event.items() if k not in ("event", "artifact")}
                self._send(identity, p.progress(rid, event.get("event", "state"), **p.to_wire(fields)))
        try:
            result = await self.handlers[req.command].run(self.kernel, req, progress)
            reply = p.ok_reply(rid, p.to_wire(result))
        except asyncio.CancelledError:
            self._send(identity, self._error_reply(rid, Busy("the kernel stopped before finishing "
                                                             "this request")))
            raise
        except Exception as exc:
            reply = self._error_reply(rid, exc)
        self._send(identity, reply)

    # -- the loop ---------------------------------------------------------------------------
    def _stop_receiving(self) -> None:
        if self._receiving is not None:
            self._receiving.cancel()
        self._slot_freed.set()

    async def serve_forever(self) -> None:
        """Read and dispatch until a shutdown is requested."""
        limit = self.settings.MAX_QUEUED_REQUESTS
        while not self.shutdown.requested:
            if len(self._queued) >= limit:    # backpressure: leave frames in ZeroMQ's queues
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            self._receiving = recv = self.sock.recv_multipart(copy=True)
            try:
                frames = await recv
            except asyncio.CancelledError:
                if self.shutdown.requested:
                    break
                raise
            finally:
                self._receiving = None
            if len(frames) < 2:
                continue
            try:
                self.handle(frames[0], frames[1:])
            except Exception:
                log.exception("server: unexpected error while handling a request")

    async def drain(self, timeout: float) -> None:
        """Refuse what is still queued, let in-flight requests finish (cycles are already told
        to stop), then cancel the rest."""
        while self._queued:
            identity, rid, _req = self._queued.popleft()
            self._send(identity, self._error_reply(rid, Busy("the kernel is shutting down")))
        if self._tasks:
            done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

    def close(self) -> None:
        if self.auth is not None:
            self.auth.stop()
        self.sock.close(linger=500)


class _WithId(Exception):
    def __init__(self, rid: Any, exc: Exception):
        self.rid, self.exc = rid, exc
