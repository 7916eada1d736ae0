"""How big a value a template handles is, in characters, measured before work is done.

:func:`measure` gives an upper bound on the length of ``str(value)``: exact for a string,
and for lists, tuples, sets, dicts (and their views) and Jinja2 namespaces, the length of
their written-out form (each item as ``repr`` writes it), walked without building it and
given up as soon as it passes the limit asked about. So a list of a million references to
one long string measures a million times that string, though it takes a few megabytes:
that is what writing it out, joining it or comparing it would cost. An object of the
application's (neither a string, a number nor a container) counts as :data:`OBJECT`
characters: its ``repr`` is the application's code.

The other functions bound what one formatting or string method would produce, from its
arguments, without running it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

__all__ = ["OBJECT", "bytes_size", "grows", "measure", "percent_bound"]

#: characters an object of the application's counts for inside a container
OBJECT = 16
#: the written-out frame of bytes (``bytearray(b'...')``); each byte takes at most 4
_BYTES_FRAME = 14

_VIEWS: tuple[type[Any], ...] = (type({}.keys()), type({}.values()), type({}.items()))
_CONTAINERS: tuple[type[Any], ...] = (list, tuple, set, frozenset, dict, *_VIEWS)
#: the written-out form's frame (brackets, a type name) around a container's items
_FRAME: dict[type[Any], int] = {list: 2, tuple: 3, set: 5, frozenset: 13, dict: 2}


def _leaf(value: Any) -> int | None:
    """The written-out size of a value that is not a container, or None for a container."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return _digits(value)
    if isinstance(value, float):
        return 25
    if isinstance(value, bytes | bytearray):
        return bytes_size(len(value))
    if isinstance(value, _CONTAINERS):
        return None
    if type(value).__name__ == "Namespace" and hasattr(value, "_Namespace__attrs"):
        return None
    return OBJECT


def _digits(number: int) -> int:
    """A bound on ``len(str(number))`` (1233 / 4096 is log10(2) within 2e-6)."""
    return (number.bit_length() * 1233 >> 12) + 2 + (number < 0)


#: a non-negative int's size in a container (its digits, a comma and a space) by bit
#: length (checked against ``len(str(2**bits - 1))`` by the tests)
_INT_SIZES = [(bits * 1233 >> 12) + 3 for bits in range(64)]


def _quoted(text: str) -> int:
    """A bound on ``len(repr(text))``: how a string inside a container is written (a
    printable one gets quotes, and a backslash before each backslash and, at worst,
    each quote)."""
    if text.isprintable():
        return len(text) + 2 + text.count("\\") + text.count("'")
    return len(text) * (4 if text.isascii() else 10) + 2


def _children(value: Any) -> tuple[int, Iterable[Any], bool]:
    """A container's frame size, its items, and whether those are (key, value) pairs."""
    if type(value).__name__ == "Namespace" and not isinstance(value, Mapping):
        attrs: dict[Any, Any] = object.__getattribute__(value, "_Namespace__attrs")
        return 13, attrs.items(), True
    if isinstance(value, dict):
        return 2, value.items(), True
    if isinstance(value, _VIEWS):
        return 14, value, False
    return _FRAME.get(type(value), 16), value, False


def measure(value: Any, limit: int, *, indent: Callable[[int, int], int] | None = None) -> int:
    """An upper bound on ``len(str(value))``, or any number over ``limit`` once it is
    known to pass it. ``indent(depth, margin)``, if given, adds that many characters per
    item: a pretty-printer's indentation at that nesting depth, ``margin`` being the
    size of the keys the item is written under.

    A container met again (a list holding one list many times) is counted again from
    what its first walk found, so a deeply shared structure costs one walk per object.
    """
    kind = type(value)
    if kind is str:
        return len(value)
    if kind is int:
        return _digits(value)
    size = _leaf(value)
    if size is not None:
        return size
    frame, items, pairs = _children(value)
    total = frame
    path = {id(value)}
    known: dict[int, int] = {}  # sizes of the containers walked (without indentation)
    # each level: its id, its items, whether they are (key, value) pairs, its margin,
    # and the total when it was entered
    stack: list[tuple[int, Iterator[Any], bool, int, int]] = [(id(value), iter(items), pairs, 0, 0)]
    while stack:
        ident, iterator, pairs, margin, entered = stack[-1]
        for item in iterator:
            if total > limit:
                return total
            total += 2
            inner = margin
            if pairs:
                key, item = item
                key_size = measure(key, limit) + 2
                total += key_size
                inner += key_size
            if indent is not None:
                total += indent(len(stack), inner)
            kind = type(item)
            if kind is str:
                total += _quoted(item)
                continue
            if kind is int:  # lists of numbers are common: _digits, looked up
                bits = item.bit_length()
                if bits < 64:
                    total += _INT_SIZES[bits] if item >= 0 else _INT_SIZES[bits] + 1
                else:
                    total += _digits(item) + 2
                continue
            child = id(item)
            if child in known and indent is None:
                total += known[child]
                continue
            leaf = _leaf(item)
            if leaf is not None:
                total += _quoted(item) if isinstance(item, str) else leaf
                continue
            if child in path:  # a container holding itself: written as [...]
                total += 5
                continue
            frame, children, child_pairs = _children(item)
            path.add(child)
            stack.append((child, iter(children), child_pairs, inner + 1, total))
            total += frame
            break
        else:
            stack.pop()
            path.discard(ident)
            known[ident] = total - entered
    return total


#: one ``%`` conversion: mapping key, flags, width, precision, length modifier, type
_PERCENT = re.compile(r"%(?:\(([^)]*)\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.)", re.S)
#: characters a number may take written by a ``%`` conversion besides its width/precision
_NUMBER = 330


def percent_bound(template: str, values: Any, limit: int) -> int:
    """A bound on ``len(template % values)``; ``*`` widths count as ``limit + 1``."""
    if isinstance(values, Mapping):
        named: Mapping[Any, Any] = values
        positional: list[Any] = []
    else:
        named = {}
        positional = list(values) if isinstance(values, tuple) else [values]
    total = len(template)
    given = iter(positional)
    for match in _PERCENT.finditer(template):
        key, width, precision, kind = match.groups()
        if kind == "%":
            continue
        sizes = [0]
        for part in (width, precision):
            if part == "*":
                sizes.append(limit + 1)
                next(given, None)
            elif part is not None:
                sizes.append(int(part))
        argument = named.get(key) if key is not None else next(given, None)
        if total > limit:
            return total
        total += max(sizes) + measure(argument, limit) + _NUMBER
    return total


def grows(
    name: str,
    text: str | bytes | bytearray,
    args: tuple[Any, ...],
    limit: int,
    kwargs: Mapping[str, Any] | None = None,
) -> int:
    """A bound on the length of ``text.<name>(*args, **kwargs)`` for the str (or bytes)
    methods that can make a string much longer than it was (0 for the others); for bytes,
    in bytes (:func:`bytes_size` gives their written-out size)."""
    kwargs = kwargs or {}
    binary = not isinstance(text, str)
    kind: tuple[type[Any], ...] = (bytes, bytearray) if binary else (str,)
    if name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        if isinstance(old, kind) and isinstance(new, kind):
            count = len(text) + 1 if not old else text.count(old)
            limited = args[2] if len(args) >= 3 else kwargs.get("count")
            if isinstance(limited, int) and limited >= 0:
                count = min(count, limited)
            return len(text) + count * len(new)
    if name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        size = size if isinstance(size, int) else 8
        tabs = text.count(b"\t") if binary else text.count("\t")  # type: ignore[arg-type]
        return len(text) + tabs * max(size, 0)
    if name == "translate" and args and isinstance(args[0], Mapping):
        widest = max((measure(v, limit) for v in args[0].values()), default=1)
        return len(text) * max(widest, 1)
    if name == "join" and args:
        items = args[0]
        if isinstance(items, list | tuple):
            sizes = (len(v) if isinstance(v, kind) else measure(v, limit) for v in items)
            return sum(sizes) + len(text) * max(len(items) - 1, 0)
        return 0
    if name in ("center", "ljust", "rjust", "zfill"):
        widths = [arg for arg in (*args, *kwargs.values()) if isinstance(arg, int)]
        return max([len(text), *widths])
    return 0


def bytes_size(length: int) -> int:
    """The written-out size of ``length`` bytes, as :func:`measure` counts it."""
    return length * 4 + _BYTES_FRAME
