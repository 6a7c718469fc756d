"""Plain data: the values that cross between the kernel and a sandbox worker.

A slot's value, an argument or a change a method made travels as msgpack of a
*tagged* tree, so that the kernel never unpickles anything a worker sent and
types survive the trip.  Scalars travel as themselves (None, bool, int within
64 bits, float, str, bytes); every container is an array whose first element
is a tag::

    ["l", item...]            list            ["t", item...]        tuple
    ["d", k, v, k, v...]      dict            ["s", item...]        set
    ["f", item...]            frozenset       ["I", "digits"]       big int
    ["B", bytes]              bytearray       ["c", re, im]         complex
    ["D", "1.50"]             Decimal         ["F", num, den]       Fraction
    ["dt", iso]  ["da", iso]  ["tm", iso]     datetime, date, time (tz kept as an offset)
    ["td", days, s, us]       timedelta       ["q", maxlen, item...] deque
    ["C", k, v...]            Counter         ["O", k, v...]        OrderedDict
    ["Dd", factory, k, v...]  defaultdict whose factory is list, dict, set, int, float or str

Decoding builds only these types.  Anything else (objects, functions,
modules) is ``NotPlain``.  ``encode`` raises it; the kernel treats a slot
holding such a value as opaque (visible to a method by name only).
"""
from __future__ import annotations

import collections
import datetime
import decimal
import fractions
from typing import Any

import ormsgpack

MAX_DEPTH = 100
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1
_FACTORIES = {"list": list, "dict": dict, "set": set, "int": int, "float": float, "str": str}
_FACTORY_NAMES = {v: k for k, v in _FACTORIES.items()}


class NotPlain(TypeError):
    """A value that is not plain data (or is nested too deep, or contains itself)."""


def _pairs(items: Any, depth: int) -> list:
    out: list = []
    for k, v in items:
        out.append(_enc(k, depth))
        out.append(_enc(v, depth))
    return out


def _enc(value: Any, depth: int) -> Any:
    t = type(value)
    if value is None or t is bool or t is str or t is float or t is bytes:
        return value
    if t is int:
        return value if _INT_MIN <= value <= _INT_MAX else ["I", str(value)]
    if depth > MAX_DEPTH:
        raise NotPlain(f"the value is nested deeper than {MAX_DEPTH} levels (or contains itself)")
    depth += 1
    if t is list or _is_persistent(value, "PersistentList"):
        return ["l", *[_enc(v, depth) for v in value]]
    if t is dict or _is_persistent(value, "PersistentMapping"):
        return ["d", *_pairs(value.items(), depth)]
    if t is tuple:
        return ["t", *[_enc(v, depth) for v in value]]
    if t is set:
        return ["s", *[_enc(v, depth) for v in value]]
    if t is frozenset:
        return ["f", *[_enc(v, depth) for v in value]]
    if t is bytearray:
        return ["B", bytes(value)]
    if t is complex:
        return ["c", value.real, value.imag]
    if t is decimal.Decimal:
        return ["D", str(value)]
    if t is fractions.Fraction:
        return ["F", _enc(value.numerator, depth), _enc(value.denominator, depth)]
    if t is datetime.datetime:
        return ["dt", value.isoformat()]
    if t is datetime.date:
        return ["da", value.isoformat()]
    if t is datetime.time:
        return ["tm", value.isoformat()]
    if t is datetime.timedelta:
        return ["td", value.days, value.seconds, value.microseconds]
    if t is collections.deque:
        return ["q", value.maxlen, *[_enc(v, depth) for v in value]]
    if t is collections.Counter:
        return ["C", *_pairs(value.items(), depth)]
    if t is collections.OrderedDict:
        return ["O", *_pairs(value.items(), depth)]
    if t is collections.defaultdict:
        name = _FACTORY_NAMES.get(value.default_factory)
        if name is None:
            raise NotPlain("a defaultdict is plain data only when its factory is "
                           "list, dict, set, int, float or str")
        return ["Dd", name, *_pairs(value.items(), depth)]
    raise NotPlain(f"a {t.__name__} is not plain data (slots hold None, bool, int, float, str, bytes, "
                   "list, tuple, dict, set, Decimal, Fraction, datetime values and the like)")


def _is_persistent(value: Any, name: str) -> bool:
    """PersistentList/PersistentMapping from the image count as list/dict (by name, so
    that a worker need not import persistent)."""
    cls = type(value)
    return cls.__name__ == name and cls.__module__.startswith("persistent.")


def encode(value: Any) -> bytes:
    """msgpack bytes of ``value``'s tagged tree; NotPlain if it is not plain data."""
    try:
        return ormsgpack.packb(_enc(value, 0))
    except RecursionError:
        raise NotPlain("the value is nested too deeply") from None


def to_tree(value: Any) -> Any:
    """The tagged tree of ``value`` (to embed in a larger message)."""
    try:
        return _enc(value, 0)
    except RecursionError:
        raise NotPlain("the value is nested too deeply") from None


# ------------------------------------------------------------------ decoding

def _dec_pairs(items: list, depth: int) -> list:
    if len(items) % 2:
        raise NotPlain("a mapping has an odd number of entries")
    return [(_dec(items[i], depth), _dec(items[i + 1], depth)) for i in range(0, len(items), 2)]


def _dec(tree: Any, depth: int) -> Any:
    t = type(tree)
    if tree is None or t is bool or t is int or t is float or t is str or t is bytes:
        return tree
    if t is not list or not tree or type(tree[0]) is not str:
        raise NotPlain(f"not a tagged plain value: {t.__name__}")
    if depth > MAX_DEPTH:
        raise NotPlain(f"the value is nested deeper than {MAX_DEPTH} levels")
    depth += 1
    tag, rest = tree[0], tree[1:]
    try:
        if tag == "l":
            return [_dec(v, depth) for v in rest]
        if tag == "d":
            return dict(_dec_pairs(rest, depth))
        if tag == "t":
            return tuple(_dec(v, depth) for v in rest)
        if tag == "s":
            return {_dec(v, depth) for v in rest}
        if tag == "f":
            return frozenset(_dec(v, depth) for v in rest)
        if tag == "I" and len(rest) == 1 and type(rest[0]) is str and len(rest[0]) <= 4300:
            return int(rest[0])
        if tag == "B" and len(rest) == 1 and type(rest[0]) is bytes:
            return bytearray(rest[0])
        if tag == "c" and len(rest) == 2 and all(type(x) in (int, float) for x in rest):
            return complex(rest[0], rest[1])
        if tag == "D" and len(rest) == 1 and type(rest[0]) is str and len(rest[0]) <= 4300:
            return decimal.Decimal(rest[0])
        if tag == "F" and len(rest) == 2:
            return fractions.Fraction(_dec(rest[0], depth), _dec(rest[1], depth))
        if tag in ("dt", "da", "tm") and len(rest) == 1 and type(rest[0]) is str and len(rest[0]) < 64:
            cls = {"dt": datetime.datetime, "da": datetime.date, "tm": datetime.time}[tag]
            return cls.fromisoformat(rest[0])
        if tag == "td" and len(rest) == 3 and all(type(x) is int for x in rest):
            return datetime.timedelta(days=rest[0], seconds=rest[1], microseconds=rest[2])
        if tag == "q" and rest and (rest[0] is None or type(rest[0]) is int):
            return collections.deque((_dec(v, depth) for v in rest[1:]), rest[0])
        if tag == "C":
            return collections.Counter(dict(_dec_pairs(rest, depth)))
        if tag == "O":
            return collections.OrderedDict(_dec_pairs(rest, depth))
        if tag == "Dd" and rest and rest[0] in _FACTORIES:
            return collections.defaultdict(_FACTORIES[rest[0]], _dec_pairs(rest[1:], depth))
    except NotPlain:
        raise
    except (TypeError, ValueError, ArithmeticError, OverflowError) as exc:
        raise NotPlain(f"a malformed {tag!r} value: {exc}") from None
    raise NotPlain(f"unknown or malformed tag {tag!r}")


def from_tree(tree: Any) -> Any:
    try:
        return _dec(tree, 0)
    except RecursionError:
        raise NotPlain("the value is nested too deeply") from None


def decode(data: bytes) -> Any:
    """The value ``encode`` made; NotPlain for anything malformed."""
    try:
        tree = ormsgpack.unpackb(data)
    except (ormsgpack.MsgpackDecodeError, ValueError, TypeError) as exc:
        raise NotPlain(f"not msgpack: {exc}") from None
    return from_tree(tree)


# ------------------------------------------------------------------ the wire

def to_wire(value: Any, _depth: int = 0) -> Any:
    """A value msgpack can carry on the wire; anything else becomes its repr()."""
    if value is None or isinstance(value, (bool, str, bytes, float)):
        return value
    if isinstance(value, int):
        return value if _INT_MIN <= value <= _INT_MAX else repr(value)
    if _depth > 32:
        return _safe_repr(value)
    if isinstance(value, (list, tuple)):
        return [to_wire(v, _depth + 1) for v in value]
    if isinstance(value, dict) and all(isinstance(k, (str, int)) for k in value):
        return {k: to_wire(v, _depth + 1) for k, v in value.items()}
    return _safe_repr(value)


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a repr that raises still gets an answer
        text = f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    return text if len(text) <= 100_000 else text[:100_000] + "...(truncated)"
