"""Filtered reads of the SQLite log through type_index and category_index.

A read of some types (``types="order.*"``) or stream categories (``streams="order.*"``)
gets a prefix per pattern (:meth:`~._reader.RowFilter.index_keys`): ``order`` stands
for ``order`` itself and every name under ``order.``. Inside one read transaction (one
snapshot of the log and its indexes) the page's global positions are gathered from the
indexes, one ordered range per key, each stopping at ``limit``, plus a scan of the
unindexed tail (see "SQLite: the indexes are written in bulk" in ``docs/store.md``);
then those rows are read. The cost follows the rows found, not the log.

For types, a prefix's names are listed first, a few index seeks each (a skip scan of
type_index), so that each type is one ordered range; with more than
:data:`MAX_TYPE_KEYS` of them the prefix is read as one range, sorted. For streams, the
key is the category (the name's first token) and a longer prefix is narrowed on the
stream name that category_index carries, inside the index.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from .._sqlite import roll_back
from ._sqlite_schema import COLUMNS, HEAD, TAIL_START
from .base import LogPage, log_page

__all__ = ["MAX_TYPE_KEYS", "read_matching"]

#: most type names a read looks up one by one; past them a prefix is one sorted range
MAX_TYPE_KEYS = 64

_TYPE_PAGE = (
    "SELECT global_position FROM type_index WHERE type = ? AND global_position >= ? "
    "ORDER BY global_position LIMIT ?"
)
_TYPE_RANGE_PAGE = (
    "SELECT global_position FROM type_index WHERE type >= ? AND type < ? "
    "AND global_position >= ? ORDER BY global_position LIMIT ?"
)
_NEXT_TYPE = "SELECT min(type) FROM type_index WHERE type > ? AND type < ?"
_CATEGORY_PAGE = (
    "SELECT global_position FROM category_index WHERE category = ? AND global_position >= ? "
    "AND (stream = ? OR (stream >= ? AND stream < ?)) ORDER BY global_position LIMIT ?"
)
_ROWS = (
    f"SELECT {', '.join('e.' + name for name in COLUMNS.split(', '))}, "
    "e.position >= s.first_visible FROM events e JOIN streams s ON s.name = e.stream "
    "WHERE e.global_position IN (SELECT value FROM json_each(?)) ORDER BY e.global_position"
)


def _tail_page(column: str, count: int) -> str:
    """The tail's rows whose ``column`` has one of ``count`` prefixes (a scan of the
    tail, which holds fewer than ``INDEX_EVERY`` events while the writer keeps up)."""
    match = " OR ".join([f"{column} = ? OR ({column} >= ? AND {column} < ?)"] * count)
    return (
        "SELECT global_position FROM events "
        f"WHERE global_position >= max(?, {TAIL_START}) AND ({match}) "
        "ORDER BY global_position LIMIT ?"
    )


def _bounds(prefix: str) -> tuple[str, str, str]:
    """``prefix`` itself, and the range of the names under it (``/`` follows ``.``)."""
    return prefix, prefix + ".", prefix + "/"


def _type_positions(
    connection: sqlite3.Connection, start: int, limit: int, prefixes: tuple[str, ...]
) -> list[int]:
    """The first ``limit`` indexed positions from ``start`` whose type has a prefix."""
    names: set[str] = set(prefixes)
    ranges: list[tuple[str, str]] = []
    for prefix in prefixes:
        _, low, high = _bounds(prefix)
        found: list[str] = []
        (name,) = connection.execute(
            "SELECT min(type) FROM type_index WHERE type >= ? AND type < ?", (low, high)
        ).fetchone()
        while name is not None and len(found) <= MAX_TYPE_KEYS:
            found.append(name)
            (name,) = connection.execute(_NEXT_TYPE, (name, high)).fetchone()
        if len(found) > MAX_TYPE_KEYS:
            ranges.append((low, high))
        else:
            names.update(found)
    positions: list[int] = []
    for name in sorted(names):
        positions += [p for (p,) in connection.execute(_TYPE_PAGE, (name, start, limit))]
    for low, high in ranges:
        positions += [p for (p,) in connection.execute(_TYPE_RANGE_PAGE, (low, high, start, limit))]
    return positions


def _stream_positions(
    connection: sqlite3.Connection, start: int, limit: int, prefixes: tuple[str, ...]
) -> list[int]:
    """The first ``limit`` indexed positions from ``start`` whose stream has a prefix."""
    positions: list[int] = []
    for prefix in prefixes:
        category = prefix.split(".", 1)[0]
        parameters = (category, start, *_bounds(prefix), limit)
        positions += [p for (p,) in connection.execute(_CATEGORY_PAGE, parameters)]
    return positions


def read_matching(
    connection: sqlite3.Connection,
    from_position: int,
    limit: int,
    column: str,
    prefixes: tuple[str, ...],
) -> LogPage:
    """A page of the rows whose ``column`` ("type" or "stream") has one of ``prefixes``
    (see :meth:`~.base.StoreBackend.read_all_matching`), found through the indexes."""
    if limit <= 0:
        return LogPage([], from_position, True)
    if column not in ("type", "stream"):
        raise ValueError(f"column must be 'type' or 'stream', got {column!r}")
    connection.execute("BEGIN")  # one snapshot: the indexes, the tail and the head agree
    try:
        if column == "type":
            positions = _type_positions(connection, from_position, limit, prefixes)
        else:
            positions = _stream_positions(connection, from_position, limit, prefixes)
        tail: list[Any] = [from_position]
        for prefix in prefixes:
            tail += _bounds(prefix)
        tail.append(limit)
        positions += [p for (p,) in connection.execute(_tail_page(column, len(prefixes)), tail)]
        page = sorted(set(positions))[:limit]
        scanned = connection.execute(_ROWS, (f"[{','.join(map(str, page))}]",)).fetchall()
        (head,) = connection.execute(HEAD).fetchone() if len(page) < limit else (None,)
        connection.execute("COMMIT")
    except BaseException:
        roll_back(connection, quiet=True)
        raise
    if len(page) == limit:
        return log_page(scanned, from_position, limit)
    rows = [row for row in scanned if row[12]]
    end = from_position if head is None else max(from_position, head + 1)
    return LogPage(rows, end, False)
