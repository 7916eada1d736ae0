"""Nodes for single values: null, bools, numbers, strings, bytes, times, UUIDs, enums.

Each accepts the Python value or the form JSON carries it in (base64 text for bytes,
RFC 3339 text for times), and with coercion (``enable_coercion``) the looser text
msgspec's lax mode reads, so the slow walk agrees with the fast path.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import re
import uuid
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, Literal

from .._errors import ConfigurationError
from ._ecma_regex import ecma_to_python
from ._node_base import Node, Problems
from ._node_values import (
    INT_MAX,
    INT_MIN,
    TEXT_ATOMS,
    base_scalar,
    decimal_ratio,
    is_multiple,
    json_key,
    json_problem,
    json_text,
    lists,
    lone_surrogate,
    plain_json,
    surrogate_issue,
)
from ._pydantic_regex import pydantic_matcher, pydantic_pattern_text

__all__ = [
    "FULL_TIME",
    "AnyNode",
    "BoolNode",
    "BytesNode",
    "DecimalNode",
    "EnumNode",
    "LiteralNode",
    "NoneNode",
    "NumberNode",
    "StrNode",
    "TemporalNode",
    "UUIDNode",
]


class AnyNode(Node):
    """Any JSON-representable value."""

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        problem = json_problem(value)
        if problem is not None:
            surrogate = surrogate_issue(value, path)  # named at its own string or key
            if surrogate is not None:
                return self.fail(value, surrogate[0], problems, surrogate[1])
            return self.fail(value, path, problems, f"not representable as JSON: {problem}")
        return plain_json(value)  # str, int and float subclasses as their base type


_JSON_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
_BOOL_TEXT = {"true": True, "True": True, "1": True, "false": False, "False": False, "0": False}


class NoneNode(Node):
    expected = "null"
    coerce = False  # with coercion, the string "null" is accepted (as msgspec's lax mode)

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if value is None or (self.coerce and value == "null"):
            return None
        return self.fail(value, path, problems)


class BoolNode(Node):
    expected = "bool"
    coerce = False  # with coercion: "true"/"false"/"1"/"0" and the ints 1 and 0

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if value is True or value is False:
            return value
        if self.coerce:
            if value.__class__ is str and value in _BOOL_TEXT:
                return _BOOL_TEXT[value]
            if value.__class__ is int and value in (0, 1):
                return bool(value)
        return self.fail(value, path, problems)


class NumberNode(Node):
    """An int (bools refused) or a float (ints accepted, NaN and infinities refused)."""

    def __init__(
        self,
        kind: Literal["int", "float", "number"],
        *,
        gt: float | None = None,
        ge: float | None = None,
        lt: float | None = None,
        le: float | None = None,
        multiple_of: float | None = None,
    ) -> None:
        self.kind = kind
        self.coerce = False
        self.gt, self.ge, self.lt, self.le, self.multiple_of = gt, ge, lt, le, multiple_of
        self.step = None if multiple_of is None else decimal_ratio(multiple_of)
        parts: list[str] = [kind]
        for symbol, bound in ((">", gt), (">=", ge), ("<", lt), ("<=", le)):
            if bound is not None:
                parts.append(f"{symbol} {bound}")
        if multiple_of is not None:
            parts.append(f"multiple of {multiple_of}")
        self.expected = " ".join(parts) if len(parts) < 3 else f"{kind} ({', '.join(parts[1:])})"

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        cls = value.__class__
        if self.coerce:
            value = self._coerced(value)
            cls = value.__class__
        if cls is bool or not isinstance(value, int | float):
            return self.fail(value, path, problems)
        if self.kind == "int" or (self.kind == "number" and isinstance(value, int)):
            if not isinstance(value, int):
                return self.fail(value, path, problems)
            value = int(value)
            if not INT_MIN <= value <= INT_MAX:
                return self.fail(value, path, problems, "integer outside the 64-bit range")
        else:
            try:
                value = float(value)
            except OverflowError:
                return self.fail(value, path, problems, "number out of range")
            if not math.isfinite(value):
                return self.fail(value, path, problems, "expected a finite number")
        if self.gt is not None and not value > self.gt:
            return self.fail(value, path, problems, f"must be > {self.gt}")
        if self.ge is not None and not value >= self.ge:
            return self.fail(value, path, problems, f"must be >= {self.ge}")
        if self.lt is not None and not value < self.lt:
            return self.fail(value, path, problems, f"must be < {self.lt}")
        if self.le is not None and not value <= self.le:
            return self.fail(value, path, problems, f"must be <= {self.le}")
        if self.step is not None and not is_multiple(value, self.step):
            return self.fail(value, path, problems, f"must be a multiple of {self.multiple_of}")
        return value

    def _coerced(self, value: Any) -> Any:
        """msgspec's lax mode: numeric strings, and integral floats for ints."""
        if value.__class__ is str and _JSON_NUMBER.fullmatch(value):
            if self.kind == "float":
                return float(value)
            if value.lstrip("-").isdigit():
                return int(value)
            number = float(value)
            return _integral(number) if self.kind == "int" else number
        if self.kind == "int" and value.__class__ is float:
            return _integral(value)
        return value


def _integral(value: float) -> Any:
    return int(value) if math.isfinite(value) and value == int(value) else value


class StrNode(Node):
    """A string, with length and pattern constraints.

    ``json_text`` (JSON Schema): a converted value whose JSON form is a string (a
    datetime, date or UUID: data the validator returned, validated again) is judged by
    that text and kept as it is.
    """

    def __init__(
        self,
        *,
        min_length: int | None = None,
        max_length: int | None = None,
        pattern: str | None = None,
        json_text: bool = False,
        ecma: bool = False,
        pydantic_pattern: Any = None,
        regex_engine: str | None = None,
    ) -> None:
        if pydantic_pattern is not None:
            if pattern is not None:
                raise ConfigurationError(
                    f"two patterns on one str ({pattern!r} and the pydantic "
                    f"{pydantic_pattern_text(pydantic_pattern)!r}): give one"
                )
            pattern = pydantic_pattern_text(pydantic_pattern)
        self.min_length, self.max_length, self.pattern = min_length, max_length, pattern
        #: the Python regex run (what msgspec's fast path runs too): ``pattern`` itself,
        #: or for JSON Schema (``ecma``) its ECMA-262 meaning (see ``_ecma_regex``); None
        #: for a pydantic pattern, which pydantic-core runs (``matcher``)
        self.source = pattern if pattern is None or not ecma else ecma_to_python(pattern)
        self.matcher = None
        if pydantic_pattern is not None:
            self.source = None
            self.matcher = pydantic_matcher(pydantic_pattern, regex_engine)
        self.regex = re.compile(self.source) if self.source is not None else None
        self.json_text = json_text
        extras = []
        if min_length is not None:
            extras.append(f"length >= {min_length}")
        if max_length is not None:
            extras.append(f"length <= {max_length}")
        if pattern is not None:
            extras.append(f"matching {pattern!r}")
        self.expected = f"str ({', '.join(extras)})" if extras else "str"

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if isinstance(value, str):
            if value.__class__ is not str:  # a subclass (markupsafe.Markup): kept as a str
                value = str.__str__(value)
            text = value
            if not text.isascii():  # the usual case costs only this
                surrogate = lone_surrogate(text)
                if surrogate is not None:
                    return self.fail(value, path, problems, surrogate)
        elif self.json_text and isinstance(value, TEXT_ATOMS):
            text = json_text(value)
        else:
            return self.fail(value, path, problems)
        why = self.refuses(text)
        if why is not None:
            if text is not value:
                why += f" (its JSON text is {text!r})"
            return self.fail(value, path, problems, why)
        return value

    def refuses(self, text: str) -> str | None:
        """Why ``text`` breaks the length or pattern constraints (None: it meets them)."""
        if self.min_length is not None and len(text) < self.min_length:
            return f"must have length >= {self.min_length}"
        if self.max_length is not None and len(text) > self.max_length:
            return f"must have length <= {self.max_length}"
        if self.regex is not None and self.regex.search(text) is None:
            return f"must match {self.pattern!r}"
        if self.matcher is not None and not self.matcher(text):
            return f"must match {self.pattern!r}"
        return None


class BytesNode(Node):
    """Bytes, or their base64 text (how JSON carries them)."""

    expected = "bytes or base64 str"

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return self.fail(value, path, problems, "not valid base64")
        return self.fail(value, path, problems)


#: RFC 3339 ``full-time``: ``partial-time time-offset`` (``Z`` in either case)
FULL_TIME = (
    r"([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9]|60)(\.[0-9]+)?"
    r"(?:[Zz]|([+-])([01][0-9]|2[0-3]):([0-5][0-9]))"
)


#: RFC 3339 ``date-time`` (the date's ranges are left to the parser); group 4 the fraction
_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt]" + FULL_TIME)
_MICROSECONDS = len(".123456")


class TemporalNode(Node):
    """A datetime, date or time, or its RFC 3339 text (how JSON carries it).

    ``rfc`` (JSON Schema ``format: date-time``): only RFC 3339 text, not the looser forms
    msgspec also reads (a space for ``T``, ``+0100``); fraction digits beyond the
    microsecond are cut off, not rounded (rounding could move the instant into the next
    day, or past the year 9999).
    """

    def __init__(
        self,
        kind: Literal["datetime", "date", "time"],
        tz: bool | None = None,
        *,
        rfc: bool = False,
    ) -> None:
        import msgspec  # present: schemas are only compiled when it is

        self.kind = kind
        self.tz = tz
        self.rfc = rfc and kind == "datetime"
        self.type = {"datetime": dt.datetime, "date": dt.date, "time": dt.time}[kind]
        self._convert, self._error = msgspec.convert, msgspec.ValidationError
        zone = {True: " with a timezone", False: " without a timezone", None: ""}[tz]
        self.expected = f"{kind}{zone} (or RFC 3339 str)"

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        surrogate = _surrogate_text(value)
        if surrogate is not None:  # msgspec's parser raised UnicodeEncodeError on it
            return self.fail(value, path, problems, surrogate)
        parsed = self._parse(value)
        if parsed is None:
            if self.rfc and isinstance(value, str):
                why = "not an RFC 3339 date-time with an offset (a valid date, T, HH:MM:SS)"
                return self.fail(value, path, problems, why)
            return self.fail(value, path, problems)
        if self.tz is not None and self.kind in ("datetime", "time"):
            aware = parsed.tzinfo is not None and parsed.utcoffset() is not None
            if aware != self.tz:
                return self.fail(value, path, problems)
        return parsed

    def _parse(self, value: Any) -> Any:
        """The value as a datetime/date/time, or None.

        Text is parsed by msgspec, as on the fast path, so both accept the same strings:
        RFC 3339 (a full date and time with seconds for a datetime; ``YYYY-MM-DD`` for a
        date), not the looser forms ``fromisoformat`` takes (a date alone as a datetime,
        week dates, ``20240501``).
        """
        if isinstance(value, str):
            if self.rfc:
                match = _DATE_TIME.fullmatch(value)
                if match is None:
                    return None
                fraction = match.group(4)
                if fraction is not None and len(fraction) > _MICROSECONDS:
                    start = match.start(4) + _MICROSECONDS
                    value = value[:start] + value[match.end(4) :]
            try:
                return self._convert(value, self.type, strict=True)
            except self._error:
                return None
        if isinstance(value, self.type) and (
            self.kind != "date" or not isinstance(value, dt.datetime)
        ):
            return value
        return None


class UUIDNode(Node):
    """A UUID, or its text.

    ``rfc`` (JSON Schema ``format: uuid``): only the RFC 9562 hyphenated form, 8-4-4-4-12
    hex digits in either case. Otherwise the text msgspec reads (the fast path's rule):
    that form, or 32 hex digits. (msgspec reads 36 characters only as the hyphenated
    form, so the length tells the two apart.)
    """

    def __init__(self, *, rfc: bool = False) -> None:
        import msgspec  # present: schemas are only compiled when it is

        self.rfc = rfc
        self._convert, self._error = msgspec.convert, msgspec.ValidationError
        self.expected = "UUID (8-4-4-4-12 hex str)" if rfc else "UUID (or its str form)"

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if isinstance(value, uuid.UUID):
            return value
        if not isinstance(value, str):
            return self.fail(value, path, problems)
        surrogate = _surrogate_text(value)
        if surrogate is not None:  # msgspec's parser raised UnicodeEncodeError on it
            return self.fail(value, path, problems, surrogate)
        if self.rfc and len(value) != _HYPHENATED:
            return self.fail(value, path, problems, "not a UUID in its 8-4-4-4-12 form")
        try:
            return self._convert(value, uuid.UUID)
        except self._error:
            return self.fail(value, path, problems, "not a valid UUID")


_HYPHENATED = len("2eb8aa08-aa98-11ea-b4aa-73b441d16380")


def _surrogate_text(value: Any) -> str | None:
    """Why ``value``, if it is text, holds a lone surrogate (None: it holds none)."""
    if isinstance(value, str) and not value.isascii():
        return lone_surrogate(value)
    return None


class DecimalNode(Node):
    """A Decimal, from a number or numeric text, with optional bounds (annotated-types
    or ``msgspec.Meta`` markers), compared exactly (a float bound as the decimal JSON
    writes for it)."""

    expected = "decimal (number or numeric str)"

    def __init__(self, **bounds: float | None) -> None:
        self.bounds = {k: _exact(v) for k, v in bounds.items() if v is not None}
        shown = [f"{_SYMBOLS[k]} {bounds[k]}" for k in self.bounds if k != "multiple_of"]
        if "multiple_of" in self.bounds:
            shown.append(f"multiple of {bounds['multiple_of']}")
        if shown:
            self.expected = f"decimal ({', '.join(shown)})"

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if value.__class__ is bool:
            return self.fail(value, path, problems)
        try:
            if isinstance(value, Decimal):
                number = value
            elif isinstance(value, int | str):
                number = Decimal(value)
            elif isinstance(value, float):
                number = Decimal(repr(value))
            else:
                return self.fail(value, path, problems)
        except (InvalidOperation, ValueError):
            return self.fail(value, path, problems, "not a decimal number")
        if not number.is_finite():
            return self.fail(value, path, problems, "expected a finite number")
        for name, bound in self.bounds.items():
            if not _DECIMAL_TESTS[name](number, bound):
                what = "a multiple of" if name == "multiple_of" else _SYMBOLS[name]
                return self.fail(value, path, problems, f"must be {what} {bound}")
        return number


def _exact(bound: Any) -> Decimal:
    """A bound as a Decimal: a float as the decimal its repr (its JSON) writes."""
    return bound if isinstance(bound, Decimal) else Decimal(repr(bound))


_SYMBOLS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_DECIMAL_TESTS: dict[str, Any] = {
    "gt": lambda n, b: n > b,
    "ge": lambda n, b: n >= b,
    "lt": lambda n, b: n < b,
    "le": lambda n, b: n <= b,
    "multiple_of": lambda n, b: n % b == 0,
}


class LiteralNode(Node):
    """One of a fixed set of JSON values (``Literal[...]``, JSON Schema ``enum``/``const``).

    ``json_equality`` (JSON Schema) compares as ``uniqueItems`` does: ``1`` equals
    ``1.0`` (never ``true``), objects whatever their key order. Otherwise (``Literal``)
    the type must match too: ``1.0`` is not ``Literal[1]``.
    """

    def __init__(self, values: Sequence[Any], *, json_equality: bool = False) -> None:
        self.values = tuple(values)
        self.json_equality = json_equality
        self.keys = {json_key(v) for v in self.values} if json_equality else set()
        self.expected = "one of " + ", ".join(repr(v) for v in self.values)

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if self.json_equality:
            if json_problem(value) is None and json_key(value) in self.keys:
                return lists(plain_json(value))  # tuples as lists, as other nodes give them
            return self.fail(value, path, problems)
        plain = base_scalar(value)  # a str, int or float subclass as its base type
        for allowed in self.values:
            if type(allowed) is type(plain) and allowed == plain:
                return plain
        return self.fail(value, path, problems)


class EnumNode(Node):
    """A member of an ``Enum``, given as the member or its value (the JSON form)."""

    def __init__(self, cls: type[Enum]) -> None:
        self.cls = cls
        self.by_value = {(type(m.value), m.value): m for m in cls}
        self.expected = f"{cls.__name__} (one of {', '.join(repr(m.value) for m in cls)})"

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if isinstance(value, self.cls):
            return value.value
        try:
            plain = base_scalar(value)  # a str, int or float subclass as its base type
            member = self.by_value.get((type(plain), plain))
        except TypeError:  # unhashable
            member = None
        if member is None:
            return self.fail(value, path, problems)
        return member.value
