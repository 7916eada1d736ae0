"""Copies of nested dicts and lists at any depth of the caller's stack.

:func:`copy_nested` keeps its own stack (freezing or thawing what a recursive copy
could not reach from a deep caller); :func:`thaw` gives a mutable deep copy of frozen
data.
"""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from ._errors import SerializationError
from ._frozen_types import FrozenDict, FrozenList

__all__ = ["COPY_DEPTH", "copy_nested", "thaw"]


def thaw(value: Any) -> Any:
    """Return a mutable deep copy of frozen ``value`` (plain dicts and lists)."""
    try:
        return _thaw(value)
    except RecursionError:  # a caller deep in its stack: the same copy (see freeze_parsed)
        return copy_nested(value, frozen=False)


def _thaw(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_thaw(item) for item in value]
    return value


_DONE: Any = object()
#: what :func:`copy_nested` shares without a second look: JSON's scalars, freeze()'s atoms
_LEAVES = frozenset({str, int, float, bool, type(None), datetime, date, time, UUID, bytes, Decimal})
_CONTAINERS = (dict, list)
#: deeper than anything acyclic the library holds or reads (orjson reads 1,024 levels)
COPY_DEPTH = 10_000


def copy_nested(
    value: Any,
    *,
    frozen: bool,
    keep: frozenset[type] = frozenset(),
    what: str = "data",
    deepest: int = COPY_DEPTH,
) -> Any:
    """``value`` with each dict and list in it, however deep, copied into a new one: a
    :class:`FrozenDict` or :class:`FrozenList` if ``frozen``, else a plain one. Other
    values, and containers of a type in ``keep``, are shared.

    The walk keeps its own stack, as in :func:`freeze`, so it works at any depth of the
    caller's stack. Data nested more than ``deepest`` levels deep (:data:`COPY_DEPTH`,
    which only a reference cycle makes), raises :class:`SerializationError` (``what``
    names it).
    """
    out: Any = []  # a box for the copy of ``value``, walked as its only item
    items: Any = iter((value,))
    keyed = False
    #: the containers around ``out``, each with the rest of its items and the key of the
    #: one being copied
    stack: list[tuple[Any, Any, bool, Any]] = []
    key: Any = None
    while True:
        if keyed:
            for key, item in items:
                cls = item.__class__
                if cls in _LEAVES or (
                    cls is not dict
                    and cls is not list
                    and (cls in keep or not isinstance(item, _CONTAINERS))
                ):
                    out[key] = item
                else:
                    break
            else:
                item = _DONE
        else:
            for item in items:
                cls = item.__class__
                if cls in _LEAVES or (
                    cls is not dict
                    and cls is not list
                    and (cls in keep or not isinstance(item, _CONTAINERS))
                ):
                    out.append(item)
                else:
                    break
            else:
                item = _DONE
        if item is not _DONE:  # copied first, then put in ``out`` (nothing comes between)
            if len(stack) >= deepest:  # (the box is one)
                raise SerializationError(
                    f"{what} contains a reference cycle or is nested more than "
                    f"{deepest} levels deep"
                )
            stack.append((out, items, keyed, key))
            if isinstance(item, dict):
                keyed = True
                items = iter(item.items())
                out = {}
            else:
                keyed = False
                items = iter(item)
                out = []
            continue
        if not stack:  # the box
            return out[0]
        done = out if not frozen else FrozenDict(out) if keyed else FrozenList(out)
        out, items, keyed, key = stack.pop()
        if keyed:
            out[key] = done
        else:
            out.append(done)
