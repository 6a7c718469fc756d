"""RestrictedPython for installed methods: the policy, the guards, the safe modules.

This is the language-level layer of the sandbox (the PersistenceGuardian's
audit comes before it, the worker process's OS limits after it).  A method is
compiled with RestrictedPython's transformer, extended in three ways:

- the covenant line ``self._p_changed = True`` becomes ``_covenant_(self)``
  (RestrictedPython refuses every name that starts with ``_``);
- ``nonlocal`` is allowed (a closure's counter is ordinary code);
- ``a.b += v`` and ``a[k] += v`` become ``a.b = a.b + v`` and
  ``a[k] = a[k] + v`` (an ``a`` or ``k`` with calls in it is evaluated once,
  into a local, first), because RestrictedPython refuses augmented assignment
  to attributes and items outright.

It also lets a method read the few harmless dunders of ``READABLE_DUNDERS``
(``type(x).__name__``, ``f.__doc__``), through the guard like any attribute.

At run time every attribute read goes through ``guarded_getattr``, every item
read through ``_getitem_``, every attribute or item write through
``_write_``, and imports through ``guarded_import``, which hands out
read-only proxies of an allowlist of pure modules (and lets the C code of those
modules import the few modules it needs for itself, ``INTERNAL_IMPORTS``).
No guard hands out a metaclass: ``type(int)`` is ``type``, which would build a
class from three arguments, so ``type()`` of a class is refused.  The lists
themselves (the allowed modules, the hidden names, the blocked attributes, the
readable dunders, the builtins given) and the covenant line's shape live in
``batos.policy``, which the guardian's audit reads too.  Nothing here does I/O;
the worker imports it before it locks itself down.
"""
from __future__ import annotations

import ast
import builtins
import copy
import dis
import importlib
import operator
import string
import sys
import types
from typing import Any

from RestrictedPython import compile_restricted_exec
from RestrictedPython.Guards import (
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
)
from RestrictedPython.PrintCollector import PrintCollector
from RestrictedPython.transformer import RestrictingNodeTransformer, copy_locations

# the policy itself (what may be imported, what is hidden, blocked or given) lives in
# batos.policy, shared with the guardian's audit; BLOCKED_ATTRS is re-exported here
from batos.policy import (  # noqa: F401
    ALLOWED_MODULES,
    BLOCKED_ATTRS,
    HIDDEN_ATTRS,
    HIDDEN_NAMES,
    INTERNAL_IMPORTS,
    READABLE_DUNDERS,
    SAFE_BUILTINS,
    attr_blocked,
    is_covenant,
    module_allowed,
)

_WRITABLE = (list, dict, set, bytearray)   # and their subclasses (deque, Counter, ...)


class SandboxViolation(Exception):
    """Something a method may not do; raised at run time by a guard."""


# ------------------------------------------------------------------ the policy

def _pure(node: ast.AST) -> bool:
    """An expression that can be evaluated twice with the same result and no effects."""
    if isinstance(node, (ast.Name, ast.Constant)):
        return True
    if isinstance(node, ast.Attribute):
        return _pure(node.value)
    if isinstance(node, ast.Subscript):
        return _pure(node.value) and _pure(node.slice)
    if isinstance(node, ast.UnaryOp):
        return _pure(node.operand)
    return False


class _Load(ast.NodeTransformer):
    def generic_visit(self, node: ast.AST) -> ast.AST:
        if hasattr(node, "ctx"):
            node.ctx = ast.Load()
        return super().generic_visit(node)


class MethodPolicy(RestrictingNodeTransformer):
    def visit_Nonlocal(self, node: ast.Nonlocal) -> Any:
        """Allowed (RestrictedPython refuses it): it binds a name of the enclosing
        function, nothing more; the names are checked like any other."""
        for name in node.names:
            self.check_name(node, name)
        return node

    def visit_Assign(self, node: ast.Assign) -> Any:
        if is_covenant(node):
            call = ast.Call(func=ast.Name("_covenant_", ast.Load()),
                            args=[ast.Name("self", ast.Load())], keywords=[])
            new = ast.Expr(call)
            copy_locations(new, node)
            copy_locations(call, node)
            ast.fix_missing_locations(new)
            return new
        return super().visit_Assign(node)

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        """A read of one of the READABLE_DUNDERS (``type(x).__name__``) becomes
        ``_getattr_(x, '__name__')`` like any attribute read (RestrictedPython refuses
        every name that starts with '_'); writing or deleting one stays refused."""
        if node.attr in READABLE_DUNDERS and isinstance(node.ctx, ast.Load):
            node = self.node_contents_visit(node)
            call = ast.Call(func=ast.Name("_getattr_", ast.Load()),
                            args=[node.value, ast.Constant(node.attr)], keywords=[])
            copy_locations(call, node)
            return call
        return super().visit_Attribute(node)

    def visit_Call(self, node: ast.Call) -> Any:
        """A send to self, ``self.name(...)``, looks ``name`` up with ``_send_(self, 'name')``
        instead of ``_getattr_``: a missing method is then reported to the kernel (which
        may write it: doesNotUnderstand inside methods), while reading a missing slot
        without calling it stays an AttributeError."""
        f = node.func
        send = (isinstance(f, ast.Attribute) and isinstance(f.ctx, ast.Load) and isinstance(f.value, ast.Name)
                and f.value.id == "self" and not f.attr.startswith("_"))
        node = super().visit_Call(node)
        if send:
            for call in (node.func, *(node.args[:1] if isinstance(node.func, ast.Name) else ())):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                        and call.func.id == "_getattr_"):
                    call.func.id = "_send_"
                    break
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        t = node.target
        if not isinstance(t, (ast.Attribute, ast.Subscript)) or isinstance(
                getattr(t, "slice", None), ast.Slice):
            return super().visit_AugAssign(node)
        prelude: list[ast.stmt] = []
        t = copy.deepcopy(t)
        # evaluate an impure object or key once, into a local, as Python itself does
        parts = [("value", t.value)] + ([("slice", t.slice)] if isinstance(t, ast.Subscript) else [])
        for field, expr in parts:
            if not _pure(expr):
                tmp = f"augmented_{field}_{node.lineno}_{node.col_offset}"
                prelude.append(ast.Assign(targets=[ast.Name(tmp, ast.Store())], value=expr))
                setattr(t, field, ast.Name(tmp, ast.Load()))
        load = _Load().visit(copy.deepcopy(t))
        stmts = prelude + [ast.Assign(targets=[t], value=ast.BinOp(left=load, op=node.op,
                                                                   right=node.value))]
        for stmt in stmts:
            copy_locations(stmt, node)
            ast.fix_missing_locations(stmt)
        return [self.visit(stmt) for stmt in stmts]


def compile_source(source: str, label: str) -> tuple[types.CodeType | None, list[str]]:
    """(code, []) or (None, [errors]): RestrictedPython's compile of a method's source."""
    try:
        result = compile_restricted_exec(source, filename=f"<method {label}>", policy=MethodPolicy)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return None, [f"RestrictedPython cannot compile the method: {type(exc).__name__}: {exc}"]
    if result.errors:
        return None, [f"RestrictedPython: {e}" for e in result.errors]
    return result.code, []


# ------------------------------------------------------------------ the guards

class SafeModule:
    """A read-only view of an allowed module: its public names, minus the hidden
    ones and minus any module that is not itself allowed."""

    __slots__ = ("_name", "_names")

    def __init__(self, name: str, names: dict[str, Any]):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_names", names)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._names[name]
        except KeyError:
            raise AttributeError(f"module '{self._name}' has no attribute '{name}' "
                                 "(or it is not available to methods)") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise SandboxViolation(f"module '{self._name}' is read-only in a method")

    __delattr__ = __setattr__

    def __dir__(self) -> list[str]:
        return sorted(self._names)

    def __repr__(self) -> str:
        return f"<module '{self._name}'>"


_proxies: dict[str, SafeModule] = {}
_hidden: dict[int, Any] = {}     # {id -> object} of the hidden names, wherever re-exported


def is_metaclass(value: Any) -> bool:
    """Whether ``value`` is a metaclass (``type`` or a subclass): called with three
    arguments, it builds a class.  No guard hands one to a method."""
    return isinstance(value, type) and issubclass(value, type)


def _hidden_objects() -> dict[int, Any]:
    if not _hidden:
        for dotted in HIDDEN_NAMES:
            module, _, attr = dotted.rpartition(".")
            value = getattr(importlib.import_module(module), attr)
            _hidden[id(value)] = value
    return _hidden


def safe_module(name: str) -> SafeModule:
    """The proxy of an allowed module (built once per process)."""
    proxy = _proxies.get(name)
    if proxy is None:
        if not module_allowed(name):
            raise ImportError(f"import of '{name}' is not allowed in a method "
                              f"(allowed: {', '.join(sorted(ALLOWED_MODULES))})")
        module = importlib.import_module(name)
        hidden = _hidden_objects()
        names: dict[str, Any] = {}
        _proxies[name] = proxy = SafeModule(name, names)   # before filling: modules can cycle
        for attr in dir(module):
            if attr.startswith("_") or f"{name}.{attr}" in HIDDEN_NAMES or attr in HIDDEN_ATTRS:
                continue
            value = getattr(module, attr)
            if id(value) in hidden or is_metaclass(value):   # statistics.namedtuple, ...
                continue
            if isinstance(value, types.ModuleType):
                sub = value.__name__
                if module_allowed(sub):
                    names[attr] = safe_module(sub)
                continue
            names[attr] = value
    return proxy


_IMPORT_NAME = dis.opmap["IMPORT_NAME"]


def _imported_by_c_code(frame: types.FrameType | None) -> bool:
    """Whether this call of ``__import__`` comes from C code that a method called (the
    ``datetime`` module's strftime importing ``time``), not from the method's own import.

    C code imports through ``PyImport_Import``, which calls the ``__import__`` of the
    builtins of the innermost Python frame, here the method's; that frame is then busy
    with a call (CALL, FORMAT_VALUE, ...), never with IMPORT_NAME, which is the one
    instruction an import statement runs.  A caller outside the sandbox (whose builtins
    are not a method's) gets the plain policy."""
    if frame is None or frame.f_builtins.get("__import__") is not guarded_import:
        return False
    lasti = frame.f_lasti
    return lasti >= 0 and frame.f_code.co_code[lasti] != _IMPORT_NAME


def guarded_import(name: str, globals: Any = None, locals: Any = None,
                   fromlist: Any = (), level: int = 0) -> SafeModule | None:
    if level != 0 or not isinstance(name, str):
        raise ImportError("relative imports are not allowed in a method")
    if name in INTERNAL_IMPORTS and _imported_by_c_code(sys._getframe(1)):
        if name not in sys.modules:    # a worker imports them before it locks down
            importlib.import_module(name)
        return None    # PyImport_Import takes the module from sys.modules, not from here
    module = safe_module(name)    # the whole dotted name is checked: 're._parser' is refused
    if fromlist:
        return module
    return safe_module(name.split(".")[0])


def _check_template(template: str) -> None:
    """Refuse format fields that reach into attributes or items ('{0.x}', '{0[k]}')."""
    for _text, field, spec, _conv in string.Formatter().parse(template):
        if field is not None and ("." in field or "[" in field):
            raise SandboxViolation(f"format field {{{field}}} reaches into an attribute or item; "
                                   "methods may only use plain fields like {0} or {name}")
        if spec:
            _check_template(spec)


def _safe_format(template: str, *args: Any, **kwargs: Any) -> str:
    _check_template(template)
    return template.format(*args, **kwargs)


def guarded_getattr(obj: Any, name: str, *default: Any) -> Any:
    """``getattr`` for methods: no private names, no frames or code, no real modules."""
    if not isinstance(name, str):
        raise TypeError("attribute name must be a string")
    if attr_blocked(name):
        raise SandboxViolation(f"access to the attribute '{name}' is not allowed in a method")
    dunder = name in READABLE_DUNDERS
    hook = getattr(type(obj), "_sandbox_getattr_", None)
    try:
        if hook is not None:
            return hook(obj, name)
        if name == "format" and (obj is str or isinstance(obj, str)):
            return _safe_format if obj is str else (lambda *a, **k: _safe_format(obj, *a, **k))
        value = getattr(obj, name)
    except AttributeError:
        if default:
            return default[0]
        raise
    if isinstance(value, (types.ModuleType, types.FrameType, types.CodeType, types.TracebackType)):
        raise SandboxViolation(f"the attribute '{name}' leads out of the sandbox")
    if dunder and not (value is None or type(value) is str):
        raise SandboxViolation(f"the attribute '{name}' of this value is not a name or a docstring")
    if is_metaclass(value):
        raise SandboxViolation(f"the attribute '{name}' is a metaclass, which creates classes; "
                               "a method may not create classes")
    return value


def guarded_hasattr(obj: Any, name: str) -> bool:
    try:
        guarded_getattr(obj, name)
    except (AttributeError, SandboxViolation):
        return False
    return True


def guarded_write(obj: Any) -> Any:
    """The object a method may assign attributes or items on."""
    if isinstance(obj, _WRITABLE) or getattr(type(obj), "_sandbox_writable_", False):
        return obj
    raise SandboxViolation(f"a method may not change attributes or items of a {type(obj).__name__}")


def guarded_setattr(obj: Any, name: str, value: Any) -> None:
    if not isinstance(name, str) or name.startswith("_"):
        raise SandboxViolation("setattr() may only set public slots")
    setattr(guarded_write(obj), name, value)


def guarded_delattr(obj: Any, name: str) -> None:
    if not isinstance(name, str) or name.startswith("_"):
        raise SandboxViolation("delattr() may only delete public slots")
    delattr(guarded_write(obj), name)


def guarded_type(*args: Any) -> type:
    """``type(x)`` for methods: one argument, and never a metaclass (``type(int)`` is
    ``type``, which builds a class from three arguments; ``type(Mapping)`` is ABCMeta)."""
    if len(args) != 1:
        raise SandboxViolation("type() takes one argument in a method (it may not create classes)")
    result = type(args[0])
    if is_metaclass(result):
        raise SandboxViolation(f"type() of a class is its metaclass ('{result.__name__}'), which "
                               "creates classes; a method may not have it")
    return result


def _getitem(obj: Any, key: Any) -> Any:
    value = obj[key]
    if is_metaclass(value):
        raise SandboxViolation("a metaclass creates classes; a method may not have one")
    return value


def _apply(func: Any, *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


_INPLACE = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
    ">>=": operator.irshift, "&=": operator.iand, "|=": operator.ior, "^=": operator.ixor,
    "@=": operator.imatmul,
}


def _inplacevar(op: str, x: Any, y: Any) -> Any:
    return _INPLACE[op](x, y)


class QuietPrintCollector(PrintCollector):
    """print() in a method: collected (bounded) and dropped; there is no terminal."""

    LIMIT = 64 * 1024

    def write(self, text: str) -> None:
        if sum(len(t) for t in self.txt) < self.LIMIT:
            self.txt.append(text[: self.LIMIT])


def method_globals(selector: str, covenant: Any, send: Any = None) -> dict[str, Any]:
    """A fresh namespace for one method: its own copy of the safe builtins, so that
    one method cannot change another's.  ``send(obj, name)`` looks up the method of a
    ``self.name(...)`` call (default: a guarded attribute read)."""
    safe = {n: getattr(builtins, n) for n in SAFE_BUILTINS}
    safe.update({
        "getattr": guarded_getattr, "hasattr": guarded_hasattr, "setattr": guarded_setattr,
        "delattr": guarded_delattr, "type": guarded_type, "__import__": guarded_import,
    })
    return {
        "__builtins__": safe, "__name__": f"batos.method.{selector}",
        "_getattr_": guarded_getattr, "_getitem_": _getitem, "_write_": guarded_write,
        "_getiter_": iter, "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence, "_apply_": _apply,
        "_inplacevar_": _inplacevar, "_print_": QuietPrintCollector, "_covenant_": covenant,
        "_send_": send or guarded_getattr,
    }


def load_method(selector: str, source: str, label: str, covenant: Any,
                send: Any = None) -> types.FunctionType:
    """The function ``source`` defines, compiled restricted and run in fresh globals."""
    code, errors = compile_source(source, label)
    if code is None:
        raise SandboxViolation("; ".join(errors))
    namespace = method_globals(selector, covenant, send)
    exec(code, namespace)  # noqa: S102 - restricted code, guarded namespace
    func = namespace.get(selector)
    if not isinstance(func, types.FunctionType):
        raise SandboxViolation(f"the source of {label} does not define a function '{selector}'")
    return func
