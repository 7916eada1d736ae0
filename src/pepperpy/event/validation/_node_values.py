"""Event data as JSON sees it: what can travel, which values are equal, their text.

The nodes judge converted values by the JSON the event will hold: integers in the 64-bit
range, finite numbers, string keys, text without lone surrogates (:func:`json_problem`,
:func:`json_issue`, :func:`lone_surrogate`); ``uniqueItems`` and ``enum``
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
from enum import Enum
from typing import Any

from .._errors import SerializationError
from .._frozen import MAX_DEPTH, freeze
from .._json import dumps
from ._node_base import join_path, key_path

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "TEXT_ATOMS",
    "base_scalar",
    "decimal_ratio",
    "equality_key",
    "is_multiple",
    "json_issue",
    "json_key",
    "json_problem",
    "json_text",
    "lists",
    "lone_surrogate",
    "plain_json",
    "surrogate_issue",
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


def base_scalar(value: Any) -> Any:
    """``value`` as a plain ``str``, ``int`` or ``float`` when it is an instance of a
    subclass of one (``markupsafe.Markup``, a ``str`` subclass of an ORM or i18n
    library), else ``value`` itself.

    Such a value is valid where its base type is, and event data holds the base type:
    that is what its JSON reads back as. A bool and an ``Enum`` member are no such
    value (a bool is no number here; a member is the enum's).
    """
    cls = value.__class__
    if cls is str or cls is int or cls is float or isinstance(value, bool | Enum):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    return value


def plain_json(value: Any) -> Any:
    """``value`` (data :func:`json_problem` accepts) with every ``str``, ``int`` and
    ``float`` subclass instance in it, object keys too, as its base type
    (:func:`base_scalar`); ``value`` itself when it holds none."""
    if isinstance(value, Mapping):
        items = [(base_scalar(k), plain_json(v)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(), strict=True)):
            return value
        return dict(items)
    if isinstance(value, list | tuple):
        plain = [plain_json(item) for item in value]
        if all(a is b for a, b in zip(plain, value, strict=True)):
            return value
        return plain
    return base_scalar(value)


def lone_surrogate(text: str) -> str | None:
    """Why ``text`` is no sequence of Unicode scalar values, or None when it is one.

    A lone surrogate (``"\\ud800"``, as ``surrogateescape`` leaves in a file name) is no
    character: UTF-8, and so the event's JSON, cannot hold it, and the event would fail
    only when it is stored or published. ASCII text, the usual case, costs one
    ``isascii()``; other text one encoding.
    """
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"contains a lone surrogate ({text[exc.start]!r} at index {exc.start}), "
            "which is not valid UTF-8"
        )
    return None


def json_problem(value: Any) -> str | None:
    """Why ``value`` cannot travel as event data (JSON), or None when it can."""
    stack = [value]
    while stack:
        item = stack.pop()
        cls = item.__class__
        if cls is str:
            if item.isascii() or lone_surrogate(item) is None:
                continue
            return _surrogate_problem(value)
        if cls is bool or item is None:
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
                if not key.isascii() and lone_surrogate(key) is not None:
                    return _surrogate_problem(value)
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


def json_issue(value: Any, path: str = "") -> tuple[str, str] | None:
    """Like :func:`json_problem`, with the path (``value`` being at ``path``) of the part
    at fault: a lone surrogate's string or key; ``path`` for the other problems."""
    why = json_problem(value)
    if why is None:
        return None
    return surrogate_issue(value, path) or (_culprit(value, path), why)


def _culprit(value: Any, path: str) -> str:
    """The path (``value`` being at ``path``) of the innermost part of ``value`` that
    :func:`json_problem` refuses: the value itself, an item or a key's value."""
    for _ in range(MAX_DEPTH + 1):  # data deeper than that is refused as a whole
        if isinstance(value, Mapping):
            found = [(k, v) for k, v in value.items() if not isinstance(k, str)]
            if found:
                return path  # a key that is no str: the object is at fault
            found = [(k, v) for k, v in value.items() if json_problem(v) is not None]
            if not found:
                return path
            key, value = found[0]
            path = key_path(path, key)
        elif isinstance(value, list | tuple):
            inner = [(i, v) for i, v in enumerate(value) if json_problem(v) is not None]
            if not inner:
                return path
            index, value = inner[0]
            path = join_path(path, index)
        else:
            return path
    return path


def surrogate_issue(value: Any, path: str = "") -> tuple[str, str] | None:
    """The path (``value`` being at ``path``) and problem of the first lone surrogate in
    ``value``'s strings and keys, or None when it holds none."""
    found = _first_surrogate(value, path)
    if found is None:
        return None
    where, what, reason = found
    return where, f"the {what} {reason}"


def _surrogate_problem(value: Any) -> str:
    """:func:`json_problem`'s message for the lone surrogate it found in ``value``."""
    found = _first_surrogate(value, "")
    if found is None:  # pragma: no cover - json_problem saw one
        return "contains a lone surrogate, which is not valid UTF-8"
    where, what, reason = found
    return f"the {what}{f' at {where}' if where else ''} {reason}"


def _first_surrogate(value: Any, path: str) -> tuple[str, str, str] | None:
    """Where, in what (``"str"`` or ``"object key"``) and why ``value`` (at ``path``) first
    holds a lone surrogate. :func:`json_problem` keeps no paths, so that valid data costs
    none: this second look runs once it found one."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            why = lone_surrogate(item)
            if why is not None:
                return where, "str", why
        elif isinstance(item, Mapping):
            for key, sub in reversed(list(item.items())):
                inner = key_path(where, key)
                why = lone_surrogate(key) if isinstance(key, str) else None
                if why is not None:
                    return inner, "object key", why
                stack.append((sub, inner))
        elif isinstance(item, list | tuple):
            items = list(enumerate(item))
            stack.extend((sub, join_path(where, index)) for index, sub in reversed(items))
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
    value = base_scalar(value)  # a str subclass equals the str
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
