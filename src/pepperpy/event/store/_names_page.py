"""Pages of stream names in code-point order: what ``StoreBackend.stream_names_page``
returns, computed over a sorted list (the contract's default) or bounded by a prefix.

Every backend orders names by code point (Python's ``str`` order, which is also UTF-8
byte order: SQLite's ``BINARY`` collation, ``COLLATE "C"`` on PostgreSQL), so a page's
last name is the next page's cursor on any of them.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

__all__ = ["in_prefix", "names_page", "prefix_bounds"]


def prefix_bounds(prefix: str) -> tuple[str, str]:
    """The half-open range ``[low, high)`` of the names equal to ``prefix`` or starting
    with ``prefix + "."``, in code-point order, with names between them (``prefix-x``,
    which sorts after ``prefix`` and before ``prefix.``) still to be left out: a name in
    range is one of them when it is ``prefix`` or at least ``prefix + "."``."""
    return prefix, prefix + "/"  # "/" is the code point after "."


def in_prefix(name: str, prefix: str | None) -> bool:
    """True when ``name`` is ``prefix`` or starts with ``prefix + "."`` (None: any)."""
    return prefix is None or name == prefix or name.startswith(prefix + ".")


def names_page(
    names: Sequence[str], after: str | None, limit: int, prefix: str | None
) -> list[str]:
    """:meth:`StoreBackend.stream_names_page` over ``names``, sorted."""
    start = 0 if after is None else bisect.bisect_right(names, after)
    if prefix is not None:
        low, high = prefix_bounds(prefix)
        start = max(start, bisect.bisect_left(names, low))
        end = bisect.bisect_left(names, high, lo=start)
    else:
        end = len(names)
    page: list[str] = []
    for index in range(start, end):
        if len(page) >= limit:
            break
        if in_prefix(names[index], prefix):
            page.append(names[index])
    return page
