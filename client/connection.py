"""A DEALER connection to the kernel: requests carry ids, replies are matched to them,
and every wait has a timeout.  With CURVE keys (``batos.curve.client_keys``) the socket
speaks CurveZMQ, and a handshake the kernel refuses fails the wait at once (ZeroMQ itself
says nothing: the socket's monitor does)."""
from __future__ import annotations

import itertools
import os
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, Optional

import zmq
from zmq.utils.monitor import recv_monitor_message

from batos import protocol as p

if TYPE_CHECKING:
    from batos.curve import ClientKeys

_HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                     | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


class KernelError(Exception):
    """The kernel answered ``ok: false``."""

    def __init__(self, reply: dict):
        error = reply.get("error") or {}
        super().__init__(f"{error.get('type', 'Error')}: {error.get('message', '')}")
        self.reply = reply
        self.type = error.get("type", "Error")
        self.message = error.get("message", "")


class KernelUnavailable(Exception):
    """No reply came within the timeout: the kernel is down, restarting or busy."""


class CurveRefused(KernelUnavailable):
    """The kernel did not accept this client's CURVE handshake."""


def refusal_message(endpoint: str, event: int, value: int) -> str:
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return (f"the kernel at {endpoint} does not speak CURVE (it runs with BATOS_CURVE=0); "
                "connect without --server-key/--client-cert, or turn CURVE on there")
    why = ("the kernel refused this client's key" if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH
           else "the kernel could not read this client's hello, as with a wrong server key")
    return (f"the kernel at {endpoint} did not accept this client's CURVE handshake: wrong server "
            f"key, or this client's certificate is not authorized (BATOS_HOME/curve/authorized/) "
            f"[{why}]")


class Connection:
    def __init__(self, endpoint: str, *, timeout_s: float = 10.0, identity: bytes | None = None,
                 context: zmq.Context | None = None, curve: "ClientKeys | None" = None):
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.curve = curve
        self._ctx = context or zmq.Context.instance()
        self.identity = identity or f"client-{os.getpid()}-{uuid.uuid4().hex[:8]}".encode()
        self._ids = itertools.count(1)
        self._early: dict[Any, list[dict]] = {}   # {request id -> replies read while waiting for another}
        self._open()

    def _open(self) -> None:
        self.sock = self._ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.IDENTITY, self.identity)
        self.sock.setsockopt(zmq.LINGER, 0)
        self._monitor: zmq.Socket | None = None
        self._poller: zmq.Poller | None = None
        if self.curve is not None:
            self.curve.apply(self.sock)
            self._monitor = self.sock.get_monitor_socket(_HANDSHAKE_EVENTS)
            self._poller = zmq.Poller()
            self._poller.register(self.sock, zmq.POLLIN)
            self._poller.register(self._monitor, zmq.POLLIN)
        self.sock.connect(self.endpoint)

    def reconnect(self) -> None:
        """Drop the socket (and anything queued on it) and connect afresh."""
        self.close()
        self._early.clear()
        self._open()

    def close(self) -> None:
        if self._monitor is not None:
            try:
                self.sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self._monitor.close(linger=0)
            self._monitor = None
        self.sock.close(linger=0)

    def _poll(self, timeout_ms: int) -> bool:
        """True when a reply is waiting; CurveRefused as soon as the monitor reports a refused
        handshake."""
        if self._poller is None:
            return bool(self.sock.poll(timeout_ms))
        ready = dict(self._poller.poll(timeout_ms))
        if self._monitor in ready:
            self.check_handshake()
        return self.sock in ready

    def check_handshake(self) -> None:
        """Read the monitor's events; CurveRefused for a failed CURVE handshake."""
        while self._monitor is not None and self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)
            if event["event"] != zmq.EVENT_HANDSHAKE_SUCCEEDED:
                raise CurveRefused(refusal_message(self.endpoint, event["event"], event["value"]))

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- requests --------------------------------------------------------------------
    def send(self, request: dict) -> Any:
        """Send one request without waiting; returns its id (one is assigned if missing)."""
        request = dict(request)
        if request.get("id") is None:
            request["id"] = f"{self.identity.decode()}-{next(self._ids)}"
        self.sock.send(p.pack(request))
        return request["id"]

    def wait(self, request_id: Any, timeout_s: Optional[float] = None,
             on_progress: Optional[Callable[[dict], None]] = None) -> dict:
        """The final reply to ``request_id``; progress events go to ``on_progress``."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            queued = self._early.get(request_id)
            while queued:
                msg = queued.pop(0)
                if msg.get("final"):
                    self._early.pop(request_id, None)
                    return msg
                if on_progress:
                    on_progress(msg)
            left = deadline - time.monotonic()
            if left <= 0 or not self._poll(int(left * 1000) + 1):
                if time.monotonic() >= deadline:
                    raise KernelUnavailable(
                        f"no reply from the kernel at {self.endpoint} within "
                        f"{(self.timeout_s if timeout_s is None else timeout_s):g}s")
                continue
            msg = p.unpack(self.sock.recv())
            self._early.setdefault(msg.get("id"), []).append(msg)

    def request(self, request: dict, timeout_s: Optional[float] = None,
                on_progress: Optional[Callable[[dict], None]] = None) -> dict:
        return self.wait(self.send(request), timeout_s, on_progress)

    def call(self, command: str, timeout_s: Optional[float] = None,
             on_progress: Optional[Callable[[dict], None]] = None, **fields: Any) -> Any:
        """The ``result`` of a command; KernelError when the kernel says ``ok: false``."""
        reply = self.request({"command": command, **fields}, timeout_s, on_progress)
        if not reply.get("ok"):
            raise KernelError(reply)
        return reply.get("result")
