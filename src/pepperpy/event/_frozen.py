"""Read-only JSON containers: ``event.data`` is deep-frozen on construction.

``FrozenDict`` and ``FrozenList`` subclass ``dict`` and ``list`` so that they compare
equal to plain containers, serialize natively with orjson and pass ``isinstance``
checks, while every mutating method raises ``TypeError``.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any, NoReturn
from uuid import UUID

from ._errors import SerializationError

__all__ = [
    "FrozenDict",
    "FrozenList",
    "check_json",
    "check_plain_json",
    "freeze",
    "freeze_parsed",
    "thaw",
    "too_deep",
]


def _readonly(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError(f"{type(self).__name__} is read-only: event data cannot be modified")


class FrozenDict(dict[str, Any]):
    """A ``dict`` whose contents cannot change."""

    __slots__ = ()
    __setitem__ = __delitem__ = _readonly
    clear = pop = popitem = setdefault = update = _readonly
    __ior__ = _readonly

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict:
        return self

    def __repr__(self) -> str:
        return dict.__repr__(self)


class FrozenList(list[Any]):
    """A ``list`` whose contents cannot change."""

    __slots__ = ()
    __setitem__ = __delitem__ = _readonly
    append = extend = insert = pop = remove = clear = sort = reverse = _readonly
    __iadd__ = __imul__ = _readonly

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenList, (list(self),))

    def __copy__(self) -> FrozenList:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenList:
        return self

    def __repr__(self) -> str:
        return list.__repr__(self)

    def __hash__(self) -> int:  # type: ignore[override]
        raise TypeError("unhashable type: 'FrozenList'")


#: JSON encoders (orjson, msgspec) carry signed and unsigned 64-bit integers, no more
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1

_ATOMS: frozenset[type] = frozenset(
    {str, bool, type(None), FrozenDict, FrozenList, datetime, date, time, UUID, bytes}
)


def freeze(value: Any) -> Any:
    """Return a deep read-only copy of JSON-like ``value``; refuse what JSON cannot hold.

    Every refusal is a :class:`SerializationError`, also for data holding a reference
    cycle or nested deeper than Python's recursion limit (never a bare
    ``RecursionError``), whoever calls: ``Event()``, the store's ``check_json``, events
    read back from JSON.
    """
    cls = value.__class__
    if cls in _ATOMS:
        return value
    if cls is dict and _is_flat(value):  # the usual payload: nothing to recurse into
        return FrozenDict(value)
    try:
        return _freeze(value)
    except RecursionError:
        raise too_deep() from None


def too_deep() -> SerializationError:
    """The error for data too deep to freeze or encode (or holding a cycle)."""
    return SerializationError(
        "data contains a reference cycle or is nested too deeply for JSON "
        f"(at most {MAX_DEPTH} levels of lists and objects)"
    )


#: most lists and objects nested in event data: orjson writes documents nested at most 254
#: deep, and the CloudEvents envelope around the data takes one level
MAX_DEPTH = 253


def _freeze(value: Any, depth: int = 0) -> Any:
    """:func:`freeze` itself, recursing into itself (a RecursionError is left to it).

    ``depth`` counts the containers around ``value``.
    """
    cls = value.__class__
    if cls in _ATOMS:
        return value
    if cls is int:
        return _check_int(value)
    if (cls is dict or cls is list or cls is tuple) and depth >= MAX_DEPTH:
        raise too_deep()
    if cls is dict:
        if _is_flat(value):
            return FrozenDict(value)
        out = FrozenDict()
        for key, item in value.items():
            if key.__class__ is not str:
                raise SerializationError(
                    f"object keys must be strings, got {type(key).__name__} key {key!r}"
                )
            try:
                dict.__setitem__(out, key, _freeze(item, depth + 1))
            except SerializationError as exc:
                raise _at(exc, key) from None
        return out
    if cls is list or cls is tuple:
        items = FrozenList()
        for index, item in enumerate(value):
            try:
                list.append(items, _freeze(item, depth + 1))
            except SerializationError as exc:
                raise _at(exc, index) from None
        return items
    if cls is float:
        if not math.isfinite(value):
            raise SerializationError(f"{value!r} is not a finite number; JSON cannot hold it")
        return value
    return _freeze_other(value, depth)


def freeze_parsed(value: Any) -> Any:
    """:func:`freeze` for a value straight from orjson's parser, which needs no checks.

    orjson only makes str keys, finite floats and ints of 64 bits (it turns bigger ones
    into floats), so only the containers need replacing.
    """
    cls = value.__class__
    if cls is dict:
        for item in value.values():
            kind = item.__class__
            if kind is dict or kind is list:
                return FrozenDict({key: freeze_parsed(item) for key, item in value.items()})
        return FrozenDict(value)
    if cls is list:
        return FrozenList([freeze_parsed(item) for item in value])
    return value


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


def _freeze_other(value: Any, depth: int) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise SerializationError(f"Decimal {value} is not a finite number")
        return value
    if isinstance(value, int) and not isinstance(value, bool | Enum):
        _check_int(int(value))
        return value
    if isinstance(value, bool | int | str | datetime | date | time | UUID | bytes | Enum):
        return value
    if isinstance(value, float):
        return _freeze(float(value), depth)
    if isinstance(value, dict):
        return _freeze(dict(value), depth)
    if isinstance(value, list | tuple):
        return _freeze(list(value), depth)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _freeze(dataclasses.asdict(value), depth)
    dump = getattr(value, "model_dump", None)  # pydantic v2 models
    if callable(dump):
        return _freeze(dump(mode="json"), depth)
    struct_fields = getattr(value, "__struct_fields__", None)  # msgspec Structs
    if struct_fields is not None:
        return _freeze({name: getattr(value, name) for name in struct_fields}, depth)
    raise SerializationError(f"value of type {type(value).__name__} is not JSON-serialisable")


def _at(exc: SerializationError, key: str | int) -> SerializationError:
    step = f"[{key!r}]"
    message = str(exc)
    if message.startswith("at data"):
        rest = message[len("at data") :]
        return SerializationError(f"at data{step}{rest}")
    return SerializationError(f"at data{step}: {message}")


def thaw(value: Any) -> Any:
    """Return a mutable deep copy of frozen ``value`` (plain dicts and lists)."""
    if isinstance(value, dict):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, list):
        return [thaw(item) for item in value]
    return value
