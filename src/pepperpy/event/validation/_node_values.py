"""Event data as JSON sees it: what can travel, which values are equal, their text.

The nodes judge converted values by the JSON the event will hold: integers in the 64-bit
range, finite numbers, string keys (:func:`json_problem`); ``uniqueItems`` and ``enum``
equality (:func:`json_key`, :func:`equality_key`); a datetime, date or UUID as its JSON
string (:data:`TEXT_ATOMS`, :func:`json_text`); ``multipleOf`` in exact decimal
arithmetic (:func:`decimal_ratio`, :func:`is_multiple`).
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from .._errors import SerializationError
from .._frozen import freeze
from .._json import dumps

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "TEXT_ATOMS",
    "decimal_ratio",
    "equality_key",
    "is_multiple",
    "json_key",
    "json_problem",
    "json_text",
    "lists",
]


#: the integers JSON encoders (orjson, most languages) can carry: int64 and uint64
INT_MIN, INT_MAX = -(2**63), 2**64 - 1


#: converted values whose JSON form is a string (what JSON Schema formats give)
TEXT_ATOMS = (dt.datetime, dt.date, uuid.UUID)


def json_text(value: Any) -> str:
    """The string the event's JSON holds for a converted ``value`` (see ``TEXT_ATOMS``).

    JSON Schema judges that text: a datetime validated again is the string the event
    encoder writes for it (``isoformat()``, UTC as ``+00:00``), a UUID its lowercase
    hyphenated form. (Neither needs an escape, so the quotes are all there is to drop.)
    """
    return dumps(value)[1:-1].decode()


def json_problem(value: Any) -> str | None:
    """Why ``value`` cannot travel as event data (JSON), or None when it can."""
    stack = [value]
    while stack:
        item = stack.pop()
        cls = item.__class__
        if cls is str or cls is bool or item is None:
            continue
        if isinstance(item, int):
            if not INT_MIN <= item <= INT_MAX:
                return "integer outside the 64-bit range JSON encoders carry"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{item!r} is not a finite number"
        elif isinstance(item, Mapping):
            for key, sub in item.items():
                if not isinstance(key, str):
                    return f"object keys must be str, got {type(key).__name__}"
                stack.append(sub)
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, Decimal):
            if not item.is_finite():
                return f"Decimal {item} is not a finite number"
        else:
            try:
                freeze(item)
            except SerializationError as exc:
                return str(exc)
    return None


def decimal_ratio(number: float) -> tuple[int, int]:
    """``number`` as an exact fraction of the decimal JSON writes for it.

    A float is the decimal of its ``repr`` (the shortest text that reads back as it, what
    JSON encoders write): ``0.1`` is 1/10, not the binary fraction nearest to it.
    """
    if number.__class__ is int:
        return number, 1
    return Decimal(repr(float(number))).as_integer_ratio()


def is_multiple(value: float, step: tuple[int, int]) -> bool:
    """True when ``value`` is an integer multiple of the step given as ``decimal_ratio``.

    Exact decimal arithmetic, as JSON Schema means it: ``0.3`` and ``0.0075`` are
    multiples of ``0.1`` and ``0.0001``; ``1.0000000001`` is no multiple of ``1``.
    """
    numerator, denominator = decimal_ratio(value)
    step_numerator, step_denominator = step
    return (numerator * step_denominator) % (denominator * step_numerator) == 0


def equality_key(value: Any) -> Any:
    """A hashable key equal for equal Python values (the items of a ``set``).

    Numbers compare by value (``1`` equals ``1.0``) but never equal a bool; objects
    ignore key order; arrays compare item by item.
    """
    if value is True or value is False:
        return ("bool", value)
    if isinstance(value, int | float | Decimal):
        return ("number", value)
    if isinstance(value, Mapping):
        return ("object", frozenset((key, equality_key(item)) for key, item in value.items()))
    if isinstance(value, list | tuple):
        return ("array", tuple(equality_key(item) for item in value))
    try:
        hash(value)
    except TypeError:
        return ("other", type(value).__name__, repr(value))
    return (type(value).__name__, value)


def json_key(value: Any) -> Any:
    """A hashable key equal for values JSON Schema calls equal (``uniqueItems``, ``enum``).

    As :func:`equality_key`, but a converted value (a datetime, date or UUID) is the
    string the event's JSON holds for it.
    """
    if isinstance(value, TEXT_ATOMS):
        return ("str", json_text(value))
    if isinstance(value, Mapping):
        return ("object", frozenset((key, json_key(item)) for key, item in value.items()))
    if isinstance(value, list | tuple):
        return ("array", tuple(json_key(item) for item in value))
    return equality_key(value)


def lists(value: Any) -> Any:
    """A copy of ``value`` with tuples as lists (the form data takes after the walk)."""
    if isinstance(value, list | tuple):
        return [lists(item) for item in value]
    if isinstance(value, dict):
        return {key: lists(item) for key, item in value.items()}
    return value
