"""The sandbox's language policy, kept in one place.  Pure; imports nothing but ``ast``.

Two layers enforce it and both import it from here, so that they cannot drift:

- ``batos.restricted`` at run time: RestrictedPython's compile, the guards
  (``guarded_getattr``, ``guarded_import``, the module proxies) and the builtins
  a method is given;
- ``batos.guardian`` at install time: the PersistenceGuardian's audit of the
  source, which refuses what the sandbox would refuse, with a clearer message and
  before the method's first call.

The guardian may refuse more than the sandbox (it sees the source), never less;
``tests/test_sandbox_policy.py`` checks that they agree.
"""
from __future__ import annotations

import ast

# pure modules a method may import (and their public submodules)
ALLOWED_MODULES = frozenset({
    "math", "cmath", "re", "json", "datetime", "collections", "itertools", "functools",
    "string", "statistics", "random", "decimal", "fractions", "textwrap", "operator",
    "heapq", "bisect", "unicodedata",
})

# modules the allowed modules import for themselves from C, through the calling frame's
# ``__import__`` (which in a method is the guarded import): ``datetime`` imports ``time``
# for strftime, timetuple and today, and ``_strptime`` for strptime.  The worker imports
# them before it locks down; the guarded import lets exactly these through when C code a
# method called asks for them, and hands nothing back (``batos.restricted``).  A method's
# own ``import time`` stays refused: they are not allowed modules.
INTERNAL_IMPORTS = frozenset({"time", "_strptime"})

# public names held back from the module proxies (and from every allowed module that
# re-exports the same object, e.g. statistics.namedtuple, functools.namedtuple)
HIDDEN_NAMES = frozenset({
    # they reach attributes unguarded
    "string.Formatter",          # Formatter().format("{0.__class__}", x)
    "operator.attrgetter",       # attrgetter("__globals__")(f)
    "operator.methodcaller",     # methodcaller("format", ...)
    "functools.update_wrapper",  # update_wrapper(f, g, updated=("__globals__",)): g's globals
    "functools.wraps",           #   (sys, ...) poured into the method's own
    # they evaluate source text unrestricted: register() reads a function's string
    # annotations with typing.get_type_hints, i.e. eval() in the method's globals
    "functools.singledispatch",
    "functools.singledispatchmethod",
    # they create classes (a method may not: no class statement, one-argument type())
    "collections.namedtuple",    # namedtuple("P", "x y") builds a class (with eval)
    # it changes classes every method shares (sets comparison methods on its argument)
    "functools.total_ordering",
})

# the attribute names of the hidden names ('Formatter', 'attrgetter', ...): the audit
# refuses them on any value, since it cannot always tell which module a name holds
HIDDEN_ATTRS = frozenset(name.rpartition(".")[2] for name in HIDDEN_NAMES)

# dunder attributes a method may read (never set or delete): names and docstrings of
# types and functions, e.g. type(x).__name__; the run-time guard hands out only a str or None
READABLE_DUNDERS = frozenset({"__name__", "__qualname__", "__doc__"})

# attributes refused even though they have no leading underscore: frames, code,
# globals, the format helpers that reach into attributes, AttributeError.obj, and
# ABCMeta.register (it changes classes every method in a worker shares)
BLOCKED_ATTRS = frozenset({
    "gi_frame", "gi_code", "gi_yieldfrom", "gi_running", "gi_suspended",
    "cr_frame", "cr_code", "cr_await", "cr_origin", "cr_running",
    "ag_frame", "ag_code", "ag_await", "ag_running",
    "f_back", "f_globals", "f_locals", "f_builtins", "f_code", "f_trace", "f_generator",
    "tb_frame", "tb_next", "func_globals", "func_code", "mro", "with_traceback",
    "format_map", "vformat", "get_field", "obj",
    "register",   # collections.abc.Hashable.register(list): list is now Hashable
})

# the builtins a method is given as they are
SAFE_BUILTINS = (
    "abs", "all", "any", "ascii", "bin", "bool", "bytearray", "bytes", "callable", "chr",
    "complex", "dict", "divmod", "enumerate", "filter", "float", "format", "frozenset",
    "hash", "hex", "int", "isinstance", "issubclass", "iter", "len", "list", "map", "max",
    "min", "next", "oct", "ord", "pow", "range", "repr", "reversed", "round", "set", "slice",
    "sorted", "str", "sum", "tuple", "zip", "None", "True", "False", "NotImplemented", "Ellipsis",
    "ArithmeticError", "AssertionError", "AttributeError", "Exception", "IndexError",
    "KeyError", "LookupError", "NameError", "NotImplementedError", "OverflowError",
    "RecursionError", "RuntimeError", "StopIteration", "TypeError", "UnicodeError",
    "ValueError", "ZeroDivisionError",
)

# the builtins a method is given as guards instead (``batos.restricted``)
GUARDED_BUILTINS = frozenset({"getattr", "hasattr", "setattr", "delattr", "type", "__import__"})

# names the audit refuses outright: none of them is among SAFE_BUILTINS, so the
# sandbox does not hand them out either ('__import__' only as the guarded import
# behind the import statement)
FORBIDDEN_NAMES = frozenset({
    "eval", "exec", "compile", "open", "__import__", "globals", "locals", "vars", "input",
    "breakpoint", "memoryview", "help", "exit", "quit", "copyright", "credits", "license",
    "__builtins__", "__loader__", "__spec__", "classmethod", "staticmethod", "property",
    "super", "object",
})


def module_allowed(name: str) -> bool:
    """Whether a method may import the module ``name``: an allowed module or one of
    its public submodules (no part of the dotted name may start with '_')."""
    parts = name.split(".")
    return parts[0] in ALLOWED_MODULES and not any(p.startswith("_") or not p for p in parts)


def attr_blocked(name: str) -> bool:
    """Whether a method may not read the attribute ``name`` (private, dunder, or blocked);
    the few READABLE_DUNDERS excepted."""
    return (name.startswith("_") and name not in READABLE_DUNDERS) or name in BLOCKED_ATTRS


def is_covenant(stmt: ast.AST) -> bool:
    """Whether ``stmt`` is the covenant line, exactly ``self._p_changed = True``."""
    return (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Attribute)
            and isinstance(stmt.targets[0].value, ast.Name) and stmt.targets[0].value.id == "self"
            and stmt.targets[0].attr == "_p_changed"
            and isinstance(stmt.value, ast.Constant) and stmt.value.value is True)
