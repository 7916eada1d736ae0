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
from .base import LogPage, log_page, log_page_backwards

__all__ = ["MAX_TYPE_KEYS", "read_matching"]

#: most type names a read looks up one by one; past them a prefix is one sorted range
MAX_TYPE_KEYS = 64

_NEXT_TYPE = "SELECT min(type) FROM type_index WHERE type > ? AND type < ?"
_ROWS = (
    f"SELECT {', '.join('e.' + name for name in COLUMNS.split(', '))}, "
    "e.position >= s.first_visible FROM events e JOIN streams s ON s.name = e.stream "
    "WHERE e.global_position IN (SELECT value FROM json_each(?)) ORDER BY e.global_position"
)


class _Queries:
    """The statements of a read in one direction: forwards from a position (``>=``,
    ascending) or backwards from it (``<=``, descending)."""

    def __init__(self, backwards: bool) -> None:
        self.backwards = backwards
        compare, order = ("<=", " DESC") if backwards else (">=", "")
        page = f"global_position {compare} ? ORDER BY global_position{order} LIMIT ?"
        self.type_page = f"SELECT global_position FROM type_index WHERE type = ? AND {page}"
        self.type_range_page = (
            f"SELECT global_position FROM type_index WHERE type >= ? AND type < ? AND {page}"
        )
        self.category_page = (
            "SELECT global_position FROM category_index WHERE category = ? "
            f"AND (stream = ? OR (stream >= ? AND stream < ?)) AND {page}"
        )
        # the tail starts at TAIL_START: a rowid range from there (or from the start
        # position, if later), up to the start position backwards
        self._tail = (
            f"global_position <= ? AND global_position >= {TAIL_START} "
            "ORDER BY global_position DESC LIMIT ?"
            if backwards
            else f"global_position >= max(?, {TAIL_START}) ORDER BY global_position LIMIT ?"
        )

    def tail_page(self, column: str, count: int) -> str:
        """The tail's rows whose ``column`` has one of ``count`` prefixes (a scan of the
        tail, which holds fewer than ``INDEX_EVERY`` events while the writer keeps up)."""
        match = " OR ".join([f"{column} = ? OR ({column} >= ? AND {column} < ?)"] * count)
        return f"SELECT global_position FROM events WHERE ({match}) AND {self._tail}"


_FORWARDS, _BACKWARDS = _Queries(False), _Queries(True)


def _bounds(prefix: str) -> tuple[str, str, str]:
    """``prefix`` itself, and the range of the names under it (``/`` follows ``.``)."""
    return prefix, prefix + ".", prefix + "/"


def _type_positions(
    connection: sqlite3.Connection,
    queries: _Queries,
    start: int,
    limit: int,
    prefixes: tuple[str, ...],
) -> list[int]:
    """The first ``limit`` indexed positions from ``start`` on (in ``queries``'
    direction) whose type has a prefix."""
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
        page = connection.execute(queries.type_page, (name, start, limit))
        positions += [p for (p,) in page]
    for low, high in ranges:
        page = connection.execute(queries.type_range_page, (low, high, start, limit))
        positions += [p for (p,) in page]
    return positions


def _stream_positions(
    connection: sqlite3.Connection,
    queries: _Queries,
    start: int,
    limit: int,
    prefixes: tuple[str, ...],
) -> list[int]:
    """The first ``limit`` indexed positions from ``start`` on (in ``queries``'
    direction) whose stream has a prefix."""
    positions: list[int] = []
    for prefix in prefixes:
        category = prefix.split(".", 1)[0]
        parameters = (category, *_bounds(prefix), start, limit)
        positions += [p for (p,) in connection.execute(queries.category_page, parameters)]
    return positions


def read_matching(
    connection: sqlite3.Connection,
    from_position: int,
    limit: int,
    column: str,
    prefixes: tuple[str, ...],
    backwards: bool = False,
) -> LogPage:
    """A page of the rows whose ``column`` ("type" or "stream") has one of ``prefixes``
    (see :meth:`~.base.StoreBackend.read_all_matching`), found through the indexes;
    ``backwards``: at or below ``from_position``, newest first."""
    if limit <= 0:
        return LogPage([], from_position, True)
    if column not in ("type", "stream"):
        raise ValueError(f"column must be 'type' or 'stream', got {column!r}")
    queries = _BACKWARDS if backwards else _FORWARDS
    positions_of = _type_positions if column == "type" else _stream_positions
    connection.execute("BEGIN")  # one snapshot: the indexes, the tail and the head agree
    try:
        positions = positions_of(connection, queries, from_position, limit, prefixes)
        tail: list[Any] = [bound for prefix in prefixes for bound in _bounds(prefix)]
        tail += [from_position, limit]
        positions += [
            p for (p,) in connection.execute(queries.tail_page(column, len(prefixes)), tail)
        ]
        page = sorted(set(positions), reverse=backwards)[:limit]
        scanned = connection.execute(_ROWS, (f"[{','.join(map(str, page))}]",)).fetchall()
        short = len(page) < limit
        (head,) = connection.execute(HEAD).fetchone() if short and not backwards else (None,)
        connection.execute("COMMIT")
    except BaseException:
        roll_back(connection, quiet=True)
        raise
    if backwards:
        scanned.reverse()
        if not short:
            return log_page_backwards(scanned, from_position, limit)
        return LogPage([row for row in scanned if row[12]], -1, False)  # down to the first
    if not short:
        return log_page(scanned, from_position, limit)
    end = from_position if head is None else max(from_position, head + 1)
    return LogPage([row for row in scanned if row[12]], end, False)
