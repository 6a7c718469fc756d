"""The kernel's error classes, one per protocol error type.

The server maps exceptions to wire errors in one place: a ``BatosError`` carries
its protocol type; anything else becomes ``Internal``.
"""
from __future__ import annotations

from typing import Any


class BatosError(Exception):
    """An error the caller should see, with the protocol's error type."""

    type = "Internal"

    def __init__(self, message: str, result: Any = None, **details: Any):
        super().__init__(message)
        self.message = message
        self.result = result    # a result to send beside the error (e.g. a FAILED install's findings)
        self.details = details  # extra fields for the error map: {name -> msgpack value}


class BadRequest(BatosError):
    type = "BadRequest"


class UnknownCommand(BatosError):
    type = "UnknownCommand"


class UnknownObject(BatosError):
    type = "UnknownObject"


class MethodError(BatosError):
    type = "MethodError"


class Timeout(BatosError):
    type = "Timeout"


class Rejected(BatosError):
    type = "Rejected"


class Busy(BatosError):
    type = "Busy"


class Internal(BatosError):
    type = "Internal"


ERROR_TYPES = tuple(cls.type for cls in (BadRequest, UnknownCommand, UnknownObject, MethodError,
                                          Timeout, Rejected, Busy, Internal))
