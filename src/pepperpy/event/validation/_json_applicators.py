"""Nodes for JSON Schema keywords that apply subschemas: oneOf, not, if/then/else.

They judge a value by asking other nodes, with problems of their own: ``oneOf`` says
whether no branch or several branches matched (naming them by JSON Pointer), ``not``
names the schema that must not match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._nodes import INVALID, DictNode, Node, ObjectNode, Problems

__all__ = ["OneOfNode"]


def _accepts(node: Node, value: Any, path: str) -> tuple[Any, Problems]:
    """``node``'s converted value (INVALID if it refuses) and the problems it found."""
    found: Problems = []
    converted = node.check(value, path, found)
    return (INVALID if found else converted), found


class OneOfNode(Node):
    """``oneOf``: exactly one branch accepts the value; its converted value is kept.

    ``pointers`` name the branches (``#/oneOf/0``, ...) in the problems.
    """

    def __init__(self, options: Sequence[Node], pointers: Sequence[str]) -> None:
        self.options, self.pointers = tuple(options), tuple(pointers)
        self.expected = "exactly one of " + " | ".join(o.expected for o in self.options)

    def children(self) -> Sequence[Node]:
        return self.options

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        matched: list[tuple[str, Any]] = []
        failed: list[tuple[Node, Problems]] = []
        for pointer, option in zip(self.pointers, self.options, strict=True):
            converted, found = _accepts(option, value, path)
            if converted is INVALID:
                failed.append((option, found))
            else:
                matched.append((pointer, converted))
        if len(matched) == 1:
            return matched[0][1]
        if matched:
            names = ", ".join(pointer for pointer, _ in matched)
            message = f"matches {len(matched)} oneOf branches ({names}); exactly one must match"
            return self.fail(value, path, problems, message)
        if isinstance(value, Mapping):  # explain against the only object-shaped branch
            shaped = [f for f in failed if isinstance(f[0], ObjectNode | DictNode)]
            if len(shaped) == 1:
                problems.extend(shaped[0][1])
                return INVALID
        names = ", ".join(self.pointers)
        return self.fail(value, path, problems, f"matches none of the oneOf branches ({names})")
