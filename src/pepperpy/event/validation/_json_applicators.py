"""Nodes for JSON Schema keywords that apply subschemas: oneOf, not, if/then/else,
contains and propertyNames.

They judge a value by asking other nodes, with problems of their own: ``oneOf`` says
whether no branch or several branches matched (naming them by JSON Pointer), ``not``
names the schema that must not match. Except ``oneOf``, they pass values of a type they
do not apply to (``contains`` a non-array) as they are: beside the type keywords in an
:class:`~._json_nodes.AllNode`, they only judge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import ValidationProblem
from ._nodes import (
    INVALID,
    TEXT_ATOMS,
    DictNode,
    Node,
    ObjectNode,
    Problems,
    describe,
    join_path,
)

__all__ = ["ContainsNode", "IfNode", "NotNode", "OneOfNode", "PropertyNamesNode"]


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
            pointer, converted = matched[0]
            if isinstance(converted, TEXT_ATOMS) and isinstance(value, str):
                return self._converted_or_given(value, converted, path)
            if converted is not value and isinstance(converted, dict | list):
                return self._kept_alone(value, pointer, converted, path, problems)
            return converted
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

    def _kept_alone(
        self, value: Any, pointer: str, converted: Any, path: str, problems: Problems
    ) -> Any:
        """``converted`` (the only matching branch's result) if no other branch takes it.

        A branch's result may differ from the value given: keys its objects ignore
        (``extra_fields="ignore"``) are dropped, defaults filled in, strings converted.
        Another branch may accept what is left (a key only it declares, of the wrong
        type, was what refused it): the data, validated again, would match two
        branches, so it is refused now.
        """
        if converted == value:  # nothing changed: the other branches refused this
            return converted
        others = [
            at
            for at, option in zip(self.pointers, self.options, strict=True)
            if at != pointer and _accepts(option, converted, path)[0] is not INVALID
        ]
        if not others:
            return converted
        message = (
            f"matches {pointer} only, but what it keeps ({describe(converted)}) also matches "
            f"{', '.join(others)}: validated again it would match several oneOf branches "
            "(keys a branch ignores are dropped, defaults filled in)"
        )
        return self.fail(value, path, problems, message)

    def _converted_or_given(self, given: str, converted: Any, path: str) -> Any:
        """``converted`` (a ``format`` converted the string) if no other branch takes it.

        The event's JSON holds the converted value's text (``+00:00`` for ``Z``); were it
        to match a second branch, the data would fail when validated again: the string is
        then kept as given.
        """
        taken = sum(_accepts(option, converted, path)[0] is not INVALID for option in self.options)
        return converted if taken == 1 else given


class NotNode(Node):
    """``not``: the value is valid when the schema at ``pointer`` refuses it."""

    def __init__(self, node: Node, pointer: str) -> None:
        self.node, self.pointer = node, pointer
        self.expected = f"not {node.expected}"

    def children(self) -> Sequence[Node]:
        return (self.node,)

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if _accepts(self.node, value, path)[0] is INVALID:
            return value
        return self.fail(value, path, problems, f"must not match the schema at {self.pointer}")


class IfNode(Node):
    """``if``/``then``/``else``: ``then`` applies when ``if`` accepts, ``else`` otherwise.

    A missing ``then`` or ``else`` accepts; ``if`` itself never adds a problem.
    """

    def __init__(self, condition: Node, then: Node | None, otherwise: Node | None) -> None:
        self.condition, self.then, self.otherwise = condition, then, otherwise
        self.expected = f"if {condition.expected}: {then.expected if then else 'any value'}"
        if otherwise is not None:
            self.expected += f", else {otherwise.expected}"

    def children(self) -> Sequence[Node]:
        return tuple(n for n in (self.condition, self.then, self.otherwise) if n is not None)

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        matched = _accepts(self.condition, value, path)[0] is not INVALID
        branch = self.then if matched else self.otherwise
        return value if branch is None else branch.check(value, path, problems)


class ContainsNode(Node):
    """``contains`` with ``minContains``/``maxContains``: how many items must match."""

    def __init__(
        self, node: Node, pointer: str, *, least: int = 1, most: int | None = None
    ) -> None:
        self.node, self.pointer, self.least, self.most = node, pointer, least, most
        bounds = f"at least {least}" + ("" if most is None else f" and at most {most}")
        self.expected = f"array with {bounds} items of {node.expected}"

    def children(self) -> Sequence[Node]:
        return (self.node,)

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if not isinstance(value, list | tuple):
            return value
        count = sum(
            _accepts(self.node, item, join_path(path, index))[0] is not INVALID
            for index, item in enumerate(value)
        )
        if count < self.least or (self.most is not None and count > self.most):
            message = f"{count} items match the schema at {self.pointer}"
            return self.fail(value, path, problems, message)
        return value


class PropertyNamesNode(Node):
    """``propertyNames``: every key of an object, as a string, matches the schema."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.expected = f"object with keys of {node.expected}"

    def children(self) -> Sequence[Node]:
        return (self.node,)

    def check(self, value: Any, path: str, problems: Problems) -> Any:
        if not isinstance(value, Mapping):
            return value
        ok = True
        for key in value:
            if not isinstance(key, str):
                continue  # refused as a key by the node of the object itself
            where = join_path(path, key)
            found: Problems = []
            if self.node.check(key, where, found) is INVALID or found:
                ok = False
                why = [(p.expected, p.message) for p in found] or [(self.node.expected, "refused")]
                for expected, message in why:
                    problems.append(
                        ValidationProblem(
                            where, expected, f"key {key!r}", f"property name {message}"
                        )
                    )
        return value if ok else INVALID
