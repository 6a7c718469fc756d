"""Errors at the edge: the protocol's error types, and the one table that maps the
lower layers' own exceptions to them.

Below the server, each module raises exceptions of its own domain (the image's
``ObjectNotFound``, the sandbox's ``MethodFailed``, the memory's
``NothingToIngest``, ...); none of them knows the wire.  Where a reply is built,
``wire_error(exc)`` looks the exception's class up in ``ERROR_TABLE`` (the most
specific entry along its MRO wins) and gives the protocol's type, the message, the
extra fields of the error map and a result to send beside it.  Anything not in
the table is a bug: ``Internal``.

``BatosError`` and its subclasses are the protocol's types themselves, for errors
that are born at the edge (a frame that is not msgpack, an unknown command).
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

PROTOCOL_ERRORS = ("BadRequest", "UnknownCommand", "UnknownObject", "MethodError", "Timeout",
                   "Rejected", "Busy", "Internal")


class BatosError(Exception):
    """An error born at the edge, with the protocol's error type."""

    type = "Internal"

    def __init__(self, message: str, result: Any = None, **details: Any):
        super().__init__(message)
        self.message = message
        self.result = result    # a result to send beside the error
        self.details = details  # extra fields for the error map: {name -> msgpack value}


class BadRequest(BatosError):
    type = "BadRequest"


class UnknownCommand(BatosError):
    type = "UnknownCommand"


class Busy(BatosError):
    type = "Busy"


class Internal(BatosError):
    type = "Internal"


class WireError(NamedTuple):
    type: str
    message: str
    details: dict
    result: Any


@functools.lru_cache(maxsize=1)
def error_table() -> tuple[tuple[type, str], ...]:
    """{exception class -> protocol error type}, built on first use (the memory's module
    loads numpy, which the kernel keeps off its start path)."""
    from batos.image import ConflictsExhausted, ObjectNotFound
    from batos.kernel import (BadObject, CycleFailed, CycleQueueFull, InstallRefused, NestedLimit,
                              NotAMethod, ShuttingDown)
    from batos.knowledge import KnowledgeLoading, KnowledgeUnavailable
    from batos.llm.base import GenerationError
    from batos.llm.embedded import ModelUnavailable
    from batos.memory import KnowledgeError, NothingToIngest
    from batos.plain import NotPlain
    from batos.sandbox.pool import (MethodFailed, MethodTimedOut, SandboxBusy, SandboxClosed,
                                    SandboxUnavailable)
    from batos.uvm import ChangeRefused
    return (
        (BatosError, ""),                        # carries its own type
        (ObjectNotFound, "UnknownObject"),
        (NotPlain, "BadRequest"),
        (BadObject, "BadRequest"),
        (NothingToIngest, "BadRequest"),
        (ModelUnavailable, "BadRequest"),
        (KnowledgeUnavailable, "BadRequest"),
        (MethodFailed, "MethodError"),
        (ChangeRefused, "MethodError"),
        (NotAMethod, "MethodError"),
        (MethodTimedOut, "Timeout"),
        (InstallRefused, "Rejected"),
        (CycleFailed, "Rejected"),
        (NestedLimit, "Rejected"),
        (ShuttingDown, "Busy"),
        (CycleQueueFull, "Busy"),
        (SandboxClosed, "Busy"),
        (SandboxBusy, "Busy"),
        (KnowledgeLoading, "Busy"),
        (SandboxUnavailable, "Internal"),
        (ConflictsExhausted, "Internal"),
        (KnowledgeError, "Internal"),
        (GenerationError, "Internal"),
    )


def wire_error(exc: BaseException) -> WireError | None:
    """The protocol's view of ``exc``, or None when no entry covers it (a bug)."""
    table = dict(error_table())
    for cls in type(exc).__mro__:
        if cls in table:
            if isinstance(exc, BatosError):
                return WireError(exc.type, exc.message, dict(exc.details), exc.result)
            return WireError(table[cls], str(exc), dict(getattr(exc, "details", None) or {}),
                             getattr(exc, "result", None))
    return None
