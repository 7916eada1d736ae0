"""JSON encoding shared by every backend: orjson plus the few types it lacks.

Besides JSON's own types, event data may hold ``datetime``/``date``/``time`` (ISO 8601),
``UUID`` (canonical text), ``Decimal`` (a string, so no precision is lost), ``bytes``
(base64 text) and dataclasses (objects). Other values are refused with
:class:`SerializationError` naming the offending type.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Iterator
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any

import orjson

from ._errors import SerializationError
from ._frozen import _check_int

__all__ = ["dumps", "loads"]

_OPTIONS = orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise SerializationError(f"Decimal {value} is not a finite number")
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    to_builtins = getattr(value, "model_dump", None)  # pydantic models
    if callable(to_builtins):
        return to_builtins(mode="json")
    raise SerializationError(f"value of type {type(value).__name__} is not JSON-serialisable")


def dumps(value: Any) -> bytes:
    """Encode ``value`` as compact UTF-8 JSON bytes; NaN and infinities are refused.

    orjson writes a non-finite float as ``null``, which would lose it silently; output
    holding a ``null`` is therefore checked for one (JSON without nulls needs no check).
    """
    try:
        encoded = orjson.dumps(value, default=_default, option=_OPTIONS)
    except SerializationError:
        raise
    except orjson.JSONEncodeError as exc:
        cause = exc.__cause__
        if isinstance(cause, SerializationError):
            raise cause from None
        if "surrogates" in str(exc):
            raise SerializationError(f"cannot encode as JSON: {_lone_surrogate(value)}") from exc
        if "tzinfo" not in str(exc) and "timezone" not in str(exc):
            raise SerializationError(f"cannot encode as JSON: {exc}") from exc
        # orjson refuses a ``time`` with a UTC offset, which RFC 3339 (full-time) and
        # Python both allow: write every date and time through isoformat() instead
        # (the same text orjson writes for the others), only for data that holds one
        encoded = _dumps_temporal(value)
    # find(), not ``in``: bytes.__contains__ first tries its operand as an int and
    # builds a TypeError on the way (0.57 us against 0.27 us here)
    if encoded.find(b"null") >= 0:
        _refuse_non_finite(value)
    return encoded


def _temporal_default(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return _default(value)


def _dumps_temporal(value: Any) -> bytes:
    try:
        return orjson.dumps(
            value,
            default=_temporal_default,
            option=_OPTIONS | orjson.OPT_PASSTHROUGH_DATETIME,
        )
    except orjson.JSONEncodeError as exc:
        cause = exc.__cause__
        if isinstance(cause, SerializationError):
            raise cause from None
        raise SerializationError(f"cannot encode as JSON: {exc}") from exc


def _refuse_non_finite(value: Any) -> None:
    """Raise :class:`SerializationError` for the first NaN or infinity in ``value``
    (dicts, lists, tuples and dataclass instances looked into), named by its path.

    The containers being looked into wait on a list, not on the caller's stack (``value``
    was just encoded: it is acyclic and at most 254 levels deep).
    """
    #: an iterator over the items of each container around ``value``, and the key of
    #: ``value`` (or of the container holding it) in each
    stack: list[Iterator[tuple[Any, Any]]] = []
    path: list[Any] = []
    while True:
        if isinstance(value, float):
            if value - value != 0.0:  # NaN and infinities (inf - inf is NaN)
                where = "".join(f"[{key!r}]" for key in path)
                raise SerializationError(
                    f"{value!r}{' at ' + where if where else ''} is not a finite number; "
                    "JSON cannot hold it"
                )
        elif isinstance(value, dict):
            stack.append(iter(value.items()))
            path.append(None)
        elif isinstance(value, list | tuple):
            stack.append(enumerate(value))
            path.append(None)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            # orjson writes a dataclass instance as an object of its fields
            fields = [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
            stack.append(iter(fields))
            path.append(None)
        while stack:  # on to the next item, of the innermost container with one left
            step = next(stack[-1], None)
            if step is not None:
                path[-1], value = step
                break
            stack.pop()
            path.pop()
        else:
            return


def _lone_surrogate(value: Any) -> str:
    """Say where the first str or key of ``value`` holding a lone surrogate is.

    Only on the failure path (orjson said "surrogates not allowed"): UTF-8, so JSON text,
    cannot hold one, and a message naming the place saves the caller a search. Walked
    with a list, not the caller's stack, as :func:`_refuse_non_finite`.
    """
    stack: list[tuple[list[Any], Any]] = [([], value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            entries = list(item.items())
            for key, inner in reversed(entries):
                stack.append(([*path, key], inner))
            for key, _ in entries:
                if isinstance(key, str) and _unencodable(key):
                    return _surrogate_message(key, path, "key")
        elif isinstance(item, list | tuple):
            stack.extend(
                ([*path, index], inner) for index, inner in reversed(list(enumerate(item)))
            )
        elif isinstance(item, str) and _unencodable(item):
            return _surrogate_message(item, path, "str")
    return "a str is not valid UTF-8 (it holds a lone surrogate)"


def _unencodable(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _surrogate_message(text: str, path: list[Any], what: str) -> str:
    where = "".join(f"[{key!r}]" for key in path)
    shown = text if len(text) <= 40 else text[:37] + "..."
    return (
        f"{what} {shown!r}{' at ' + where if where else ''} holds a lone surrogate, "
        "which UTF-8 (and so JSON text) cannot hold"
    )


#: every ASCII digit as "0", the rest as is: a run of 19 "0"s in the translated text is a
#: run of 19 digits in the original, which an integer beyond 64 bits needs
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= byte <= 0x39 else byte for byte in range(256))
_LONG_DIGIT_RUN_LENGTH = 19
_LONG_DIGIT_RUN = b"0" * _LONG_DIGIT_RUN_LENGTH
#: a JSON string (digits inside are text) or number; an integer is a number with no
#: fraction nor exponent
_NUMBER_OR_STRING = re.compile(
    rb'"[^"\\]*(?:\\.[^"\\]*)*"|-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?'
)
#: longest integer literal quoted whole in an error
_QUOTED_DIGITS = 40


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Decode JSON text or bytes; integers beyond 64 bits are refused, as in ``data``.

    orjson turns an integer outside -2**63 .. 2**64-1 into a float, silently changing
    the value. Such an integer needs 19 digits or more, so text with no run of 19 digits
    (about every text: one ``translate`` and one ``find``, a fraction of the parse) is
    returned as orjson read it; otherwise it is read again with exact integers, and one
    out of range raises :class:`SerializationError`, the same rule and message as for
    such an integer given from Python.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SerializationError(f"invalid JSON: {exc}") from exc
    if isinstance(data, str):
        raw: bytes | bytearray = data.encode("utf-8", "surrogatepass")
    elif isinstance(data, memoryview):
        raw = data.tobytes()
    else:
        raw = data
    if raw.translate(_DIGITS_AS_ZERO).find(_LONG_DIGIT_RUN) >= 0:
        _refuse_wide_integers(raw)
    return value


def _refuse_wide_integers(raw: bytes | bytearray) -> None:
    """Raise :class:`SerializationError` if the JSON ``raw`` holds an integer that does
    not fit in 64 bits (runs of digits inside strings are let through).

    A scan of the text, token by token (``raw`` is valid JSON: orjson read it), not a
    second parse: Python's own parser recurses, in C, and counts the caller's frames.
    """
    for token in _NUMBER_OR_STRING.findall(raw):
        if len(token) >= _LONG_DIGIT_RUN_LENGTH and token.lstrip(b"-").isdigit():
            _exact_int(token.decode("ascii"))


def _exact_int(text: str) -> int:
    if len(text) > _QUOTED_DIGITS:  # far out of range; int() might refuse the length
        raise SerializationError(
            f"integer {text[:20]}...({len(text)} digits) does not fit in 64 bits; "
            "JSON encoders cannot carry it"
        )
    return _check_int(int(text))
