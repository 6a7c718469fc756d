"""A sandbox worker: the process that runs installed methods.

Started by the kernel's ``SandboxPool`` with two pipes (requests on fd 0,
replies on fd 1), an empty environment and no other file descriptors.  It
imports what methods may use, locks itself down (``lockdown``), says hello,
and then serves one call at a time until its input closes.

Frames in both directions are a 4-byte big-endian length and a msgpack map.
A call carries the target object's view (plain-data slots as ``plain``
bytes, the selectors of its methods with their digests, the names of slots
that do not cross), the arguments and any method sources this worker has not
seen.  The reply carries the return value (as wire data) and the slots the
method changed, or an error.  Nothing a worker sends is trusted by the kernel
beyond that shape.
"""
from __future__ import annotations

import functools
import json
import os
import resource
import signal
import struct
import sys
import time
import types
from typing import Any

import ormsgpack

from batos import plain, restricted
from batos.sandbox import lockdown

HEADER = struct.Struct(">I")
RECURSION_LIMIT = 1000    # how deep a method may recurse


class Deadline(BaseException):
    """Raised by SIGALRM in a method past its time limit (a BaseException, so that
    ``except Exception`` in the method does not catch it)."""


class NeedsMethod(BaseException):
    """``self.name(...)`` called a method the object does not have: the call stops and the
    kernel is told (a BaseException, so that ``except Exception`` in the method does not
    swallow it)."""

    def __init__(self, selector: str, caller: str, args: tuple, kwargs: dict):
        super().__init__(selector)
        self.selector, self.caller, self.args, self.kwargs = selector, caller, args, kwargs


class _Missing:
    """What ``self.name`` is, in a send, when the object has no such slot."""

    __slots__ = ("selector", "caller")

    def __init__(self, selector: str, caller: str):
        self.selector, self.caller = selector, caller

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NeedsMethod(self.selector, self.caller, args, kwargs)


def _send(obj: Any, name: str, caller: str) -> Any:
    """``self.name`` in ``self.name(...)`` inside the method ``caller``."""
    if isinstance(obj, SlotSelf):
        st = obj._st
        if not (name in st.values or name in st.slots or name in st.methods or name in st.opaque) \
                or name in st.deleted:
            return _Missing(name, caller)
    return restricted.guarded_getattr(obj, name)


class CallState:
    """What one call may see and what it changed: the view of its object."""

    def __init__(self, worker: Worker, req: dict):
        self.worker = worker
        self.oid: str = req["oid"]
        self.slots: dict[str, bytes] = req.get("slots") or {}       # {name -> plain bytes}
        self.methods: dict[str, str] = req.get("methods") or {}     # {selector -> digest}
        self.opaque: dict[str, str] = req.get("opaque") or {}       # {name -> type name}
        self.own: set[str] = set(req.get("own") or ())
        self.values: dict[str, Any] = {}      # {name -> value read or written in this call}
        self.written: set[str] = set()
        self.deleted: set[str] = set()
        self.covenant = False
        self.self_obj = SlotSelf(self)

    def get(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        if name in self.deleted:
            raise AttributeError(f"{self.oid} has no slot '{name}' (the method deleted it)")
        data = self.slots.get(name)
        if data is not None:
            value = self.values[name] = plain.decode(data)
            return value
        digest = self.methods.get(name)
        if digest is not None:
            return types.MethodType(self.worker.function(digest), self.self_obj)
        if name in self.opaque:
            raise restricted.SandboxViolation(
                f"the slot '{name}' of {self.oid} holds a {self.opaque[name]}, which does not "
                "cross into the sandbox; methods see plain-data slots and methods only")
        raise AttributeError(f"{self.oid} has no slot '{name}'")

    def set(self, name: str, value: Any) -> None:
        self._check_writable(name)
        self.values[name] = value
        self.written.add(name)
        self.deleted.discard(name)

    def delete(self, name: str) -> None:
        self._check_writable(name)
        if name not in self.written and (name not in self.own or name in self.deleted):
            raise AttributeError(f"{self.oid} has no slot '{name}' of its own to delete")
        self.values.pop(name, None)
        self.written.discard(name)
        self.deleted.add(name)

    def _check_writable(self, name: str) -> None:
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise restricted.SandboxViolation(f"{name!r} is not a slot name a method may set")
        if name in self.methods:
            raise restricted.SandboxViolation(f"'{name}' is a method of {self.oid}; a method may not "
                                              "replace or delete it")
        if name in self.opaque:
            raise restricted.SandboxViolation(f"the slot '{name}' holds a {self.opaque[name]}; "
                                              "a method may not replace or delete it")

    def changes(self) -> tuple[dict[str, bytes], list[str]]:
        """({name -> plain bytes} to store, [names to delete]); a slot read and changed in
        place counts as changed."""
        out: dict[str, bytes] = {}
        for name, value in self.values.items():
            try:
                data = plain.encode(value)
            except plain.NotPlain as exc:
                raise restricted.SandboxViolation(f"the slot '{name}' cannot be stored: {exc}") from None
            if name in self.written:
                out[name] = data
            elif data != self.slots.get(name):
                # encodings differ (sets have no fixed order): compare the values
                if plain.decode(self.slots[name]) != value:
                    out[name] = data
        return out, sorted(self.deleted)


class SlotSelf:
    """``self`` inside a method: slots read and written through the call's state."""

    __slots__ = ("_st",)
    _sandbox_writable_ = True

    def __init__(self, state: CallState):
        object.__setattr__(self, "_st", state)

    def _sandbox_getattr_(self, name: str) -> Any:
        return self._st.get(name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._st.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._st.set(name, value)

    def __delattr__(self, name: str) -> None:
        self._st.delete(name)

    def __repr__(self) -> str:
        return f"<object {self._st.oid}>"


def _covenant(obj: Any) -> None:
    """``self._p_changed = True`` in a method."""
    if not isinstance(obj, SlotSelf):
        raise restricted.SandboxViolation("_p_changed may only be set on self")
    obj._st.covenant = True


def _on_alarm(signum: int, frame: Any) -> None:
    raise Deadline()


class Worker:
    def __init__(self, rfd: int, wfd: int, max_reply: int):
        self.rfd, self.wfd = rfd, wfd
        self.max_reply = max_reply
        self.sources: dict[str, tuple[str, str, str]] = {}   # {digest -> (selector, source, label)}
        self.functions: dict[str, types.FunctionType] = {}   # {digest -> compiled function}

    def function(self, digest: str) -> types.FunctionType:
        func = self.functions.get(digest)
        if func is None:
            try:
                selector, source, label = self.sources[digest]
            except KeyError:
                raise restricted.SandboxViolation(f"the kernel did not send method {digest}") from None
            func = restricted.load_method(selector, source, label, _covenant,
                                          functools.partial(_send, caller=selector))
            self.functions[digest] = func
        return func

    # -- framing ----------------------------------------------------------------
    def read_exact(self, n: int) -> bytes | None:
        chunks, got = [], 0
        while got < n:
            chunk = os.read(self.rfd, n - got)
            if not chunk:
                return None
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def send(self, message: dict, label: str = "the call") -> None:
        body = ormsgpack.packb(message)
        if len(body) > self.max_reply:
            body = ormsgpack.packb(_error(
                "MethodError", f"{label}: its reply (the value and the changed slots) is larger than "
                f"{self.max_reply} bytes (MAX_MESSAGE_BYTES); nothing was saved", "ReplyTooLarge"))
        data = HEADER.pack(len(body)) + body
        view = memoryview(data)
        while view:
            view = view[os.write(self.wfd, view):]

    def serve(self) -> None:
        while True:
            head = self.read_exact(HEADER.size)
            if head is None:
                return
            body = self.read_exact(HEADER.unpack(head)[0])
            if body is None:
                return
            req = ormsgpack.unpackb(body)
            for digest, (selector, source, label) in (req.get("sources") or {}).items():
                self.sources[digest] = (selector, source, label)
            reply = self.call(req)
            reply["cpu_s"] = round(_cpu_seconds(), 3)
            self.send(reply, f"{req.get('oid')}.{req.get('selector')}")

    # -- one call -----------------------------------------------------------------
    def call(self, req: dict) -> dict:
        label = f"{req['oid']}.{req['selector']}"
        state = CallState(self, req)
        try:
            func = self.function(state.methods[req["selector"]])
            args = plain.from_tree(req.get("args") or ["l"])
            kwargs = plain.from_tree(req.get("kwargs") or ["d"])
            signal.setitimer(signal.ITIMER_REAL, float(req["timeout"]))
            try:
                value = plain.to_wire(func(state.self_obj, *args, **kwargs))
                changes, deleted = state.changes()
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            if (changes or deleted) and not state.covenant:
                names = sorted(set(changes) | set(deleted))
                return _error("MethodError", f"{label} broke the Persistence Covenant: it changed "
                              f"{', '.join(repr(n) for n in names)} without setting "
                              "self._p_changed = True; nothing was saved", "CovenantError")
            return {"ok": True, "value": value, "changes": changes, "deleted": deleted}
        except NeedsMethod as need:
            try:
                call = {"selector": need.selector, "caller": need.caller,
                        "args": plain.to_tree(list(need.args)), "kwargs": plain.to_tree(dict(need.kwargs))}
            except plain.NotPlain as exc:
                return _error("MethodError", f"{label}: self.{need.selector}(...) is not a method of "
                              f"{req['oid']}, and its arguments are not plain data ({_short(exc)})",
                              "AttributeError")
            return {**_error("NotUnderstood", f"{label}: {req['oid']} does not understand "
                             f"'{need.selector}' (called by {need.caller})", "NotUnderstood"),
                    "needs": call}
        except Deadline:
            return _error("Timeout", f"{label} ran past its time limit of {req['timeout']:g}s",
                          "Timeout", recycle=True)
        except MemoryError:
            return _error("MethodError", f"{label} raised MemoryError (the sandbox allows "
                          "a worker a limited amount of memory)", "MemoryError", recycle=True)
        except RecursionError:
            return _error("MethodError", f"{label} raised RecursionError: maximum recursion depth "
                          "exceeded", "RecursionError")
        except restricted.SandboxViolation as exc:
            return _error("MethodError", f"{label} was stopped by the sandbox: {_short(exc)}",
                          "SandboxViolation")
        except BaseException as exc:   # the method's own error, SystemExit included
            return _error("MethodError", f"{label} raised {type(exc).__name__}: {_short(exc)}",
                          type(exc).__name__)


def _error(kind: str, message: str, exception: str, recycle: bool = False) -> dict:
    return {"ok": False, "type": kind, "message": message, "exception": exception, "recycle": recycle}


def _short(exc: BaseException) -> str:
    try:
        text = str(exc)
    except BaseException:
        text = "<unprintable>"
    return text if len(text) <= 2000 else text[:2000] + "..."


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _warm_up() -> None:
    """Import and touch, before the lockdown, everything that loads files lazily."""
    import datetime
    import importlib
    for name in sorted(restricted.ALLOWED_MODULES):
        restricted.safe_module(name)
    for name in sorted(restricted.INTERNAL_IMPORTS):   # what their C code imports (time, ...)
        importlib.import_module(name)
    for codec in ("ascii", "latin_1", "utf_16", "utf_32", "cp1252", "unicode_escape",
                  "raw_unicode_escape", "idna", "punycode", "utf_8_sig", "utf_16_le", "utf_16_be",
                  "utf_32_le", "utf_32_be", "utf_7", "iso8859_15", "cp437", "mac_roman"):
        importlib.import_module(f"encodings.{codec}")
    datetime.datetime.strptime("2024-01-02 03:04", "%Y-%m-%d %H:%M")
    time.strptime("2024", "%Y")
    time.tzset()
    time.localtime()
    datetime.datetime.now().astimezone()
    restricted.load_method("warm", "def warm(self, n=3):\n    'w'\n    return [i * 2 for i in range(n)]\n",
                           "warm-up", _covenant)(None)


def main() -> int:
    config = json.loads(sys.argv[1])
    lockdown.die_with_parent(config["parent_pid"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rfd, wfd = os.dup(0), os.dup(1)
    hello: dict[str, Any] = {"hello": True, "pid": os.getpid()}
    try:
        _warm_up()
        hello["layers"] = ["restricted-python"] + lockdown.lock_down(
            memory_mb=config["memory_mb"], cpu_s=config["cpu_s"], keep_fds={rfd, wfd},
            require_seccomp=config["require_seccomp"])
    except Exception as exc:
        hello = {"hello": False, "error": f"{type(exc).__name__}: {exc}"}
    worker = Worker(rfd, wfd, config["max_reply"])
    signal.signal(signal.SIGALRM, _on_alarm)
    sys.setrecursionlimit(RECURSION_LIMIT)
    worker.send(hello)
    if not hello["hello"]:
        return 1
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
