"""The compiled form of a schema: a tree of nodes that check values and collect problems.

Every schema kind (annotated classes, dataclasses, TypedDicts, msgspec Structs, JSON
Schema) is compiled into these nodes once. A node's ``check`` walks a value, appends a
:class:`~pepperpy.event.ValidationProblem` for *every* mismatch it finds and returns
the converted value (defaults filled in, ISO strings parsed into datetimes). The same
tree produces the msgspec type used for the fast path (``_fast.fast_type``); this
slower walk only runs to explain a failure completely.

The nodes live beside this module: the contract in ``_node_base``, JSON value rules in
``_node_values``, single values in ``_node_scalars``, nodes holding nodes in
``_node_containers``. This module walks a tree and is where the compilers import from.
"""

from __future__ import annotations

from collections.abc import Iterator

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
from ._node_containers import (
    DictNode,
    Field,
    LazyNode,
    ListNode,
    ObjectNode,
    TupleNode,
    UnionNode,
    checked_items,
    length_problem,
)
from ._node_scalars import (
    FULL_TIME,
    AnyNode,
    BoolNode,
    BytesNode,
    DecimalNode,
    EnumNode,
    LiteralNode,
    NoneNode,
    NumberNode,
    StrNode,
    TemporalNode,
    UUIDNode,
)
from ._node_values import (
    INT_MAX,
    INT_MIN,
    TEXT_ATOMS,
    decimal_ratio,
    equality_key,
    is_multiple,
    json_issue,
    json_key,
    json_problem,
    json_text,
    lists,
    lone_surrogate,
    surrogate_issue,
)

__all__ = [
    "FULL_TIME",
    "INT_MAX",
    "INT_MIN",
    "INVALID",
    "MISSING",
    "TEXT_ATOMS",
    "AnyNode",
    "BoolNode",
    "BytesNode",
    "DecimalNode",
    "DictNode",
    "EnumNode",
    "Extra",
    "Field",
    "LazyNode",
    "ListNode",
    "LiteralNode",
    "Node",
    "NoneNode",
    "NumberNode",
    "ObjectNode",
    "Problems",
    "StrNode",
    "TemporalNode",
    "TupleNode",
    "UUIDNode",
    "Unique",
    "UnionNode",
    "checked_items",
    "contains",
    "decimal_ratio",
    "describe",
    "enable_coercion",
    "equality_key",
    "is_multiple",
    "join_path",
    "json_issue",
    "json_key",
    "json_problem",
    "json_text",
    "key_path",
    "length_problem",
    "lists",
    "lone_surrogate",
    "surrogate_issue",
    "walk",
]


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
