"""Nodes that hold other nodes: lists, tuples, dicts, objects with fields, unions, refs.

A container checks every item, key and field it holds, so one walk reports every
problem in a value, each at its own path (a union explains its closest option).
"""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from decimal import Decimal
from itertools import repeat
from typing import Any

from .._errors import ValidationProblem
from ._ecma_regex import compile_ecma
from ._node_base import (
    INVALID,
    MISSING,
    Extra,
    Node,
    Problems,
    Unique,
    describe,
    join_path,
    key_path,
)
from ._node_scalars import AnyNode, NoneNode
from ._node_values import base_scalar, equality_key, json_key, lists, lone_surrogate

__all__ = [
    "DictNode",
    "Field",
    "LazyNode",
    "ListNode",
    "ObjectNode",
    "TupleNode",
    "UnionNode",
    "checked_items",
    "length_problem",
]


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
        #: a Python set's rule: why a converted item is one a set cannot hold (None:
        #: it can), as pydantic refuses it (see ``_hashable``)
        self.unhashable: Callable[[Any], str | None] | None = None

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if not isinstance(value, list | tuple):
            return self.fail(value, path, problems)
        wrong = length_problem(value, self.min_length, self.max_length)
        if wrong is not None:
            return self.fail(value, path, problems, wrong)
        out = checked_items(self, value, repeat(self.item), path, problems, self.unique)
        if self.unhashable is not None and out is not INVALID:
            return self._hashable(out, path, problems)
        return out

    def _hashable(self, out: list[Any], path: str, problems: Problems) -> Any:
        """``out`` (the converted items), or INVALID if a Python set cannot hold one."""
        assert self.unhashable is not None
        expected = f"hashable {self.item.expected}"
        if isinstance(self.item, AnyNode):
            expected = "hashable value (str, number, bool or null)"
        ok = True
        for index, item in enumerate(out):
            why = self.unhashable(item)
            if why is not None:
                problems.append(
                    ValidationProblem(
                        join_path(path, index),
                        expected,
                        describe(item),
                        f"a {self.kind} cannot hold {why}: its items must be hashable",
                    )
                )
                ok = False
        return out if ok else INVALID


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
        converted = node.check(item, join_path(path, index), problems)
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


class TupleNode(Node):
    """A fixed-length sequence with one schema per position."""

    def __init__(self, items: Sequence[Node]) -> None:
        self.items = tuple(items)
        self.expected = f"array of {len(self.items)} items"

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if not isinstance(value, list | tuple) or len(value) != len(self.items):
            return self.fail(value, path, problems)
        out = [
            node.check(item, join_path(path, index), problems)
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
            where = key_path(path, key)
            if key.__class__ is str and not key.isascii() and _bad_key(key, where, problems):
                converted_key = INVALID
            else:
                converted_key = self.key.check(key, where, problems)
            converted = self.value.check(item, where, problems)
            if converted_key is INVALID or converted is INVALID:
                ok = False
            else:
                out[converted_key] = converted
        return out if ok else INVALID


#: types a default keeps as they are (as the fast path's ``to_builtins`` does)
_DEFAULT_KEEP = (dt.datetime, dt.date, dt.time, uuid.UUID, Decimal, bytes)


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
        self.patterns = tuple((compile_ecma(p), node) for p, node in patterns)
        self.expected = f"object {name}" if name else "object"

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if not isinstance(value, Mapping):
            return self.fail(value, path, problems)
        out: dict[str, Any] = {}
        ok = True
        for name, field in self.fields.items():
            if name in value:
                converted = field.node.check(value[name], join_path(path, name), problems)
                if converted is INVALID:
                    ok = False
                else:
                    out[name] = converted
            elif field.required:
                problems.append(
                    ValidationProblem(
                        join_path(path, name), field.node.expected, "missing", "field required"
                    )
                )
                ok = False
            elif field.has_default:
                out[name] = field.fallback()
        for key in value:
            if key in self.fields:
                continue
            where = key_path(path, key)
            if not isinstance(key, str):
                problems.append(
                    ValidationProblem(where, "str key", describe(key), "keys must be str")
                )
                ok = False
            elif self.patterns and (matched := self._matching(key)):
                bad_key = not key.isascii() and _bad_key(key, where, problems)
                converted = _all_of(matched, value[key], where, problems)
                if converted is INVALID or bad_key:
                    ok = False
                else:
                    out[base_scalar(key)] = converted  # a str subclass as a str
            elif self.extra == "forbid":
                problems.append(
                    ValidationProblem(
                        where, "no such field", describe(value[key]), "unexpected field"
                    )
                )
                ok = False
            elif self.extra == "allow":
                bad_key = not key.isascii() and _bad_key(key, where, problems)
                node = self.extra_node or AnyNode()
                converted = node.check(value[key], where, problems)
                if converted is INVALID or bad_key:
                    ok = False
                else:
                    out[base_scalar(key)] = converted  # a str subclass as a str
        return out if ok else INVALID

    def _matching(self, key: str) -> list[Node]:
        """The nodes of the patterns ``key`` matches, each pattern searched once.

        (A backtracking pattern can take long on a hostile key: it is not run twice.)
        """
        return [node for regex, node in self.patterns if regex.search(key)]


def _bad_key(key: str, where: str, problems: Problems) -> bool:
    """True (after recording it) when object key ``key``, at ``where``, holds a lone
    surrogate, which the event's JSON cannot hold."""
    why = lone_surrogate(key)
    if why is None:
        return False
    problems.append(ValidationProblem(where, "str key", describe(key), f"the object key {why}"))
    return True


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
        # each kind once: set[int] | frozenset[int] is no "set of int | set of int"
        self.expected = " | ".join(dict.fromkeys(option.expected for option in self.options))

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        attempts: list[tuple[Node, Problems]] = []
        for index, option in enumerate(self.options):
            found: Problems = []
            converted = option.check(value, path, found)
            if not found and converted is not INVALID:
                if index and converted is not value and isinstance(converted, dict | list):
                    return self._kept_again(value, index, converted, path, problems)
                return converted
            attempts.append((option, found))
        if isinstance(value, Mapping):  # explain against the object-shaped options
            shaped = [found for node, found in attempts if isinstance(node, ObjectNode | DictNode)]
        elif isinstance(value, list | tuple):  # or the array-shaped ones
            shaped = [found for node, found in attempts if isinstance(node, ListNode | TupleNode)]
        else:
            shaped = []
        others = [found for node, found in attempts if not isinstance(node, NoneNode)]
        if value is not None and len(others) == 1 and not _wrong_type(others[0], path):
            shaped = others  # X | None: X explains a bound or pattern it refused
        if shaped and all(found == shaped[0] for found in shaped):  # one, or all alike
            problems.extend(shaped[0])
            return INVALID
        if isinstance(value, str):  # no option takes text that is not Unicode: say so
            surrogate = lone_surrogate(value)
            if surrogate is not None:
                return self.fail(value, path, problems, surrogate)
        return self.fail(value, path, problems)

    def _kept_again(
        self, value: Any, index: int, converted: Any, path: str, problems: Problems
    ) -> Any:
        """``converted`` (option ``index``'s result) if validating it again keeps it.

        An option's result may differ from the value given (keys it ignores dropped,
        defaults filled in, strings converted); an earlier option, which refused the
        value, may take the result and change it (fill in its own defaults, convert a
        string): the data would not validate again unchanged, so it is refused now.
        """
        if converted == value:  # nothing changed: the earlier options refused this
            return converted
        for number, option in enumerate(self.options[:index], 1):
            found: Problems = []
            again = option.check(converted, path, found)
            if found or again is INVALID:
                continue
            if again == converted:
                return converted
            message = (
                f"option {index + 1} ({self.options[index].expected}) takes it, but what "
                f"that keeps ({describe(converted)}) option {number} ({option.expected}) "
                "would take and change when validated again (keys an option ignores are "
                "dropped, defaults filled in)"
            )
            return self.fail(value, path, problems, message)
        return converted


def _wrong_type(problems: Problems, path: str) -> bool:
    """Whether ``problems`` only say the value at ``path`` is of the wrong type (which
    the union says better: it names every type it takes)."""
    return len(problems) == 1 and problems[0].path == path and problems[0].message == "wrong type"


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
