"""Equality, repr and pickling of nested event data with stacks of their own.

Python's own ``==``, ``repr()``, ``pickle`` and ``copy.deepcopy`` walk nested dicts and
lists by recursion, counted against the recursion limit together with the caller's
frames: data 253 levels deep (as much as an event may hold) fails in them with
``RecursionError`` from a caller a few hundred frames deep. The walks here keep the
containers they are in on lists, so their answer depends on the data alone.
"""

from __future__ import annotations

from typing import Any

from ._errors import SerializationError
from ._frozen import COPY_DEPTH, FrozenDict, FrozenList

__all__ = ["flatten", "nested_equal", "nested_repr", "unflatten"]

#: the containers :func:`flatten` takes apart, by the code of their kind (the rest of a
#: shape code is the container's length)
_KINDS: tuple[type, ...] = (list, dict, FrozenList, FrozenDict)
_KIND = {kind: code for code, kind in enumerate(_KINDS)}


def nested_equal(left: Any, right: Any) -> bool:
    """``left == right`` for dicts, lists and the scalars in them, walked without recursion.

    Dicts are equal with the same keys and equal values, lists with equal items in the
    same order, as Python's ``==`` has it (a dict is never equal to a list); values that
    are neither are compared with ``==``.
    """
    pairs: list[tuple[Any, Any]] = [(left, right)]
    while pairs:
        left, right = pairs.pop()
        if left is right:
            continue
        if isinstance(left, dict):
            if not isinstance(right, dict) or len(left) != len(right):
                return False
            for key, item in left.items():
                if key not in right:
                    return False
                pairs.append((item, right[key]))
        elif isinstance(left, list):
            if not isinstance(right, list) or len(left) != len(right):
                return False
            pairs.extend(zip(left, right, strict=True))
        elif isinstance(right, dict | list) or not left == right:
            return False
    return True


def nested_repr(value: Any) -> str:
    """``repr(value)`` for dicts and lists holding scalars, built without recursion.

    The same text as ``repr()``: ``{'a': [1, 2]}``; values other than dicts and lists
    are given by their own ``repr()``.
    """
    parts: list[str] = []
    #: the containers open around the item being written: the rest of their items,
    #: whether they are dicts, and the index in ``parts`` of their opening bracket
    stack: list[tuple[Any, bool, int]] = []
    item: Any = value
    while True:
        if isinstance(item, dict):
            if item:
                stack.append((iter(item.items()), True, len(parts)))
                parts.append("{")
            else:
                parts.append("{}")
        elif isinstance(item, list):
            if item:
                stack.append((iter(item), False, len(parts)))
                parts.append("[")
            else:
                parts.append("[]")
        else:
            parts.append(repr(item))
        while stack:  # on to the next item, closing the containers that have none left
            items, keyed, opened = stack[-1]
            step = next(items, _END)
            if step is not _END:
                if len(parts) - 1 != opened:
                    parts.append(", ")
                if keyed:
                    parts.append(f"{step[0]!r}: ")
                    item = step[1]
                else:
                    item = step
                break
            stack.pop()
            parts.append("}" if keyed else "]")
        else:
            return "".join(parts)


_END: Any = object()


def flatten(value: Any, what: str) -> tuple[list[int], list[Any]]:
    """``value``'s dicts and lists taken apart: ``(shape, leaves)``, two flat lists that
    pickle and deep-copy without recursion, and :func:`unflatten` puts back together.

    ``leaves`` holds every value other than a dict or list (and every key), in order;
    ``shape`` tells how they nest: ``-n`` for the next ``n`` leaves, ``4 * n + kind`` for
    a container of the last ``n`` items (key and value pairs for a dict) of its ``kind``
    (list, dict, FrozenList, FrozenDict; a subclass of any other is a leaf). A
    container held twice becomes two; a reference cycle, or nesting more than
    :data:`COPY_DEPTH` deep, raises :class:`SerializationError` naming ``what``.
    """
    shape: list[int] = []
    leaves: list[Any] = []
    kind = _KIND.get(value.__class__)
    if kind is None:
        return [-1], [value]
    #: the containers open around the items being taken: their code and rest of items
    stack: list[tuple[int, Any]] = []
    code, items = _open(value, kind)
    run = 0  # leaves taken since the last code written
    while True:
        for item in items:
            if code & 1:  # a dict's (key, value)
                leaves.append(item[0])
                run += 1
                item = item[1]
            kind = _KIND.get(item.__class__)
            if kind is None:
                leaves.append(item)
                run += 1
                continue
            if len(stack) >= COPY_DEPTH:
                raise SerializationError(
                    f"{what} contains a reference cycle or is nested more than "
                    f"{COPY_DEPTH} levels deep"
                )
            stack.append((code, items))
            code, items = _open(item, kind)
            break
        else:  # the container is complete
            if run:
                shape.append(-run)
                run = 0
            shape.append(code)
            if not stack:
                return shape, leaves
            code, items = stack.pop()


def _open(container: Any, kind: int) -> tuple[int, Any]:
    """A container's shape code, and an iterator over its items."""
    items = iter(container.items()) if kind & 1 else iter(container)
    return 4 * len(container) + kind, items


def unflatten(shape: list[int], leaves: list[Any]) -> Any:
    """The value :func:`flatten` took apart into ``shape`` and ``leaves``."""
    stack: list[Any] = []
    taken = 0
    for code in shape:
        if code < 0:
            stack.extend(leaves[taken : taken - code])
            taken -= code
            continue
        size, kind = divmod(code, 4)
        start = len(stack) - (size << (kind & 1))
        if start < 0:
            raise ValueError("a pickled event's data is damaged")
        items = stack[start:]
        del stack[start:]
        if kind & 1:
            pairs = iter(items)
            stack.append((FrozenDict if kind == 3 else dict)(zip(pairs, pairs, strict=True)))
        else:
            stack.append(FrozenList(items) if kind == 2 else items)
    if len(stack) != 1 or taken != len(leaves):
        raise ValueError("a pickled event's data is damaged")
    return stack[0]
