"""The install-time audit and the run-time sandbox enforce one language policy.

``batos.policy`` holds it; ``batos.guardian`` (the PersistenceGuardian's audit) and
``batos.restricted`` (RestrictedPython and the guards) both read it.  The audit may
refuse more than the sandbox, never less: whatever the sandbox refuses at run time,
a method that does it in its source is refused at install.  In-process and pure: no
kernel, no worker (tests/test_sandbox*.py run the real thing).
"""
from __future__ import annotations

import ast
import builtins
import importlib
import sys
import types

import pytest

from batos import guardian, policy, restricted
from batos.guardian import audit


def _refused(source: str, selector: str, needle: str) -> list[str]:
    report = audit(source, selector)
    assert not report.ok, f"the audit accepts:\n{source}"
    assert any(needle in f for f in report.findings), report.findings
    return report.findings


class Slots(types.SimpleNamespace):
    """Stands in for an object's slots: a method may write to it."""
    _sandbox_writable_ = True


def _run(source: str, selector: str, *args):
    """Compile ``source`` under the sandbox's policy and call it in-process (no worker)."""
    calls = []
    func = restricted.load_method(selector, source, selector, calls.append)
    return func(Slots(), *args)


# ------------------------------------------------------------------ one source

def test_both_layers_read_the_same_policy_objects():
    assert guardian.ALLOWED_MODULES is restricted.ALLOWED_MODULES is policy.ALLOWED_MODULES
    assert guardian.FORBIDDEN_ATTRS is restricted.BLOCKED_ATTRS is policy.BLOCKED_ATTRS
    assert guardian.FORBIDDEN_NAMES is policy.FORBIDDEN_NAMES
    assert guardian.HIDDEN_NAMES is restricted.HIDDEN_NAMES is policy.HIDDEN_NAMES
    assert guardian.is_covenant is restricted.is_covenant is policy.is_covenant
    assert guardian.module_allowed is restricted.module_allowed is policy.module_allowed
    for module in (guardian, restricted):
        assert not hasattr(module, "_is_covenant"), "a second covenant detector came back"


def test_the_sandbox_gives_exactly_the_policys_builtins():
    given = restricted.method_globals("m", None)["__builtins__"]
    assert set(given) == set(policy.SAFE_BUILTINS) | policy.GUARDED_BUILTINS
    for name in policy.GUARDED_BUILTINS:
        assert given[name] is not getattr(builtins, name), f"{name} is given unguarded"


# ------------------------------------------------------------------ attributes

PRIVATE_SAMPLES = ("__class__", "__globals__", "__subclasses__", "__traceback__", "__dict__",
                   "_p_jar", "_p_changed", "_slots", "_os")


@pytest.mark.parametrize("attr", sorted(policy.BLOCKED_ATTRS) + list(PRIVATE_SAMPLES))
def test_every_attribute_the_sandbox_blocks_is_refused_by_the_audit(attr):
    # the sandbox: the guard refuses it on any value, before it looks
    with pytest.raises(restricted.SandboxViolation):
        restricted.guarded_getattr(types.SimpleNamespace(**{attr: 1}), attr)
    assert not restricted.guarded_hasattr(types.SimpleNamespace(**{attr: 1}), attr)
    # the audit: read, written, reached through getattr/hasattr with a constant name
    _refused(f"def m(self, x):\n    return x.{attr}\n", "m", f"'{attr}'")
    _refused(f"def m(self, x):\n    x.{attr} = 1\n    return x\n", "m", f"'{attr}'")
    for func in ("getattr", "hasattr"):
        _refused(f"def m(self, x):\n    return {func}(x, {attr!r})\n", "m", f"'{attr}'")


@pytest.mark.parametrize("attr", sorted(policy.BLOCKED_ATTRS))
def test_a_blocked_attribute_fails_at_run_time_when_the_audit_is_bypassed(attr):
    """The sandbox on its own: RestrictedPython refuses to compile it (some of these are
    on its own list) or the guard refuses it when it runs."""
    for source in (f"def m(self, x):\n    return x.{attr}\n",
                   f"def m(self, x):\n    return getattr(x, {attr!r})\n",
                   f"def m(self, x):\n    return getattr(x, 'zz'.replace('zz', {attr!r}))\n"):
        code, errors = restricted.compile_source(source, "m")
        if code is None:
            assert any(attr in e for e in errors), errors
            continue
        with pytest.raises(restricted.SandboxViolation, match=attr):
            _run(source, "m", types.SimpleNamespace(**{attr: 1}))


def test_private_attributes_do_not_even_compile_in_the_sandbox():
    for attr in PRIVATE_SAMPLES:
        code, errors = restricted.compile_source(f"def m(self, x):\n    return x.{attr}\n", "m")
        assert code is None and errors, attr


# ------------------------------------------------------------------ hidden names

@pytest.mark.parametrize("dotted", sorted(policy.HIDDEN_NAMES))
def test_every_hidden_module_name_is_refused_by_both(dotted):
    module, _, name = dotted.rpartition(".")
    # the sandbox: the module's proxy does not have it
    assert not hasattr(restricted.safe_module(module), name)
    with pytest.raises((ImportError, AttributeError)):
        _run(f"def m(self):\n    from {module} import {name}\n    return {name}\n", "m")
    with pytest.raises(AttributeError):
        _run(f"def m(self):\n    import {module}\n    return {module}.{name}\n", "m")
    # the audit: from-imported, read off the module (under any alias), or reached by getattr
    _refused(f"def m(self):\n    from {module} import {name}\n    return {name}\n", "m", dotted)
    _refused(f"def m(self):\n    from {module} import {name} as h\n    return h\n", "m", dotted)
    _refused(f"def m(self):\n    import {module}\n    return {module}.{name}\n", "m", f"'{name}'")
    _refused(f"def m(self):\n    import {module} as mod\n    alias = mod\n    return alias.{name}\n",
             "m", f"'{name}'")
    _refused(f"def m(self):\n    import {module}\n    return getattr({module}, {name!r})\n",
             "m", f"'{name}'")


def test_the_hidden_names_are_not_re_exported_by_another_allowed_module():
    hidden = {id(getattr(importlib.import_module(m), n))
              for m, _, n in (d.rpartition(".") for d in policy.HIDDEN_NAMES)}
    seen: set[str] = set()

    def walk(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        proxy = restricted.safe_module(name)
        for attr in dir(proxy):
            value = getattr(proxy, attr)
            if isinstance(value, restricted.SafeModule):
                walk(repr(value).split("'")[1])
            else:
                assert id(value) not in hidden, f"{name}.{attr} hands out a hidden name"

    for module in sorted(policy.ALLOWED_MODULES):
        walk(module)


# ------------------------------------------------------------------ builtins

@pytest.mark.parametrize("name", sorted(policy.FORBIDDEN_NAMES))
def test_every_forbidden_name_is_refused_by_the_audit_and_not_given_by_the_sandbox(name):
    _refused(f"def m(self):\n    return {name}\n", "m", name)
    given = restricted.method_globals("m", None)["__builtins__"]
    if name in given:   # only as a guard: __import__ is the guarded import behind 'import'
        assert name in policy.GUARDED_BUILTINS and given[name] is not getattr(builtins, name, None)


# builtins the sandbox does not give, which the audit lets through: a method naming one
# fails with NameError at run time, and none reaches outside (print is RestrictedPython's
# own, collected and dropped)
ABSENT_BUT_HARMLESS = frozenset({"aiter", "anext", "dir", "id", "print"})


def test_every_builtin_is_given_guarded_or_refused():
    given = restricted.method_globals("m", None)["__builtins__"]
    unaccounted = []
    for name in dir(builtins):
        value = getattr(builtins, name)
        if name in given or name in ABSENT_BUT_HARMLESS:
            continue
        if isinstance(value, type) and issubclass(value, BaseException):
            continue   # not given: naming one is a NameError (catching the dangerous ones is refused)
        if audit(f"def m(self):\n    return {name}\n", "m").ok:
            unaccounted.append(name)
    assert not unaccounted, ("builtins neither given to methods, nor refused by the audit, "
                             f"nor known harmless: {unaccounted}")


# ------------------------------------------------------------------ modules

def _foreign_modules() -> list[str]:
    stdlib = sorted(m for m in sys.stdlib_module_names if not policy.module_allowed(m))
    private = ["re._parser", "re._compiler", "re._constants", "json._x", "collections._abc",
               "random._os", "string._private.sub"]
    elsewhere = ["batos", "batos.kernel", "batos.restricted", "client", "config", "ZODB",
                 "persistent", "RestrictedPython", "numpy", "torch", "ormsgpack", "zmq"]
    return stdlib + private + elsewhere


def test_the_foreign_module_list_covers_what_matters():
    mods = _foreign_modules()
    assert {"os", "sys", "subprocess", "ctypes", "socket", "importlib", "builtins", "pickle",
            "marshal", "_thread", "threading", "gc", "inspect", "types", "io"} <= set(mods)
    assert len(mods) > 200


def test_every_module_outside_the_allowlist_is_refused_by_both():
    audit_missed, sandbox_missed = [], []
    for mod in _foreign_modules():
        top = mod.split(".")[0]
        sources = [f"def m(self):\n    import {mod}\n    return {top}\n",
                   f"def m(self):\n    import {mod} as x\n    return x\n",
                   f"def m(self):\n    from {mod} import thing\n    return thing\n"]
        for source in sources:
            report = audit(source, "m")
            if report.ok or not any(f"'{mod}'" in f for f in report.findings):
                audit_missed.append((mod, source, report.findings))
        assert not policy.module_allowed(mod)
        for fromlist in ((), ("thing",)):
            try:
                restricted.guarded_import(mod, None, None, fromlist, 0)
            except ImportError:
                continue
            sandbox_missed.append((mod, fromlist))
        try:   # refused at compile (a private name) or by the guarded import
            _run(f"def m(self):\n    import {mod}\n    return 1\n", "m")
        except (ImportError, restricted.SandboxViolation):
            pass
        else:
            sandbox_missed.append((mod, "import statement"))
    assert not audit_missed, audit_missed[:5]
    assert not sandbox_missed, sandbox_missed[:5]


def test_every_allowed_module_and_public_submodule_is_accepted_by_both():
    names = set(policy.ALLOWED_MODULES)
    for mod in sorted(policy.ALLOWED_MODULES):
        proxy = restricted.safe_module(mod)
        names |= {repr(getattr(proxy, a)).split("'")[1] for a in dir(proxy)
                  if isinstance(getattr(proxy, a), restricted.SafeModule)}
    assert "collections.abc" in names and "json.decoder" in names
    for mod in sorted(names):
        top = mod.split(".")[0]
        source = f"def m(self):\n    import {mod}\n    return {top}\n"
        report = audit(source, "m")
        assert report.ok, (mod, report.findings)
        assert isinstance(_run(source, "m"), restricted.SafeModule)


def test_relative_imports_are_refused_by_both():
    _refused("def m(self):\n    from . import kernel\n    return kernel\n", "m", "relative")
    with pytest.raises(ImportError):
        restricted.guarded_import("kernel", None, None, ("x",), 1)


# ------------------------------------------------------------------ the covenant line

COVENANT_LINES = {
    "self._p_changed = True": True,
    "(self)._p_changed = (True)": True,
    "self._p_changed = False": False,
    "self._p_changed = 1": False,
    "self._p_changed = None": False,
    "other._p_changed = True": False,
    "self.box._p_changed = True": False,
    "self._p_changed = other = True": False,
    "self._p_changed: bool = True": False,
    "self._p_changed += True": False,
    "self._p_changed, x = True, 1": False,
    "self._p_changed == True": False,
    "self._p_jar = True": False,
}


@pytest.mark.parametrize("line", sorted(COVENANT_LINES))
def test_the_covenant_line_means_the_same_to_both(line):
    expected = COVENANT_LINES[line]
    assert policy.is_covenant(ast.parse(line).body[0]) is expected
    source = f"def m(self, other):\n    self.a = 1\n    {line}\n"
    assert audit(source, "m").ok is expected, audit(source, "m").findings
    code, errors = restricted.compile_source(source, "m")
    assert (code is not None) is expected, errors


def test_the_sandbox_turns_the_covenant_line_into_the_covenant_call():
    seen = []
    source = "def m(self, other):\n    self.a = 1\n    self._p_changed = True\n    return 1\n"
    assert audit(source, "m").ok
    func = restricted.load_method("m", source, "m", seen.append)
    target = Slots()
    assert func(target, None) == 1
    assert target.a == 1 and seen == [target]


# ------------------------------------------------------------------ names and docstrings

@pytest.mark.parametrize("attr", sorted(policy.READABLE_DUNDERS))
def test_the_readable_dunders_are_read_by_both_and_written_by_neither(attr):
    def helper():
        """Doc."""
    expected = {"__name__": "helper", "__qualname__": helper.__qualname__, "__doc__": "Doc."}[attr]
    assert restricted.guarded_getattr(helper, attr) == expected
    # a read: accepted by the audit, compiled and run by the sandbox
    read = f"def m(self, x):\n    return [x.{attr}, getattr(x, {attr!r}), type(x).{attr}]\n"
    assert audit(read, "m").ok, audit(read, "m").findings
    assert _run(read, "m", helper) == [expected, expected, getattr(types.FunctionType, attr)]
    # a write or a delete, in any form: refused by both
    for write in (f"def m(self, x):\n    x.{attr} = 'y'\n    return x\n",
                  f"def m(self, x):\n    x.{attr} += 'y'\n    return x\n",
                  f"def m(self, x):\n    del x.{attr}\n    return x\n",
                  f"def m(self, x):\n    setattr(x, {attr!r}, 'y')\n    return x\n",
                  f"def m(self, x):\n    delattr(x, {attr!r})\n    return x\n"):
        assert not audit(write, "m").ok, write
        with pytest.raises(restricted.SandboxViolation):
            _run(write, "m", helper)
    assert helper.__doc__ == "Doc." and helper.__name__ == "helper"


def test_a_readable_dunder_hands_out_only_a_name_or_a_docstring():
    odd = types.SimpleNamespace(__name__=len, __doc__=["x"])
    for attr in ("__name__", "__doc__"):
        with pytest.raises(restricted.SandboxViolation):
            restricted.guarded_getattr(odd, attr)
    # every other dunder stays refused by both, by name and dynamically
    for attr in ("__module__", "__dict__", "__class__", "__wrapped__", "__annotations__"):
        with pytest.raises(restricted.SandboxViolation):
            restricted.guarded_getattr(len, attr)
        _refused(f"def m(self, x):\n    return x.{attr}\n", "m", attr)


# ------------------------------------------------------------------ no classes

def test_no_guard_hands_out_a_metaclass():
    import abc
    import collections.abc
    import enum
    assert restricted.guarded_type(1) is int and restricted.guarded_type(len) is type(len)
    for cls in (int, type, collections.abc.Mapping, enum.Enum, abc.ABC):
        with pytest.raises(restricted.SandboxViolation, match="metaclass"):
            restricted.guarded_type(cls)
    with pytest.raises(restricted.SandboxViolation, match="metaclass"):
        restricted.guarded_getattr(types.SimpleNamespace(meta=abc.ABCMeta), "meta")
    with pytest.raises(restricted.SandboxViolation, match="metaclass"):
        _run("def m(self, box):\n    return box[0]\n", "m", [type])
    for args in ("'X', (), {}", "'X', (int,), {'a': 1}"):
        with pytest.raises(restricted.SandboxViolation):
            _run(f"def m(self):\n    return type({args})\n", "m")


def test_no_allowed_module_hands_out_a_metaclass_or_a_class_factory():
    """Walk every proxy (and the classes and functions on it, one level down): no
    metaclass, and none of the hidden names under any other module's name."""
    hidden = restricted._hidden_objects()
    seen: set[int] = set()
    found = []

    def check(path: str, value) -> None:
        if restricted.is_metaclass(value) or id(value) in hidden:
            found.append(path)

    def walk(name: str) -> None:
        proxy = restricted.safe_module(name)
        for attr in dir(proxy):
            value = getattr(proxy, attr)
            if isinstance(value, restricted.SafeModule):
                sub = repr(value).split("'")[1]
                if sub not in seen:
                    seen.add(sub)
                    walk(sub)
                continue
            check(f"{name}.{attr}", value)
            for inner in dir(value):
                if not policy.attr_blocked(inner):
                    try:
                        check(f"{name}.{attr}.{inner}", restricted.guarded_getattr(value, inner))
                    except (AttributeError, restricted.SandboxViolation, TypeError):
                        pass

    for module in sorted(policy.ALLOWED_MODULES):
        walk(module)
    assert not found, found


def test_a_hidden_name_is_hidden_wherever_it_is_re_exported():
    hidden = restricted._hidden_objects()
    re_exports = [(m, a) for m in sorted(policy.ALLOWED_MODULES)
                  for a in dir(importlib.import_module(m))
                  if not a.startswith("_") and id(getattr(importlib.import_module(m), a)) in hidden]
    assert ("statistics", "namedtuple") in re_exports and ("functools", "namedtuple") in re_exports
    for module, name in re_exports:
        assert not hasattr(restricted.safe_module(module), name)
        _refused(f"def m(self):\n    from {module} import {name}\n    return {name}\n", "m", name)
        _refused(f"def m(self):\n    import {module}\n    return {module}.{name}\n", "m", name)


# ------------------------------------------------------------------ the C code's own imports

def test_c_code_imports_what_it_needs_and_a_method_imports_nothing_more():
    # datetime's C code imports time (strftime) and _strptime (strptime) through the
    # method's own __import__: let through, and nothing handed back to anyone
    source = ("def m(self):\n    import datetime\n    d = datetime.date(2024, 1, 5)\n"
              "    return [d.strftime('%A'), f'{d:%B}', datetime.datetime.strptime('2024', '%Y').year]\n")
    assert audit(source, "m").ok
    assert _run(source, "m") == ["Friday", "January", 2024]
    for name in sorted(policy.INTERNAL_IMPORTS):
        assert not policy.module_allowed(name)
        # the method's own import statement: refused by both
        for stmt in (f"import {name}", f"from {name} import x", f"import {name} as t"):
            source = f"def m(self):\n    {stmt}\n    return 1\n"
            _refused(source, "m", f"'{name}'")
            with pytest.raises((ImportError, restricted.SandboxViolation)):
                _run(source, "m")
        # a call from outside a method (a test, the kernel): the plain policy
        with pytest.raises(ImportError):
            restricted.guarded_import(name)
        with pytest.raises(ImportError):
            restricted.guarded_import(name, None, None, [], 0)
