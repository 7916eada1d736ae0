"""Nodes only JSON Schema needs: keywords combined by AND, by type, and 2020-12 arrays.

In a JSON Schema object every keyword applies: ``{"type": "string", "enum": [...],
"minLength": 2}`` needs all three. :class:`AllNode` checks a value against the node made
of the type keywords and against each of ``enum``/``const``/``$ref``/``anyOf``.
:class:`ArrayNode` is ``prefixItems`` with its 2020-12 meaning: the first items are
checked position by position, the array may be shorter, and further items are checked by
``items`` (or refused when ``items`` is false). :class:`ByTypeNode` holds keywords of a
type written without ``type`` (``{"minLength": 2}``): they apply to values of their type,
any other value is accepted. :class:`TimeTextNode` is ``format: time`` (RFC 3339).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from itertools import chain, repeat
from typing import Any

from .._errors import ValidationProblem
from ._ecma_regex import compile_ecma
from ._nodes import (
    FULL_TIME,
    INVALID,
    TEXT_ATOMS,
    AnyNode,
    Extra,
    Node,
    Problems,
    Unique,
    checked_items,
    describe,
    join_path,
    key_path,
    length_problem,
)

__all__ = [
    "AllNode",
    "ArrayNode",
    "ByTypeNode",
    "DependentRequiredNode",
    "NeverNode",
    "PropertyCountNode",
    "TimeTextNode",
    "json_type",
]


class AllNode(Node):
    """A value every part accepts; the first part (``main``) gives the converted value.

    ``typed``: ``main`` is the node of the type keywords; when it refuses the value, the
    type is wrong and the other parts are not asked. Otherwise ``main`` is just the
    first of equal parts, and every part explains a failure.

    The other parts only judge, except for object keys they own: ``owned[i]`` are the
    keys whose value is taken from the output of ``checks[i]`` (so ``format: date-time``
    in an ``anyOf`` or ``allOf`` branch still converts). With ``extra`` set, the
    ``extra_fields`` policy is applied here to the keys of an object that no part
    declares (``declared`` names, or a match of one of ``patterns``): the parts
    themselves were compiled open.
    """

    def __init__(
        self,
        main: Node,
        checks: Sequence[Node],
        owned: Sequence[frozenset[str]] = (),
        *,
        typed: bool = True,
        extra: Extra | None = None,
        declared: frozenset[str] = frozenset(),
        patterns: Sequence[str] = (),
    ) -> None:
        self.main, self.checks, self.typed = main, tuple(checks), typed
        self.owned = tuple(owned) or tuple(frozenset() for _ in self.checks)
        self.extra: Extra | None = extra
        self.declared = declared
        self.patterns = tuple(compile_ecma(p) for p in patterns)

    @property
    def expected(self) -> str:  # type: ignore[override]
        return " and ".join(part.expected for part in (self.main, *self.checks))

    def children(self) -> Sequence[Node]:
        return (self.main, *self.checks)

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if self.extra == "ignore" and isinstance(value, Mapping):
            value = self._without_ignored(value)
        found: Problems = []
        out = self.main.check(value, path, found)
        if (found or out is INVALID) and self.typed:
            problems.extend(found)  # the type is wrong: the other parts add nothing
            return INVALID
        if isinstance(out, dict) and isinstance(value, Mapping):
            value = _kept_of(value, out)  # the parts judge what is kept
        if found or out is INVALID:  # no type keywords: every part explains
            for part in self.checks:
                part.check(value, path, found)
            unique = {(p.path, p.expected, p.actual, p.message): p for p in found}
            problems.extend(unique.values())
            return INVALID
        if isinstance(out, dict) and (self.extra is not None or any(self.owned)):
            out = dict(out)  # main may have given the input itself (AnyNode)
        ok = self._parts(value, out, path, problems)
        if ok and isinstance(out, dict) and isinstance(value, Mapping):
            filled = _kept_of(value, out)
            if len(filled) != len(value):  # a part filled in a default: judged with it too
                ok = self._parts(filled, out, path, problems)
        if ok and self.extra is not None and isinstance(out, dict):
            ok = self._apply_extra(out, path, problems)
        if not ok:
            return INVALID
        if isinstance(out, TEXT_ATOMS) and isinstance(value, str):
            return self._converted_or_given(value, out, path)
        return out

    def _parts(self, value: Any, out: Any, path: str, problems: Problems) -> bool:
        """Every part judges ``value``; the keys a part owns take its values in ``out``."""
        ok = True
        for part, keys in zip(self.checks, self.owned, strict=True):
            converted = part.check(value, path, problems)
            if converted is INVALID:
                ok = False
            elif keys and isinstance(out, dict) and isinstance(converted, Mapping):
                for key in keys & converted.keys():
                    out[key] = converted[key]
        return ok

    def _without_ignored(self, value: Mapping[Any, Any]) -> Mapping[Any, Any]:
        """``value`` without the keys no part declares, dropped before the parts judge."""
        kept = {k: v for k, v in value.items() if not self._undeclared(k)}
        return value if len(kept) == len(value) else kept

    def _undeclared(self, key: Any) -> bool:
        return key not in self.declared and not (
            isinstance(key, str) and any(p.search(key) for p in self.patterns)
        )

    def _converted_or_given(self, given: str, out: Any, path: str) -> Any:
        """``out``, the string converted by a ``format``, if every part accepts it too.

        The parts judged the string as written; the event's JSON holds the converted
        value's own text (``+00:00`` for ``Z``, lowercase hex digits), which a part may
        refuse (``pattern: "Z$"``, an ``enum`` of one spelling). The string is then kept
        as given, so that validated data validates again.
        """
        for part in self.checks:
            found: Problems = []
            if part.check(out, path, found) is INVALID or found:
                return given
        return out

    def _apply_extra(self, out: dict[Any, Any], path: str, problems: Problems) -> bool:
        """The ``extra_fields`` policy on keys no part declares; False if one is refused."""
        ok = True
        for key in list(out):
            if not self._undeclared(key):
                continue
            if self.extra == "ignore":
                del out[key]
            elif self.extra == "forbid":
                where = key_path(path, key)
                problems.append(
                    ValidationProblem(
                        where, "no such field", describe(out[key]), "unexpected field"
                    )
                )
                ok = False
        return ok


def _kept_of(value: Mapping[Any, Any], out: Mapping[Any, Any]) -> Mapping[Any, Any]:
    """``value`` as its object node keeps it: the keys of ``out``, with their values given.

    With ``extra_fields="ignore"`` an object node drops the keys it does not declare, and
    it fills in the defaults of absent properties. The keywords beside it
    (``maxProperties``, ``not``, a ``oneOf`` branch, ...) judge the object so too, as
    validating the result again will: a key that is not kept must not decide whether
    the data is valid, nor may a default make the result invalid.
    """
    if len(out) == len(value) and all(key in out for key in value):
        return value
    kept = {key: item for key, item in value.items() if key in out}
    kept.update((key, item) for key, item in out.items() if key not in value)  # defaults
    return kept


class ArrayNode(Node):
    """``prefixItems`` (2020-12): positional schemas, then ``items`` for the rest.

    ``rest`` None means ``items: false`` (no items past the prefix).
    """

    def __init__(
        self,
        prefix: Sequence[Node],
        rest: Node | None,
        *,
        min_length: int | None = None,
        max_length: int | None = None,
        unique: Unique = None,
    ) -> None:
        self.prefix, self.rest = tuple(prefix), rest
        self.min_length, self.max_length, self.unique = min_length, max_length, unique
        self.expected = f"array ({', '.join(n.expected for n in self.prefix)}"
        self.expected += ")" if rest is None else f", then {rest.expected})"

    def children(self) -> Sequence[Node]:
        return self.prefix if self.rest is None else (*self.prefix, self.rest)

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if not isinstance(value, list | tuple):
            return self.fail(value, path, problems)
        wrong = length_problem(value, self.min_length, self.max_length)
        if wrong is None and self.rest is None and len(value) > len(self.prefix):
            wrong = f"must have at most {len(self.prefix)} items"
        if wrong is not None:
            return self.fail(value, path, problems, wrong)
        rest = () if self.rest is None else repeat(self.rest)
        return checked_items(self, value, chain(self.prefix, rest), path, problems, self.unique)


def json_type(value: Any) -> str | None:
    """The JSON type family of ``value``: string, number, array, object (None: another).

    A converted value the event's JSON writes as a string (a datetime, a UUID) is one.
    """
    cls = value.__class__
    if cls is bool:
        return None
    if isinstance(value, str) or isinstance(value, TEXT_ATOMS):
        return "string"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return None


_ARTICLES = {"string": "a string", "number": "a number", "array": "an array", "object": "an object"}


class ByTypeNode(Node):
    """Keywords of a type without ``type`` (2020-12): they apply to values of that type.

    ``nodes`` maps a type family (see :func:`json_type`) to the node of its keywords;
    a value of another family is accepted as any JSON value.
    """

    def __init__(self, nodes: Mapping[str, Node]) -> None:
        self.nodes = dict(nodes)
        self.other = AnyNode()
        self.expected = ", ".join(
            f"{node.expected} if {_ARTICLES[family]}" for family, node in self.nodes.items()
        )

    def children(self) -> Sequence[Node]:
        return (*self.nodes.values(), self.other)

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        node = self.nodes.get(json_type(value) or "", self.other)
        return node.check(value, path, problems)


class NeverNode(Node):
    """The schema ``false``: no value is valid."""

    expected = "nothing (the schema false)"

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        return self.fail(value, path, problems, "no value is valid here")


class PropertyCountNode(Node):
    """``minProperties``/``maxProperties`` on an object (other values pass)."""

    def __init__(self, least: int | None, most: int | None) -> None:
        self.least, self.most = least, most
        bounds = [] if least is None else [f">= {least}"]
        bounds += [] if most is None else [f"<= {most}"]
        self.expected = f"object with {' and '.join(bounds)} properties"

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if not isinstance(value, Mapping):
            return value
        if self.least is not None and len(value) < self.least:
            return self.fail(value, path, problems, f"must have at least {self.least} properties")
        if self.most is not None and len(value) > self.most:
            return self.fail(value, path, problems, f"must have at most {self.most} properties")
        return value


class DependentRequiredNode(Node):
    """``dependentRequired``: when a key is present, the keys it lists must be too."""

    def __init__(self, dependencies: Mapping[str, Sequence[str]]) -> None:
        self.dependencies = {key: tuple(names) for key, names in dependencies.items()}
        self.expected = "object with " + "; ".join(
            f"{', '.join(names)} when {key!r} is present"
            for key, names in self.dependencies.items()
        )

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if not isinstance(value, Mapping):
            return value
        ok = True
        for key, names in self.dependencies.items():
            if key not in value:
                continue
            for name in names:
                if name not in value:
                    problems.append(
                        ValidationProblem(
                            join_path(path, name),
                            f"present when {key!r} is",
                            "missing",
                            f"field required by {key!r}",
                        )
                    )
                    ok = False
        return value if ok else INVALID


#: RFC 3339 ``full-time`` (``format: date-time`` uses the same rule after its ``T``)
_FULL_TIME = re.compile(FULL_TIME)
_LAST_MINUTE = 23 * 60 + 59


class TimeTextNode(Node):
    """JSON Schema ``format: time``: an RFC 3339 ``full-time``, offset required.

    The value stays a string: Python's ``time`` cannot hold a leap second, and the
    event's JSON encoder refuses a ``time`` with an offset. A leap second (``:60``) is
    valid only at 23:59 UTC, as in RFC 3339.
    """

    expected = "RFC 3339 time with an offset (HH:MM:SS[.frac], then Z or +HH:MM)"

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if not isinstance(value, str):
            return self.fail(value, path, problems)
        match = _FULL_TIME.fullmatch(value)
        if match is None:
            return self.fail(value, path, problems, "not an RFC 3339 time with an offset")
        hour, minute, second, _, sign, offset_hour, offset_minute = match.groups()
        if second == "60":
            utc = int(hour) * 60 + int(minute)
            if sign is not None:
                offset = int(offset_hour) * 60 + int(offset_minute)
                utc -= offset if sign == "+" else -offset
            if utc % (24 * 60) != _LAST_MINUTE:
                return self.fail(value, path, problems, "a leap second is only valid at 23:59 UTC")
        return value
