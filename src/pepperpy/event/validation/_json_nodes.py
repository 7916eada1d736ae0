"""Nodes only JSON Schema needs: keywords combined by AND, and 2020-12 arrays.

In a JSON Schema object every keyword applies: ``{"type": "string", "enum": [...],
"minLength": 2}`` needs all three. :class:`AllNode` checks a value against the node made
of the type keywords and against each of ``enum``/``const``/``$ref``/``anyOf``.
:class:`ArrayNode` is ``prefixItems`` with its 2020-12 meaning: the first items are
checked position by position, the array may be shorter, and further items are checked by
``items`` (or refused when ``items`` is false).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain, repeat
from typing import Any

from ._nodes import INVALID, Node, Problems, checked_items, length_problem

__all__ = ["AllNode", "ArrayNode"]


class AllNode(Node):
    """A value every part accepts; the first part (``main``) gives the converted value.

    The other parts only judge. ``merge_keys`` are object keys that ``main`` declares as
    placeholders and a later part declares for real: their value is taken from that
    part's output (so ``format: date-time`` in an ``anyOf`` branch still converts).
    """

    def __init__(
        self, main: Node, checks: Sequence[Node], merge_keys: frozenset[str] = frozenset()
    ) -> None:
        self.main, self.checks, self.merge_keys = main, tuple(checks), merge_keys

    @property
    def expected(self) -> str:  # type: ignore[override]
        return " and ".join(part.expected for part in (self.main, *self.checks))

    def children(self) -> Sequence[Node]:
        return (self.main, *self.checks)

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        found: Problems = []
        out = self.main.check(value, path, found)
        if found or out is INVALID:
            problems.extend(found)  # the type is wrong: the other parts add nothing
            return INVALID
        ok = True
        for part in self.checks:
            converted = part.check(value, path, problems)
            if converted is INVALID:
                ok = False
            elif self.merge_keys and isinstance(out, dict) and isinstance(converted, Mapping):
                for key in self.merge_keys & converted.keys():
                    out[key] = converted[key]
        return out if ok else INVALID


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
        unique: bool = False,
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
