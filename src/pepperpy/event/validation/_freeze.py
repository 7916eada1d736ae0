"""Freezing validated output for an Event, guided by the schema.

``Event`` deep-freezes its data; for data the validator has just produced, the schema
already tells which fields are containers and which are numbers that could be NaN, so a
compiled freezer copies each object once (in C) and only revisits those fields. Data
whose shape the schema does not pin down (``Any``, unions of containers, recursive
types) goes through the generic walk.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .._errors import SerializationError
from .._frozen import FrozenDict, FrozenList, freeze
from ._json_applicators import ContainsNode, PropertyNamesNode
from ._json_nodes import ArrayNode, TimeTextNode
from ._nodes import (
    AnyNode,
    BoolNode,
    DecimalNode,
    DictNode,
    EnumNode,
    LazyNode,
    ListNode,
    LiteralNode,
    Node,
    NoneNode,
    NumberNode,
    ObjectNode,
    StrNode,
    TemporalNode,
    TupleNode,
    UnionNode,
    UUIDNode,
)

__all__ = ["compile_freezer", "freeze_output", "nested_deeper", "schema_depth", "stack_room"]

Freezer = Callable[[Any], Any]

_isfinite = math.isfinite
_set_item = dict.__setitem__
#: values that need no check to be frozen JSON data (floats do: NaN and infinities)
_SAFE_ATOMS = frozenset({str, int, bool, type(None), dt.datetime, dt.date, dt.time, uuid.UUID})


def freeze_output(value: Any) -> Any:
    """Deep-freeze plain converted data (dicts, lists and atoms), checking numbers."""
    cls = value.__class__
    if cls is dict:
        out = FrozenDict()
        for key, item in value.items():
            if item.__class__ not in _SAFE_ATOMS:
                item = freeze_output(item)
            _set_item(out, key, item)
        return out
    if cls is list:
        return FrozenList(
            [item if item.__class__ in _SAFE_ATOMS else freeze_output(item) for item in value]
        )
    if cls in _SAFE_ATOMS:
        return value
    if cls is float:
        return _finite(value)
    if cls is decimal.Decimal:
        return _finite_decimal(value)
    return freeze(value)


def _finite(value: Any) -> Any:
    if value.__class__ is float and not _isfinite(value):
        raise SerializationError(f"{value!r} is not a finite number; JSON cannot hold it")
    return value


def _finite_decimal(value: Any) -> Any:
    if isinstance(value, decimal.Decimal) and not value.is_finite():
        raise SerializationError(f"Decimal {value} is not a finite number")
    return value


def compile_freezer(node: Node) -> Freezer:
    """A function freezing data that ``node`` produced."""
    special = _freezer(node)
    if special is None:
        return freeze_output  # atoms at the top: nothing to gain
    return special


def _freezer(node: Node) -> Freezer | None:
    """None when values of ``node`` are immutable atoms needing no check."""
    if isinstance(node, StrNode | BoolNode | NoneNode | TemporalNode | UUIDNode | TimeTextNode):
        return None
    if isinstance(node, EnumNode | LiteralNode):
        values = [m.value for m in node.cls] if isinstance(node, EnumNode) else list(node.values)
        return None if all(v.__class__ in _SAFE_ATOMS for v in values) else freeze_output
    if isinstance(node, NumberNode):
        return None if node.kind == "int" else _finite
    if isinstance(node, DecimalNode):
        return _finite_decimal
    if isinstance(node, UnionNode):
        parts = [_freezer(option) for option in node.options]
        return None if all(p is None for p in parts) else freeze_output
    if isinstance(node, ListNode):
        return _list_freezer(_freezer(node.item))
    if isinstance(node, DictNode):
        return _dict_freezer(_freezer(node.value))
    if isinstance(node, ObjectNode) and node.extra != "allow" and not node.patterns:
        return _object_freezer(node)
    return freeze_output


def _list_freezer(item: Freezer | None) -> Freezer:
    if item is None:
        return FrozenList

    def freeze_list(value: Any) -> Any:
        return FrozenList([item(x) for x in value])

    return freeze_list


def _dict_freezer(item: Freezer | None) -> Freezer:
    if item is None:
        return FrozenDict

    def freeze_dict(value: Any) -> Any:
        return FrozenDict({key: item(x) for key, x in value.items()})

    return freeze_dict


def _object_freezer(node: ObjectNode) -> Freezer:
    special: list[tuple[str, Freezer]] = []
    for name, field in node.fields.items():
        fix = _freezer(field.node)
        if fix is not None:
            special.append((name, fix))
    if not special:
        return FrozenDict

    def freeze_object(value: Any) -> Any:
        out = FrozenDict(value)
        for name, fix in special:
            if name in value:
                _set_item(out, name, fix(value[name]))
        return out

    return freeze_object


def schema_depth(node: Node) -> int | None:
    """How many lists and objects a value of ``node`` can nest at most (None: no bound).

    ``Any`` values, kept extra fields and recursive schemas have no bound (nor, to be
    safe, do nodes that judge items or keys): their output is measured
    (:func:`nested_deeper`) before it becomes event data.
    """
    return _Depths().of(node)


class _Depths:
    def __init__(self) -> None:
        self.open: set[int] = set()
        self.known: dict[int, int | None] = {}

    def of(self, node: Node) -> int | None:
        if isinstance(node, _UNBOUNDED) or id(node) in self.open:
            return None
        if id(node) not in self.known:
            self.open.add(id(node))
            try:
                self.known[id(node)] = self.measured(node)
            finally:
                self.open.discard(id(node))
        return self.known[id(node)]

    def measured(self, node: Node) -> int | None:
        if isinstance(node, ObjectNode):
            if node.extra == "allow" and node.extra_node is None:
                return None
            inner = [f.node for f in node.fields.values()]
            inner += [sub for _, sub in node.patterns]
            inner += [] if node.extra_node is None else [node.extra_node]
            return self.deepest(inner, 1)
        if isinstance(node, ListNode):
            return self.deepest([node.item], 1)
        if isinstance(node, DictNode):
            return self.deepest([node.value], 1)
        if isinstance(node, TupleNode):
            return self.deepest(node.items, 1)
        if isinstance(node, ArrayNode):
            return self.deepest(node.children(), 1)
        if isinstance(node, UnionNode):
            return self.deepest(node.options, 0)
        if isinstance(node, LiteralNode):
            return max(_nesting(value) for value in node.values)
        return self.deepest(node.children(), 0)

    def deepest(self, nodes: Sequence[Node], own: int) -> int | None:
        depths = [self.of(n) for n in nodes]
        if any(d is None for d in depths):
            return None
        return own + max((d for d in depths if d is not None), default=0)


#: nodes whose output depth the schema does not bound (or that judge parts of a value)
_UNBOUNDED = (AnyNode, LazyNode, ContainsNode, PropertyNamesNode)


def _nesting(value: Any) -> int:
    """How many lists and objects ``value`` nests (a literal, so small)."""
    if isinstance(value, dict):
        return 1 + max((_nesting(v) for v in value.values()), default=0)
    if isinstance(value, list | tuple):
        return 1 + max((_nesting(v) for v in value), default=0)
    return 0


def nested_deeper(value: Any, limit: int) -> bool:
    """True when ``value`` nests more than ``limit`` lists and objects (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


#: Python frames the walk (and the freezer, and a failed option's description) may take per
#: level of lists and objects, with room to spare: a list in a ``$ref``'d ``anyOf`` takes
#: about four (``LazyNode``, the union, the array, its items)
FRAMES_PER_LEVEL = 64

_room_lock = threading.Lock()
_room_users = 0
_room_saved = 0


@contextmanager
def stack_room(levels: int) -> Iterator[None]:
    """Enough recursion limit, above the caller's frames, to walk ``levels`` nested levels.

    Python's limit (1000 frames by default) counts the caller's frames too, so a recursive
    schema's walk over data an Event holds (253 levels) could run out of it, and sooner the
    deeper the caller. The limit is process-wide: it is raised for as long as any thread
    is inside, then put back. The data must have been measured first (:func:`nested_deeper`):
    the raised limit must not let C code (``repr``) recurse through unbounded data.
    """
    global _room_users, _room_saved
    frame = sys._getframe()
    depth = 0
    while frame is not None:
        depth += 1
        frame = frame.f_back  # type: ignore[assignment]
    needed = depth + levels * FRAMES_PER_LEVEL + 200
    with _room_lock:
        if _room_users == 0:
            _room_saved = sys.getrecursionlimit()
        _room_users += 1
        if sys.getrecursionlimit() < needed:
            sys.setrecursionlimit(needed)
    try:
        yield
    finally:
        with _room_lock:
            _room_users -= 1
            if _room_users == 0:
                sys.setrecursionlimit(_room_saved)
