"""The compiled form of a schema: a tree of nodes that check values and collect problems.

Every schema kind (annotated classes, dataclasses, TypedDicts, msgspec Structs, JSON
Schema) is compiled into these nodes once. A node's ``check`` walks a value, appends a
:class:`~pepperpy.event.ValidationProblem` for *every* mismatch it finds and returns
the converted value (defaults filled in, ISO strings parsed into datetimes). The same
tree produces the msgspec type used for the fast path (``_fast.fast_type``); this
slower walk only runs to explain a failure completely.
"""

from __future__ import annotations

import abc
import base64
import binascii
import copy
import datetime as dt
import math
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from decimal import Decimal, InvalidOperation
from enum import Enum
from itertools import repeat
from typing import Any, Literal

from .._errors import SerializationError, ValidationProblem
from .._frozen import freeze
from .._json import dumps

__all__ = [
    "INVALID",
    "MISSING",
    "TEXT_ATOMS",
    "AnyNode",
    "BoolNode",
    "BytesNode",
    "DecimalNode",
    "DictNode",
    "FULL_TIME",
    "EnumNode",
    "Field",
    "LazyNode",
    "ListNode",
    "LiteralNode",
    "Node",
    "NoneNode",
    "NumberNode",
    "ObjectNode",
    "StrNode",
    "TemporalNode",
    "TupleNode",
    "UUIDNode",
    "UnionNode",
    "contains",
    "decimal_ratio",
    "describe",
    "enable_coercion",
    "equality_key",
    "is_multiple",
    "join_path",
    "json_key",
    "json_problem",
    "json_text",
    "lists",
    "walk",
]

Problems = list[ValidationProblem]
Extra = Literal["forbid", "ignore", "allow"]
#: how an array's items must differ: as converted values (a Python ``set``), or as the
#: JSON values given (JSON Schema ``uniqueItems``); None: duplicates allowed
Unique = Literal["values", "json"] | None


class _Invalid:
    __slots__ = ()

    def __repr__(self) -> str:
        return "INVALID"


#: returned by ``check`` when the value could not be converted (problems were recorded)
INVALID: Any = _Invalid()
#: the default of a field that has none
MISSING: Any = _Invalid()


def describe(value: Any) -> str:
    """A short description of a value for the ``actual`` of a problem."""
    try:
        text = repr(value)
    except RecursionError:  # data nested too deeply (its problem says so)
        return f"{type(value).__name__} nested too deeply to show"
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def walk(node: Node) -> Iterator[Node]:
    """Every node reachable from ``node``, each once (recursive schemas included)."""
    seen: set[int] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, LazyNode) and current.target is not None:
            stack.append(current.target)
        elif isinstance(current, ListNode):
            stack.append(current.item)
        elif isinstance(current, TupleNode):
            stack.extend(current.items)
        elif isinstance(current, UnionNode):
            stack.extend(current.options)
        elif isinstance(current, DictNode):
            stack.extend((current.key, current.value))
        elif isinstance(current, ObjectNode):
            stack.extend(f.node for f in current.fields.values())
            stack.extend(node for _, node in current.patterns)
            if current.extra_node is not None:
                stack.append(current.extra_node)
        else:
            stack.extend(current.children())


def contains(node: Node, kind: type[Node]) -> bool:
    """True when ``node`` or a node below it is a ``kind``."""
    return any(isinstance(current, kind) for current in walk(node))


def enable_coercion(node: Node) -> None:
    """Switch the scalar nodes under ``node`` to msgspec's lax (coercing) rules."""
    for current in walk(node):
        if isinstance(current, NumberNode | BoolNode | NoneNode):
            current.coerce = True


def join_path(path: str, key: str | int) -> str:
    """``path`` extended by an object key or an array index, as problems show it."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if key.isidentifier():
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


_join = join_path


class Node(abc.ABC):
    """A compiled schema node."""

    expected = "any value"

    def children(self) -> Sequence[Node]:
        """The nodes directly below this one (for node kinds ``walk`` does not know)."""
        return ()

    @abc.abstractmethod
    def check(self, value: Any, path: str, problems: Problems) -> Any:
        """Return ``value`` converted, or INVALID after appending its problems."""

    def fail(self, value: Any, path: str, problems: Problems, message: str | None = None) -> Any:
        problems.append(
            ValidationProblem(path, self.expected, describe(value), message or "wrong type")
        )
        return INVALID


#: types a default keeps as they are (as the fast path's ``to_builtins`` does)
_DEFAULT_KEEP = (dt.datetime, dt.date, dt.time, uuid.UUID, Decimal, bytes)

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


class AnyNode(Node):
    """Any JSON-representable value."""

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        problem = json_problem(value)
        if problem is not None:
            return self.fail(value, path, problems, f"not representable as JSON: {problem}")
        return value


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
    ) -> None:
        self.min_length, self.max_length, self.pattern = min_length, max_length, pattern
        self.regex = re.compile(pattern) if pattern is not None else None
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
            text = value
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
        if self.rfc and len(value) != _HYPHENATED:
            return self.fail(value, path, problems, "not a UUID in its 8-4-4-4-12 form")
        try:
            return self._convert(value, uuid.UUID)
        except self._error:
            return self.fail(value, path, problems, "not a valid UUID")


_HYPHENATED = len("2eb8aa08-aa98-11ea-b4aa-73b441d16380")


class DecimalNode(Node):
    expected = "decimal (number or numeric str)"

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
        return number


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
                return lists(value)  # tuples as lists, as every other node gives them
            return self.fail(value, path, problems)
        for allowed in self.values:
            if type(allowed) is type(value) and allowed == value:
                return value
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
            member = self.by_value.get((type(value), value))
        except TypeError:  # unhashable
            member = None
        if member is None:
            return self.fail(value, path, problems)
        return member.value


class ListNode(Node):
    """A homogeneous list (lists and tuples accepted); ``unique`` refuses duplicates.

    ``unique="values"`` (a Python ``set``) compares the converted items, ``"json"``
    (``uniqueItems``) the JSON values given.
    """

    def __init__(
        self,
        item: Node,
        *,
        min_length: int | None = None,
        max_length: int | None = None,
        unique: Unique = None,
        kind: str = "list",
    ) -> None:
        self.item, self.min_length, self.max_length, self.unique = (
            item,
            min_length,
            max_length,
            unique,
        )
        self.kind = kind
        self.expected = f"{kind} of {item.expected}"

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if not isinstance(value, list | tuple):
            return self.fail(value, path, problems)
        wrong = length_problem(value, self.min_length, self.max_length)
        if wrong is not None:
            return self.fail(value, path, problems, wrong)
        return checked_items(self, value, repeat(self.item), path, problems, self.unique)


def length_problem(value: Sized, least: int | None, most: int | None) -> str | None:
    """Why an array's length is out of ``least``..``most`` (None: it is within)."""
    if least is not None and len(value) < least:
        return f"must have at least {least} items"
    if most is not None and len(value) > most:
        return f"must have at most {most} items"
    return None


def checked_items(
    owner: Node,
    value: Sequence[Any],
    nodes: Iterable[Node],
    path: str,
    problems: Problems,
    unique: Unique,
) -> Any:
    """Each item of ``value`` checked by its node (``nodes`` in step with the items).

    INVALID if any item fails, or with ``unique`` if two items are equal: as converted
    values (``"values"``), or as the JSON values given (``"json"``, JSON Schema equality:
    two spellings of one instant are two strings).
    """
    out = []
    ok = True
    for index, (item, node) in enumerate(zip(value, nodes, strict=False)):  # nodes may be longer
        converted = node.check(item, _join(path, index), problems)
        ok = ok and converted is not INVALID
        out.append(converted)
    if not ok:
        return INVALID
    if unique == "values" and len({equality_key(v) for v in out}) != len(out):
        return owner.fail(value, path, problems, "items must be unique")
    if unique == "json":
        if len({json_key(v) for v in value}) != len(value):
            return owner.fail(value, path, problems, "items must be unique")
        out = _distinct_once_converted(value, out)
    return out


def _distinct_once_converted(value: Sequence[Any], out: list[Any]) -> list[Any]:
    """``out``, with strings that converted into equal values kept as given.

    ``"2024-01-01T00:00:00Z"`` and ``"2024-01-01T00:00:00+00:00"`` are two JSON values
    but one datetime: converted, the array would hold a duplicate and fail
    ``uniqueItems`` when validated again.
    """
    keys = [json_key(v) for v in out]
    counts = Counter(keys)
    if len(counts) == len(out):
        return out
    return [
        given if counts[key] > 1 and isinstance(given, str) else item
        for given, item, key in zip(value, out, keys, strict=True)
    ]


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


class TupleNode(Node):
    """A fixed-length sequence with one schema per position."""

    def __init__(self, items: Sequence[Node]) -> None:
        self.items = tuple(items)
        self.expected = f"array of {len(self.items)} items"

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if not isinstance(value, list | tuple) or len(value) != len(self.items):
            return self.fail(value, path, problems)
        out = [
            node.check(item, _join(path, index), problems)
            for index, (node, item) in enumerate(zip(self.items, value, strict=True))
        ]
        return INVALID if any(v is INVALID for v in out) else out


class DictNode(Node):
    """A mapping with uniform keys and values."""

    def __init__(
        self,
        key: Node,
        value: Node,
        *,
        min_length: int | None = None,
        max_length: int | None = None,
    ) -> None:
        self.key, self.value, self.min_length, self.max_length = key, value, min_length, max_length
        self.expected = f"object of {value.expected}"

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if not isinstance(value, Mapping):
            return self.fail(value, path, problems)
        if self.min_length is not None and len(value) < self.min_length:
            return self.fail(value, path, problems, f"must have at least {self.min_length} keys")
        if self.max_length is not None and len(value) > self.max_length:
            return self.fail(value, path, problems, f"must have at most {self.max_length} keys")
        out = {}
        ok = True
        for key, item in value.items():
            where = _join(path, key if isinstance(key, str) else repr(key))
            converted_key = self.key.check(key, where, problems)
            converted = self.value.check(item, where, problems)
            if converted_key is INVALID or converted is INVALID:
                ok = False
            else:
                out[converted_key] = converted
        return out if ok else INVALID


class Field:
    """One field of an object: its schema, whether it is required, its default."""

    __slots__ = ("default", "factory", "name", "node", "required")

    def __init__(
        self,
        name: str,
        node: Node,
        *,
        required: bool = True,
        default: Any = MISSING,
        factory: Callable[[], Any] | None = None,
    ) -> None:
        self.name, self.node, self.required = name, node, required
        self.default, self.factory = default, factory

    @property
    def has_default(self) -> bool:
        """True when an absent value is replaced by a default."""
        return self.factory is not None or self.default is not MISSING

    def fallback(self) -> Any:
        """The value used when the field is absent: a fresh one, in its JSON form.

        Converted as the fast path converts defaults (``msgspec.to_builtins``: enum
        members become their values, tuples lists), so both paths give the same data.
        """
        value = self.factory() if self.factory is not None else copy.deepcopy(self.default)
        if value is None or value.__class__ in (str, int, float, bool):
            return value
        import msgspec  # present: schemas are only compiled when it is

        return lists(msgspec.to_builtins(value, builtin_types=_DEFAULT_KEEP))


def lists(value: Any) -> Any:
    """A copy of ``value`` with tuples as lists (the form data takes after the walk)."""
    if isinstance(value, list | tuple):
        return [lists(item) for item in value]
    if isinstance(value, dict):
        return {key: lists(item) for key, item in value.items()}
    return value


class ObjectNode(Node):
    """A JSON object with named fields; ``extra`` decides what unknown keys do.

    ``extra_node`` (JSON Schema ``additionalProperties: {...}``) validates kept extras.
    ``patterns`` (JSON Schema ``patternProperties``) pairs regular expressions with nodes:
    an undeclared key matching one is no extra, every matching node checks its value.
    Fields that are absent and not required get their default, or stay absent when
    they have none (TypedDict ``total=False``, JSON Schema properties without
    ``default``).
    """

    def __init__(
        self,
        name: str,
        fields: Sequence[Field],
        *,
        extra: Extra = "forbid",
        extra_node: Node | None = None,
        patterns: Sequence[tuple[str, Node]] = (),
    ) -> None:
        self.name = name
        self.fields = {f.name: f for f in fields}
        self.extra: Extra = extra
        self.extra_node = extra_node
        self.patterns = tuple((re.compile(p), node) for p, node in patterns)
        self.expected = f"object {name}" if name else "object"

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if not isinstance(value, Mapping):
            return self.fail(value, path, problems)
        out: dict[str, Any] = {}
        ok = True
        for name, field in self.fields.items():
            if name in value:
                converted = field.node.check(value[name], _join(path, name), problems)
                if converted is INVALID:
                    ok = False
                else:
                    out[name] = converted
            elif field.required:
                problems.append(
                    ValidationProblem(
                        _join(path, name), field.node.expected, "missing", "field required"
                    )
                )
                ok = False
            elif field.has_default:
                out[name] = field.fallback()
        for key in value:
            if key in self.fields:
                continue
            where = _join(path, key if isinstance(key, str) else repr(key))
            if not isinstance(key, str):
                problems.append(
                    ValidationProblem(where, "str key", describe(key), "keys must be str")
                )
                ok = False
            elif self.patterns and (matched := self._matching(key)):
                converted = _all_of(matched, value[key], where, problems)
                if converted is INVALID:
                    ok = False
                else:
                    out[key] = converted
            elif self.extra == "forbid":
                problems.append(
                    ValidationProblem(
                        where, "no such field", describe(value[key]), "unexpected field"
                    )
                )
                ok = False
            elif self.extra == "allow":
                node = self.extra_node or AnyNode()
                converted = node.check(value[key], where, problems)
                if converted is INVALID:
                    ok = False
                else:
                    out[key] = converted
        return out if ok else INVALID

    def _matching(self, key: str) -> list[Node]:
        """The nodes of the patterns ``key`` matches, each pattern searched once.

        (A backtracking pattern can take long on a hostile key: it is not run twice.)
        """
        return [node for regex, node in self.patterns if regex.search(key)]


def _all_of(nodes: list[Node], item: Any, where: str, problems: Problems) -> Any:
    """``item`` checked by every node (of the patterns its key matches); the first converts."""
    out: Any = MISSING
    for node in nodes:
        converted = node.check(item, where, problems)
        if converted is INVALID:
            out = INVALID
        elif out is MISSING:
            out = converted
    return out


class UnionNode(Node):
    """The first option the value matches; on failure, the most useful explanation."""

    def __init__(self, options: Sequence[Node]) -> None:
        self.options = tuple(options)
        self.expected = " | ".join(option.expected for option in self.options)

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        attempts: list[tuple[Node, Problems]] = []
        for option in self.options:
            found: Problems = []
            converted = option.check(value, path, found)
            if not found and converted is not INVALID:
                return converted
            attempts.append((option, found))
        if isinstance(value, Mapping):  # explain against the object-shaped options
            shaped = [a for a in attempts if isinstance(a[0], ObjectNode | DictNode)]
            if len(shaped) == 1:
                problems.extend(shaped[0][1])
                return INVALID
        return self.fail(value, path, problems)


class LazyNode(Node):
    """A node defined later (recursive types, JSON Schema ``$ref``)."""

    def __init__(self) -> None:
        self.target: Node | None = None

    @property
    def expected(self) -> str:  # type: ignore[override]
        return self.target.expected if self.target is not None else "value"

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        assert self.target is not None
        return self.target.check(value, path, problems)
