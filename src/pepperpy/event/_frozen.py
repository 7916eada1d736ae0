"""Deep-freezing: ``event.data`` is checked and made read-only on construction.

:func:`freeze` turns JSON-able data into :class:`FrozenDict`/:class:`FrozenList`
(``_frozen_types.py``) and refuses what JSON cannot carry; :func:`freeze_parsed` does it
for data decoded from JSON; the checks name where a bad value is. The copies that work
at any depth of the caller's stack are in ``_copy.py``.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from ._copy import COPY_DEPTH, copy_nested, thaw
from ._errors import SerializationError
from ._frozen_types import FrozenDict, FrozenList

__all__ = [
    "COPY_DEPTH",
    "FrozenDict",
    "FrozenList",
    "check_json",
    "check_plain_json",
    "copy_nested",
    "freeze",
    "freeze_parsed",
    "nested_too_deep",
    "thaw",
    "too_deep",
    "too_deep_read",
]


#: JSON encoders (orjson, msgspec) carry signed and unsigned 64-bit integers, no more
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1

#: what event data holds as it is, needing no look: a read-only container already in
#: event data is not one, as where it goes in new data decides whether that is too deep
_ATOMS: frozenset[type] = frozenset({str, bool, type(None), datetime, date, time, UUID, bytes})


def freeze(value: Any) -> Any:
    """Return a deep read-only copy of JSON-like ``value``; refuse what JSON cannot hold.

    Every refusal is a :class:`SerializationError`, also for data holding a reference
    cycle or nested more than :data:`MAX_DEPTH` lists and objects deep (never a bare
    ``RecursionError``), whoever calls: ``Event()``, the store's ``check_json``, events
    read back from JSON. Nested data is walked with a stack of its own, not by
    recursion, so the answer depends on the data alone, never on how deep the caller's
    stack already is (a handler deep in recursion, a lowered recursion limit).
    """
    cls = value.__class__
    if cls in _ATOMS:
        return value
    if cls is dict and _is_flat(value):  # the usual payload: nothing to walk into
        return FrozenDict(value)
    if cls is FrozenDict or cls is FrozenList:  # event data, no deeper than MAX_DEPTH
        return value
    try:
        return _freeze(value)
    except RecursionError:  # a converter's own (model_dump); the walk never recurses
        raise too_deep() from None


def too_deep() -> SerializationError:
    """The error for data too deep to freeze or encode (or holding a cycle)."""
    return SerializationError(
        "data contains a reference cycle or is nested too deeply for JSON "
        f"(at most {MAX_DEPTH} levels of lists and objects)"
    )


def too_deep_read(what: str = "data") -> SerializationError:
    """The error for ``what`` read from JSON (a stored row, a message) nested deeper than
    an event may be: the library never writes it, and could not write it again."""
    return SerializationError(
        f"{what} is nested more than {MAX_DEPTH} levels of lists and objects deep, "
        f"deeper than an event's {what} may be"
    )


#: most lists and objects nested in event data: orjson writes documents nested at most 254
#: deep, and the CloudEvents envelope around the data takes one level
MAX_DEPTH = 253
#: JSON text shorter than this (characters or bytes) cannot nest anything more than
#: MAX_DEPTH levels deep: that takes an opening and a closing bracket per level
SHALLOW_JSON = 2 * (MAX_DEPTH + 1)


def _freeze(value: Any) -> Any:
    """:func:`freeze` past its fast path.

    The walk is depth-first and in order, as a recursive one would be (so the first
    offence found, and the path naming it, are the same), with the open containers on a
    list of its own. Each container's items gather in a plain dict or list, copied into
    its read-only one when complete (one copy in C is cheaper than calling
    ``dict.__setitem__`` past the read-only guard for every item). A reference cycle,
    never ending, meets the depth limit.
    """
    if value.__class__ is not dict:  # (a dict here is one freeze() found not flat)
        value = _settle(value)
        if value.__class__ is dict and _is_flat(value):
            return FrozenDict(value)
    cls = value.__class__
    if cls is dict:
        items: Any = iter(value.items())
        out: Any = {}
    elif cls is list or cls is tuple:
        items = enumerate(value)
        out = []
    else:
        return value  # a checked scalar, or a converted value kept as it is
    keyed = cls is dict
    #: the containers around ``out``: each with the rest of its items and the key of the
    #: one being frozen (``out`` or one around it)
    stack: list[tuple[Any, Any, bool, Any]] = []
    depth = 0  # the lists and objects around the items of ``out``
    key: Any = None
    try:
        while True:
            for key, item in items:
                if keyed and key.__class__ is not str:
                    raise SerializationError(_key_refused(key))
                cls = item.__class__
                if cls in _ATOMS:
                    pass
                elif cls is int:
                    if not _INT_MIN <= item <= _INT_MAX:
                        _check_int(item)
                elif cls is float:
                    if item - item != 0.0:  # NaN and infinities (inf - inf is NaN)
                        _check_float(item)
                else:
                    if cls is not dict and cls is not list and cls is not tuple:
                        if cls is FrozenDict or cls is FrozenList:  # kept, if it fits here
                            if nested_too_deep(item, MAX_DEPTH - depth - 1):
                                raise too_deep()
                        else:
                            item = _settle(item)
                            cls = item.__class__
                    if cls is dict or cls is list or cls is tuple:
                        if depth + 1 >= MAX_DEPTH:
                            raise too_deep()
                        if cls is dict and _is_flat(item):
                            item = FrozenDict(item)
                        else:  # frozen first, then put in ``out`` (in order: no item
                            # of ``out`` comes in meanwhile)
                            stack.append((out, items, keyed, key))
                            keyed = cls is dict
                            if keyed:
                                items = iter(item.items())
                                out = {}
                            else:
                                items = enumerate(item)
                                out = []
                            depth += 1
                            break
                if keyed:
                    out[key] = item
                else:
                    out.append(item)
            else:  # ``out`` is complete
                frozen = FrozenDict(out) if keyed else FrozenList(out)
                if not stack:
                    return frozen
                out, items, keyed, key = stack.pop()
                depth -= 1
                if keyed:
                    out[key] = frozen
                else:
                    out.append(frozen)
    except SerializationError as exc:
        path = [frame[3] for frame in stack]
        if not keyed or key.__class__ is str:  # about the item at ``key``, not the key
            path.append(key)
        raise _at(exc, path) from None


def _key_refused(key: Any) -> str:
    """Why ``key`` cannot be an object key in event data: not a plain ``str``."""
    message = f"object keys must be strings, got {type(key).__name__} key {key!r}"
    if isinstance(key, str):
        # a StrEnum member is a str, so "must be strings" alone reads as a contradiction
        message += (
            " (a subclass of str: JSON encoders take plain str keys only; use its plain "
            "str, an enum member's .value)"
        )
    return message


def _settle(value: Any) -> Any:
    """``value`` checked if a scalar, or converted to what :func:`freeze` walks.

    Types JSON lacks become their JSON form (a dataclass or a model a dict, a tuple
    subclass a list): each conversion is one step, not a recursive freeze, so whatever
    they hold is walked with the rest. The result is a checked scalar, a kept value
    (a Decimal, an Enum member) or a dict, list or tuple still to walk.
    """
    for _ in range(MAX_DEPTH):  # a model_dump() giving back a model, and so on, ends
        cls = value.__class__
        if cls in _ATOMS or cls is dict or cls is list or cls is tuple:
            return value
        if cls is int:
            return _check_int(value)
        if cls is float:
            return _check_float(value)
        value, again = _convert(value)
        if not again:
            return value
    raise too_deep()


def freeze_parsed(value: Any) -> Any:
    """:func:`freeze` for a value straight from orjson's parser, which needs no checks
    but the depth.

    orjson only makes str keys, finite floats and ints of 64 bits (it turns bigger ones
    into floats), so only the containers need replacing. It reads up to 1,024 levels of
    lists and objects, which no event written by this library holds: data nested more
    than :data:`MAX_DEPTH` levels deep raises :func:`too_deep_read`'s error, the same at
    any depth of the caller's stack.
    """
    cls = value.__class__
    if cls is dict:
        for item in value.values():
            kind = item.__class__
            if kind is dict or kind is list:
                break
        else:
            return FrozenDict(value)
    elif cls is not list:
        return value
    try:
        return _freeze_parsed(value, MAX_DEPTH)
    except RecursionError:  # a caller deep in its stack: the same copy, or refusal
        try:
            return copy_nested(value, frozen=True, deepest=MAX_DEPTH)
        except SerializationError:
            raise too_deep_read() from None


def _freeze_parsed(value: Any, room: int) -> Any:
    """:func:`freeze_parsed`'s copy of a dict or list by recursion (``room``: the levels
    it may take, its own included): the store's read path, and on nested data twice as
    fast as :func:`copy_nested` (which makes the same copy whatever the depth of the
    caller's stack)."""
    if value.__class__ is dict:
        for item in value.values():
            kind = item.__class__
            if kind is dict or kind is list:
                if room <= 1:
                    raise too_deep_read()
                room -= 1
                return FrozenDict({key: _freeze_parsed(item, room) for key, item in value.items()})
        return FrozenDict(value)
    if value.__class__ is list:
        for item in value:
            kind = item.__class__
            if kind is dict or kind is list:
                if room <= 1:
                    raise too_deep_read()
                room -= 1
                return FrozenList([_freeze_parsed(item, room) for item in value])
        return FrozenList(value)
    return value


def nested_too_deep(value: Any, levels: int = MAX_DEPTH) -> bool:
    """True if ``value`` nests more than ``levels`` dicts, lists and tuples (itself
    included), or holds a cycle among them: what :func:`check_json` refuses for its depth
    with ``MAX_DEPTH``. Looked into level by level, without recursion, each container
    once (data may hold one many times); a dict of scalars costs one look at each value.
    """
    if isinstance(value, dict):
        for item in value.values():
            if isinstance(item, _NESTING):
                break
        else:
            return levels < 1
    elif not isinstance(value, _NESTING):
        return False
    level: Any = [value]
    depth = 1  # the levels down to ``level``'s containers
    while True:
        if depth > levels:
            return True
        below: dict[int, Any] = {}  # the containers one level down
        for container in level:
            items = container.values() if isinstance(container, dict) else container
            for item in items:
                if isinstance(item, _NESTING):
                    below[id(item)] = item
        if not below:
            return False
        level = below.values()
        depth += 1


_NESTING = (dict, list, tuple)


def check_json(value: Any, what: str = "data") -> None:
    """Raise :class:`SerializationError` where :func:`freeze` would (deep data too).

    For callers that only need the check (the store encodes data straight to JSON).
    ``what`` names the value in the message (``metadata``, ``snapshot state``): the
    rules for event data hold for everything a store or transport writes as JSON, so
    that nothing comes back other than it went in (a non-str key renamed, two keys
    merged into one, a set turned into a list in no fixed order).
    """
    if value.__class__ is dict and _is_flat(value):
        return
    try:
        freeze(value)
    except SerializationError as exc:
        if what == "data":
            raise
        message = str(exc)
        if message.startswith("at data"):
            message = f"at {what}{message[len('at data') :]}"
        else:
            message = f"{what}: {message}"
        raise SerializationError(message) from None


def check_plain_json(value: Any, what: str) -> None:
    """Refuse ``value`` unless it is made of JSON's own types only, so that it reads back
    from JSON as it is: dicts with str keys, lists, str, bool, None, finite floats and ints
    of at most 64 bits. A datetime, a set or a tuple would come back as text or a list, and
    code that worked on the value before it was stored would meet another type after.
    """
    stack: list[tuple[Any, str, int]] = [(value, what, 0)]
    while stack:
        item, where, depth = stack.pop()
        cls = item.__class__
        if cls is str or cls is bool or item is None:
            continue
        if cls is int:
            if not _INT_MIN <= item <= _INT_MAX:
                raise SerializationError(f"{where}: {item} does not fit in 64 bits")
            continue
        if cls is float:
            if item - item != 0.0:
                raise SerializationError(f"{where}: {item!r} is not a finite number")
            continue
        if depth >= MAX_DEPTH and (cls is dict or cls is list):
            raise too_deep()
        if cls is dict:
            for key, child in item.items():
                if key.__class__ is not str:
                    raise SerializationError(
                        f"{where}: keys must be str, got {type(key).__name__} key {key!r} "
                        "(JSON would turn it into text)"
                    )
                stack.append((child, f"{where}[{key!r}]", depth + 1))
            continue
        if cls is list:
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
            continue
        raise SerializationError(
            f"{where}: {type(item).__name__} is not one of JSON's own types (dict, list, str, "
            "int, float, bool, None); it would read back as another type, so convert it "
            "first (a datetime to isoformat(), a set or tuple to a list)"
        )


def _is_flat(value: dict[Any, Any]) -> bool:
    """True for a dict of str keys and plain, in-range, finite scalar values."""
    for key, item in value.items():
        if key.__class__ is not str:
            return False
        kind = item.__class__
        if kind in _ATOMS:
            continue
        if kind is int:
            if _INT_MIN <= item <= _INT_MAX:
                continue
            return False
        if kind is float and item - item == 0.0:  # finite (inf - inf and NaN are NaN)
            continue
        return False
    return True


def _check_int(value: int) -> int:
    if _INT_MIN <= value <= _INT_MAX:
        return value
    raise SerializationError(
        f"integer {value} does not fit in 64 bits; JSON encoders cannot carry it"
    )


def _check_float(value: float) -> float:
    if math.isfinite(value):
        return value
    raise SerializationError(f"{value!r} is not a finite number; JSON cannot hold it")


def _convert(value: Any) -> tuple[Any, bool]:
    """A value of no type :func:`freeze` takes as it is: ``(value, False)`` to keep it
    (checked), or ``(its JSON form, True)`` for that to be frozen in its place."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise SerializationError(f"Decimal {value} is not a finite number")
        return value, False
    if isinstance(value, int) and not isinstance(value, bool | Enum):
        _check_int(int(value))
        return value, False
    if isinstance(value, Enum):
        return _enum_member(value)
    if isinstance(value, bool | int | str | datetime | date | time | UUID | bytes):
        return value, False
    if isinstance(value, float):
        return float(value), True
    if isinstance(value, dict):
        return dict(value), True
    if isinstance(value, list | tuple):
        return list(value), True
    if isinstance(value, bytearray | memoryview):
        return bytes(value), False
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # one level: dataclasses.asdict() would recurse through everything it holds
        fields = dataclasses.fields(value)
        return {field.name: getattr(value, field.name) for field in fields}, True
    dump = getattr(value, "model_dump", None)  # pydantic v2 models
    if callable(dump):
        return dump(mode="json"), True
    struct_fields = getattr(value, "__struct_fields__", None)  # msgspec Structs
    if struct_fields is not None:
        return {name: getattr(value, name) for name in struct_fields}, True
    raise SerializationError(f"value of type {type(value).__name__} is not JSON-serialisable")


def _enum_member(member: Enum) -> tuple[Any, bool]:
    """:func:`_convert` for an Enum member, which the wire carries as its value: that
    value is checked by the rules of data, when the event is built. A member whose value
    is a scalar that passes (a str, an int of 64 bits, a finite float, a datetime, ...)
    is kept as it is; one whose value is a container (a dict, list or tuple) or another
    convertible value gives way to that value, frozen, since the member's own value stays
    mutable and would change the event after it was built."""
    value = member.value
    try:
        settled = _settle(value)  # a non-finite or non-JSON value is refused here
    except SerializationError as exc:
        name = f"{type(member).__name__}.{member.name}"
        raise SerializationError(f"the value of {name}: {exc}") from None
    if settled is value and settled.__class__ not in _WALKED:
        return member, False
    return settled, True


_WALKED = frozenset({dict, list, tuple})


def _at(exc: SerializationError, path: list[Any]) -> SerializationError:
    """``exc`` located: ``at data['a'][0]: ...`` for ``path`` ``['a', 0]``."""
    if not path:
        return exc
    steps = "".join(f"[{key!r}]" for key in path)
    message = str(exc)
    if message.startswith("at data"):
        return SerializationError(f"at data{steps}{message[len('at data') :]}")
    return SerializationError(f"at data{steps}: {message}")
