"""Whether a value survives a trip through JSON unchanged (:func:`json_native`).

The CloudEvents writer (:meth:`Event.to_cloudevent`) and the in-memory transport ask it
before deciding whether a value needs converting to its JSON form.
"""

from __future__ import annotations

from typing import Any

from ._frozen import MAX_DEPTH, FrozenDict, FrozenList

__all__ = ["json_native"]

#: values that a JSON round trip gives back as they are
_SCALARS = frozenset({str, int, float, bool, type(None)})


def json_native(value: Any, depth: int = 1) -> bool:
    """True when ``value`` survives a trip through JSON unchanged: no datetime, Decimal,
    UUID, bytes or enum member inside, which JSON carries as strings, no key other than
    a str, no string holding a lone surrogate, which UTF-8 JSON cannot carry at all
    (encoding such a value raises :class:`SerializationError`, as it should), and no
    nesting deeper than event data may have (``depth`` counts the lists and objects
    down to ``value``), which a reference cycle would be.

    A string costs one ``isascii()``; only non-ASCII text is encoded to look. The answer
    is the same whatever the depth of the caller's stack: a look that runs out of it is
    made again, without recursion.
    """
    cls = value.__class__
    if cls is str:
        return value.isascii() or _utf8(value)
    if cls in _SCALARS:
        return True
    if depth > MAX_DEPTH:
        return False
    try:
        if cls is FrozenDict or cls is dict:
            for key, item in value.items():
                if key.__class__ is not str or not (key.isascii() or _utf8(key)):
                    return False
                kind = item.__class__
                if kind is str:
                    if not (item.isascii() or _utf8(item)):
                        return False
                elif kind not in _SCALARS and not json_native(item, depth + 1):
                    return False
            return True
        if cls is FrozenList or cls is list or cls is tuple:
            for item in value:
                kind = item.__class__
                if kind is str:
                    if not (item.isascii() or _utf8(item)):
                        return False
                elif kind not in _SCALARS and not json_native(item, depth + 1):
                    return False
            return True
    except RecursionError:
        if depth > 1:
            raise
        return _json_native_by_levels(value)
    return False


def _json_native_by_levels(value: Any) -> bool:
    """:func:`json_native` for a container, looked into level by level (no recursion)."""
    level: list[Any] = [value]
    below: list[Any] = []  # the values under ``level`` other than JSON's scalars
    depth = 1  # the lists and objects down to ``level``'s
    while True:
        for value in level:
            cls = value.__class__
            # keys, then values: one loop for both kinds of container (the fast
            # json_native looks at a dict's keys and values in one pass instead)
            if cls is FrozenDict or cls is dict:
                for key in value:
                    if key.__class__ is not str or not (key.isascii() or _utf8(key)):
                        return False
                items = value.values()
            elif cls is FrozenList or cls is list or cls is tuple:
                items = value
            else:
                return False
            for item in items:
                kind = item.__class__
                if kind is str:
                    if not (item.isascii() or _utf8(item)):
                        return False
                elif kind not in _SCALARS:
                    below.append(item)
        if not below:
            return True
        if depth == MAX_DEPTH:  # deeper than event data may be (a cycle too)
            return False
        level, below = below, []
        depth += 1


def _utf8(text: str) -> bool:
    """True unless ``text`` holds a lone surrogate (not valid UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
