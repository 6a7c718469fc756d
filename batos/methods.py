"""Compiling a method's source into a function, in a namespace with safe builtins.

Methods live in the image as source (functions cannot be pickled) and are
compiled here the first time they are used after a load.  The source is
audited again before it is compiled, so code that reached the image some other
way than VALIDATING still meets the PersistenceGuardian.
"""
from __future__ import annotations

import builtins
import importlib
from types import FunctionType
from typing import Any

from batos import guardian
from batos.errors import MethodError

_SAFE_NAMES = (
    "abs", "all", "any", "ascii", "bin", "bool", "bytearray", "bytes", "callable", "chr",
    "complex", "dict", "divmod", "enumerate", "filter", "float", "format", "frozenset",
    "getattr", "hasattr", "hash", "hex", "int", "isinstance", "issubclass", "iter", "len",
    "list", "map", "max", "min", "next", "oct", "ord", "pow", "print", "range", "repr",
    "reversed", "round", "set", "setattr", "delattr", "slice", "sorted", "str", "sum",
    "tuple", "type", "zip", "None", "True", "False", "NotImplemented", "Ellipsis",
    # exceptions a method may raise or catch
    "ArithmeticError", "AssertionError", "AttributeError", "Exception", "IndexError",
    "KeyError", "LookupError", "NotImplementedError", "OverflowError", "RecursionError",
    "RuntimeError", "StopIteration", "TypeError", "UnicodeError", "ValueError",
    "ZeroDivisionError",
)


def _guarded_import(name: str, globals: Any = None, locals: Any = None,
                    fromlist: Any = (), level: int = 0) -> Any:
    if level != 0 or name.split(".")[0] not in guardian.ALLOWED_MODULES:
        raise ImportError(f"import of '{name}' is not allowed in a method")
    module = importlib.import_module(name)
    return module if fromlist else importlib.import_module(name.split(".")[0])


SAFE_BUILTINS: dict[str, Any] = {n: getattr(builtins, n) for n in _SAFE_NAMES}
SAFE_BUILTINS["__import__"] = _guarded_import


def compile_method(selector: str, source: str, label: str) -> FunctionType:
    """The function that ``source`` defines, audited and compiled; MethodError if it cannot be."""
    report = guardian.audit(source, selector)
    if not report.ok:
        raise MethodError(f"the stored method {label} fails the audit: {'; '.join(report.findings)}")
    namespace: dict[str, Any] = {"__builtins__": SAFE_BUILTINS, "__name__": f"batos.method.{selector}"}
    try:
        code = compile(source, f"<method {label}>", "exec")
        exec(code, namespace)  # noqa: S102 - audited source, safe builtins
    except Exception as exc:
        raise MethodError(f"the method {label} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    func = namespace.get(selector)
    if not isinstance(func, FunctionType):
        raise MethodError(f"the source of {label} does not define a function '{selector}'")
    return func
