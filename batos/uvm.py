"""UvmObject: the persistent prototype object of the Living Image.

Slots live in a persistent mapping.  Reading an attribute looks in the
object's own slots, then in its ``parents`` in order (delegation, not class
inheritance).  Writing an attribute puts it in the slots and marks the object
changed.  Methods are slots too: a ``Method`` holds source.  The kernel never
runs it: ``_sandbox_view`` gives a sandbox worker what a call may see (the
plain-data slots along the delegation chain and the methods' sources), and
``_apply_changes`` stores what the call changed.  A send of a selector that
nothing in the delegation chain holds goes to ``_doesNotUnderstand_``, which
turns the failed message into a mission brief.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any, Iterator

import persistent
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from batos import guardian, plain
from batos.protocol import MissionBrief

MAX_DELEGATION_DEPTH = 64


class ChangeRefused(Exception):
    """A sandboxed call reported a change a method may not make; nothing was saved."""


class NotUnderstood(Exception):
    """Raised by ``_doesNotUnderstand_``: carries the mission brief for a cognitive cycle."""

    def __init__(self, target_oid: str, brief: MissionBrief):
        super().__init__(f"{target_oid} does not understand '{brief.selector}'")
        self.target_oid = target_oid
        self.brief = brief


class Method(persistent.Persistent):
    """A method as the image keeps it: source and what the audit learned of it."""

    def __init__(self, selector: str, source: str, *, origin: str = "architect",
                 cycle_id: str | None = None, report: guardian.AuditReport | None = None,
                 examples: list | None = None):
        # the report of the audit that admitted the source (audited here only when none is given)
        report = report if report is not None else guardian.audit(source, selector)
        self.selector = selector
        self.source = source
        self.signature = report.signature
        self.doc = report.doc
        self.origin = origin            # "architect", "cycle" or "genesis"
        self.cycle_id = cycle_id
        self.installed_at = time.time()
        # [[args, expected], ...] the method answers so; run again when it is replaced
        self.examples = [[list(a), e] for a, e in (examples or [])]

    def digest(self) -> str:
        """What names this source in a sandbox worker's cache of compiled methods."""
        d = getattr(self, "_v_digest", None)
        if d is None:
            d = self._v_digest = hashlib.sha256(
                f"{self.selector}\0{self.source}".encode()).hexdigest()[:24]
        return d

    def __repr__(self) -> str:
        return f"<Method {self.signature}>"


class UvmObject(persistent.Persistent):
    """A prototype object: slots, parents, and methods kept as source."""

    def __init__(self, name: str = "", parents: tuple = (), **slots: Any):
        self._slots = PersistentMapping()   # {slot name -> value or Method}
        self._slots["name"] = name
        self._slots["parents"] = PersistentList(parents)
        for key, value in slots.items():
            self._slots[key] = value

    # -- slots and delegation ---------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails: private names never come from slots
        if name.startswith("_"):
            raise AttributeError(name)
        found = self._find_slot(name)
        if found is None:
            raise AttributeError(f"{self._label()} has no slot '{name}'")
        return found[1]    # a Method is returned as it is: methods run only in the sandbox

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            persistent.Persistent.__setattr__(self, name, value)
            if name == "_p_changed" and value:
                # the covenant line also covers in-place changes to slot values
                self._slots._p_changed = True
            return
        self._slots[name] = value
        persistent.Persistent.__setattr__(self, "_p_changed", True)

    def __delattr__(self, name: str) -> None:
        if name.startswith("_"):
            persistent.Persistent.__delattr__(self, name)
            return
        if name not in self._slots:
            raise AttributeError(f"{self._label()} has no slot '{name}'")
        del self._slots[name]
        persistent.Persistent.__setattr__(self, "_p_changed", True)

    def _delegation_chain(self) -> Iterator["UvmObject"]:
        """Self, then parents depth-first in order; each object once."""
        seen: set[int] = set()
        stack: list[tuple[UvmObject, int]] = [(self, 0)]
        while stack:
            obj, depth = stack.pop()
            if id(obj) in seen or depth > MAX_DELEGATION_DEPTH:
                continue
            seen.add(id(obj))
            yield obj
            parents = obj._slots.get("parents") or ()
            for parent in reversed(list(parents)):
                if isinstance(parent, UvmObject):
                    stack.append((parent, depth + 1))

    def _label(self) -> str:
        return self.__dict__.get("_oid") or self._slots.get("name") or "object"

    def _find_slot(self, name: str) -> tuple["UvmObject", Any] | None:
        for owner in self._delegation_chain():
            if name in owner._slots:
                return owner, owner._slots[name]
        return None

    # -- messages -----------------------------------------------------------------
    def _sandbox_view(self) -> tuple[dict, dict[str, tuple[str, str, str]]]:
        """What a method call may see, in delegation order (the first holder of a name wins):

        ``slots`` {name -> plain bytes} for plain data, ``methods`` {selector -> digest},
        ``opaque`` {name -> type name} for values that do not cross (objects, the parents
        list), ``own`` [names of this object's own plain slots]; and the sources
        {digest -> (selector, source, label)}.
        """
        slots: dict[str, bytes] = {}
        methods: dict[str, str] = {}
        opaque: dict[str, str] = {}
        sources: dict[str, tuple[str, str, str]] = {}
        for owner in self._delegation_chain():
            for key, value in owner._slots.items():
                if key in slots or key in methods or key in opaque:
                    continue
                if isinstance(value, Method):
                    digest = value.digest()
                    methods[key] = digest
                    sources[digest] = (key, value.source, f"{owner._label()}.{key}")
                    continue
                try:
                    slots[key] = plain.encode(value)
                except plain.NotPlain:
                    opaque[key] = type(value).__name__
        own = [k for k in self._slots if k in slots]
        return {"slots": slots, "methods": methods, "opaque": opaque, "own": own}, sources

    def _state_serial(self) -> bytes:
        """The serial of the slots' last committed state (to see whether they changed since)."""
        self._slots._p_activate()
        return self._slots._p_serial

    def _apply_changes(self, view: dict, changes: dict, deleted: list, label: str) -> None:
        """Store what a sandboxed call changed, in the caller's transaction."""
        for name in list(changes) + list(deleted):
            if (not isinstance(name, str) or not name.isidentifier() or name.startswith("_")
                    or name in view["methods"] or name in view["opaque"]):
                raise ChangeRefused(f"{label}: the sandbox reported a change to {name!r}, "
                                  "which a method may not change; nothing was saved")
        values = {}
        for name, data in changes.items():
            try:
                values[name] = plain.decode(data)
            except plain.NotPlain as exc:
                raise ChangeRefused(f"{label}: the new value of slot {name!r} is not plain data "
                                  f"({exc}); nothing was saved") from None
        for name in deleted:
            self._slots.pop(name, None)
        for name, value in values.items():
            self._slots[name] = value
        if values or deleted:
            persistent.Persistent.__setattr__(self, "_p_changed", True)

    def _doesNotUnderstand_(self, selector: str, args: list, kwargs: dict) -> Any:
        """Turn the failed message into a mission brief for a cognitive cycle."""
        brief = MissionBrief(selector=selector, args=[f"arg{i}" for i in range(len(args))],
                             kwargs={k: _example(v) for k, v in kwargs.items()},
                             example_call=_example_call(selector, args, kwargs)[:2000])
        raise NotUnderstood(self._label(), brief)

    def _install(self, selector: str, source: str, *, origin: str, cycle_id: str | None = None,
                 report: guardian.AuditReport | None = None, examples: list | None = None) -> Method:
        method = Method(selector, source, origin=origin, cycle_id=cycle_id, report=report,
                        examples=examples)
        self._slots[selector] = method
        persistent.Persistent.__setattr__(self, "_p_changed", True)
        return method

    def _methods(self) -> list[tuple[str, "UvmObject", Method]]:
        """Every selector this object answers, own first: [(selector, owner, Method)]."""
        found: dict[str, tuple[str, UvmObject, Method]] = {}
        for owner in self._delegation_chain():
            for key, value in owner._slots.items():
                if isinstance(value, Method) and key not in found:
                    found[key] = (key, owner, value)
        return list(found.values())

    def __repr__(self) -> str:
        return f"<UvmObject {self._label()}>"


def _example(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _example_call(selector: str, args: list, kwargs: dict) -> str:
    parts = [_example(a) for a in args] + [f"{k}={_example(v)}" for k, v in kwargs.items()]
    return f"{selector}({', '.join(parts)})"
