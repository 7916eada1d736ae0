"""The SQLite backend: an embedded, durable store in one file (stdlib ``sqlite3``).

Writes go through one writer thread that practises *group commit* (``_sqlite_writer``):
it drains every append waiting in its queue, decides them all in Python before writing
(so one caller's :class:`ConcurrencyError` does not fail the others), writes them in one
transaction, commits once, and only then resolves each caller's future. A durable commit
costs one fsync (WAL, ``synchronous=FULL``), so twenty concurrent appenders pay for one
fsync instead of twenty. Reads run on a small pool of separate connections (WAL lets them
proceed while the writer writes); nothing blocking ever runs on the event loop. The
schema and its migrations are in ``_sqlite_schema``. This module holds the backend's
contract, its reads and writes as SQL; opening the file, the writer and the read threads
with their connections, ``close()`` and what ``fork()`` needs are in
``_sqlite_connections``, the base class.

Every use of a connection (a transaction, a read, opening or closing one) happens under
a lock that ``os.fork()`` waits for (``.._sqlite``): a forked child inherits no
transaction under way, abandons the parent's connections and threads, and opens its own
on first use. See ``docs/store.md``, "SQLite and fork()".

Global positions are assigned inside the write transaction, and SQLite has a single
writer, so positions become visible in order: a subscription that has read position
``n`` can never later find a new event below ``n``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Mapping, Sequence
from functools import partial

from ._names_page import prefix_bounds
from ._sqlite_connections import SQLiteConnections
from ._sqlite_matching import read_matching
from ._sqlite_probe import answer
from ._sqlite_schema import (
    COUNT_BY_MINUTE,
    HEAD,
    LIVE_STREAMS,
    NEXT_POSITION,
    READ_ALL,
    READ_ALL_BACKWARDS,
    READ_STREAM_BACKWARD,
    READ_STREAM_FORWARD,
    STATES,
    TIME_BLOCKS,
    json_text,
)
from ._sqlite_stored import write_stored
from ._sqlite_url import SQLiteAccess, SQLiteURL, parse_access, parse_url, parse_url_and_access
from ._time_blocks import BLOCK, PositionRange, ranges_of
from .base import (
    AppendResult,
    ExpectedVersion,
    LogPage,
    MinuteCountRow,
    MultiAppend,
    NewRecord,
    PendingAppend,
    Row,
    SnapshotRow,
    StoreBackend,
    StoredRow,
    StreamState,
    check_snapshot_version,
    log_page,
    log_page_backwards,
)

__all__ = ["SQLiteAccess", "SQLiteBackend", "SQLiteURL", "parse_access", "parse_url"]

#: a page of the names LIVE_STREAMS lists: after a cursor, optionally under a prefix (a
#: range of the primary key, then the prefix itself or its names past ``prefix.``)
_LIVE = LIVE_STREAMS.removesuffix(" ORDER BY s.name")  # the tests fail if it has none
_NAMES_AFTER = f"{_LIVE} AND s.name > ? ORDER BY s.name LIMIT ?"
_NAMES_UNDER = (
    f"{_LIVE} AND s.name > ? AND s.name >= ? AND s.name < ? AND (s.name = ? OR s.name >= ?) "
    "ORDER BY s.name LIMIT ?"
)

#: how long an idle subscription waits before re-reading (catches other processes' writes)
POLL_INTERVAL = 0.5

_new_tuple = tuple.__new__


class SQLiteBackend(SQLiteConnections, StoreBackend):
    """Events in one SQLite file: WAL, ``synchronous=FULL`` and group commit.

    The file is created on first use if it is missing. With ``create=False`` (also
    settable as the ``create`` attribute before first use) only an existing event store
    is opened: a missing file, an empty one, or one that is not an event store (another
    application's SQLite database) raises :class:`~pepperpy.event.StoreError` on first
    use and is left as it is, so a tool that only reads cannot turn a mistyped path into
    a store. An event store of an older schema is still upgraded. In a store URL this
    is ``sqlite:///path/events.db?create=0`` (see :func:`parse_url`).

    With ``read_only=True`` (``?mode=ro``) the file is only read, through read-only
    connections: no writer thread starts, nothing is written to the database file, and
    appends, deletes and snapshots raise :class:`~pepperpy.event.StoreError` saying the
    store is read-only. It must already be an event store of the current schema (an
    older one is not migrated: the error says to open it writable once). Reads, and
    subscriptions, see what other processes commit, as a writable store does (a re-read
    every :data:`POLL_INTERVAL`). SQLite still needs the ``-wal`` and ``-shm`` files
    beside the file: in a read-only directory they must exist already, unless
    ``immutable=True`` (``?immutable=1``, read-only implied) says that nothing writes the
    file at all. SQLite then reads the database file alone; a file with a non-empty
    ``-wal`` (commits not yet copied into it) is refused, on opening and on every read.
    """

    @classmethod
    def from_url(cls, url: str) -> SQLiteBackend:
        """The backend a ``sqlite:///path?options`` URL describes (see :func:`parse_url`)."""
        url_says, access = parse_url_and_access(url)
        path, synchronous, busy_timeout, create = url_says
        return cls(
            path,
            synchronous=synchronous,
            busy_timeout=busy_timeout,
            create=create,
            read_only=access.read_only,
            immutable=access.immutable,
        )

    # -- the contract -----------------------------------------------------------------

    def append(
        self, stream: str, records: Sequence[NewRecord], expected_version: ExpectedVersion
    ) -> Awaitable[AppendResult]:
        append = _new_tuple(PendingAppend, (stream, records, expected_version))
        if self._open and not self._closed:  # the hot path: straight to the writer's queue
            writer = self._held.writer
            assert writer is not None
            return writer.submit(None, append)
        return self._write(None, append)

    async def append_streams(self, appends: Sequence[PendingAppend]) -> list[AppendResult]:
        """One job for the writer: decided and written whole inside its group's
        transaction (see :class:`~.base.MultiAppend`); a failure fails it alone."""
        results: list[AppendResult] = await self._write(None, MultiAppend.of(appends))
        return results

    async def read_stream(
        self, stream: str, start: int | None, backwards: bool, limit: int
    ) -> list[Row]:
        if backwards:
            sql, at = READ_STREAM_BACKWARD, (1 << 62) if start is None else start
        else:
            sql, at = READ_STREAM_FORWARD, 0 if start is None else start
        parameters = {"s": stream, "at": at, "n": limit}
        return await self._read(lambda connection: connection.execute(sql, parameters).fetchall())

    async def read_all(self, from_position: int, limit: int) -> LogPage:
        scanned = await self._read(
            lambda connection: connection.execute(READ_ALL, (from_position, limit)).fetchall()
        )
        return log_page(scanned, from_position, limit)

    async def read_all_matching(
        self,
        from_position: int,
        limit: int,
        column: str,
        prefixes: Sequence[str],
        backwards: bool = False,
    ) -> LogPage:
        """Through type_index or category_index (see ``_sqlite_matching``); by a scan on
        a read-only store of the schema before them."""
        keys = tuple(prefixes)
        if not (self._open or self._checked):
            await self._opened()  # a read-only store's version is known from here on
        if not self._matching:
            return await super().read_all_matching(from_position, limit, column, keys, backwards)
        return await self._read(
            lambda connection: read_matching(
                connection, from_position, limit, column, keys, backwards
            )
        )

    async def read_all_backwards(self, from_position: int, limit: int) -> LogPage:
        scanned = await self._read(
            lambda connection: connection.execute(
                READ_ALL_BACKWARDS, (from_position, limit)
            ).fetchall()
        )
        return log_page_backwards(scanned, from_position, limit)

    async def head(self) -> int | None:
        """One committed snapshot's newest event: SQLite has one writer, which assigns
        positions inside its transaction, so none can commit below it later."""
        row = await self._read(lambda connection: connection.execute(HEAD).fetchone())
        last: int | None = row[0]
        return last

    async def count_by_minute(self, since: int) -> list[MinuteCountRow]:
        rows = await self._read(
            lambda connection: connection.execute(COUNT_BY_MINUTE, {"since": since}).fetchall()
        )
        return [MinuteCountRow(*row) for row in rows]

    async def time_ranges(
        self, start: int, end: int, from_position: int
    ) -> list[PositionRange] | None:
        """From time_blocks (see ``_time_blocks``); None on a read-only store of the
        schema before it."""
        if not (self._open or self._checked):
            await self._opened()  # a read-only store's version is known from here on
        if not self._timed:
            return None
        parameters = {"block": max(from_position, 0) // BLOCK, "start": start, "end": end}
        rows = await self._read(
            lambda connection: connection.execute(TIME_BLOCKS, parameters).fetchall()
        )
        last = rows[0][1] if rows else None
        return ranges_of((row[0] for row in rows), last, from_position)

    async def read_stored(self, from_position: int, limit: int) -> list[StoredRow]:
        scanned = await self._read(
            lambda connection: connection.execute(READ_ALL, (from_position, limit)).fetchall()
        )
        return [(*row[:12], bool(row[12])) for row in scanned]

    async def write_stored(
        self, rows: Sequence[Row], after: int | None, visible_from: Mapping[str, int]
    ) -> None:
        """One job of the writer (the single writer appends go through too), in its
        transaction; the writer then reads the head and the streams' states again."""
        written = [tuple(row[:12]) for row in rows]
        raised = dict(visible_from)

        def work(connection: sqlite3.Connection) -> None:
            write_stored(connection, written, after, raised, _stream_state)

        await self._write(work, changes=True)

    async def stream_state(self, stream: str) -> StreamState | None:
        return await self._read(lambda connection: _stream_state(connection, stream))

    async def stream_states(self, streams: Sequence[str]) -> dict[str, StreamState]:
        """One read: the names go in as one JSON array (``STATES``)."""
        names = json_text(list(streams))
        rows = await self._read(lambda connection: connection.execute(STATES, (names,)).fetchall())
        return {row[0]: StreamState(row[1], row[2], bool(row[3])) for row in rows}

    async def stream_names(self) -> list[str]:
        rows = await self._read(lambda connection: connection.execute(LIVE_STREAMS).fetchall())
        return [name for (name,) in rows]

    async def stream_names_page(
        self, after: str | None, limit: int, prefix: str | None = None
    ) -> list[str]:
        """One query, a range of the streams table's primary key (``BINARY``: code-point
        order, as Python sorts): the page's rows are read, not every name."""
        if limit <= 0:
            return []
        parameters: tuple[str | int, ...]
        if prefix is None:  # every name is past "" (names are not empty)
            query, parameters = _NAMES_AFTER, (after or "", limit)
        else:
            low, high = prefix_bounds(prefix)
            query = _NAMES_UNDER
            parameters = (after or "", low, high, prefix, prefix + ".", limit)
        rows = await self._read(lambda connection: connection.execute(query, parameters).fetchall())
        return [name for (name,) in rows]

    async def delete_stream(self, stream: str) -> bool:
        def work(connection: sqlite3.Connection) -> bool:
            connection.execute("DELETE FROM snapshots WHERE stream = ?", (stream,))
            cursor = connection.execute(
                f"UPDATE streams AS s SET first_visible = {NEXT_POSITION}, deleted = 1 "
                f"WHERE s.name = ? AND s.deleted = 0 AND {NEXT_POSITION} > s.first_visible",
                (stream,),
            )
            return cursor.rowcount > 0

        return await self._write(work, changes=stream)

    async def save_snapshot(self, stream: str, snapshot: SnapshotRow) -> None:
        def work(connection: sqlite3.Connection) -> None:
            # in the writer's transaction: no append or delete can come in between
            check_snapshot_version(stream, _stream_state(connection, stream), snapshot.version)
            connection.execute(
                "INSERT OR REPLACE INTO snapshots (stream, version, state, taken_at) "
                "VALUES (?, ?, ?, ?)",
                (stream, *snapshot),
            )

        await self._write(work)

    async def load_snapshot(self, stream: str) -> SnapshotRow | None:
        row = await self._read(
            lambda connection: connection.execute(
                "SELECT version, state, taken_at FROM snapshots WHERE stream = ?", (stream,)
            ).fetchone()
        )
        return None if row is None else SnapshotRow(*row)

    async def wait(self, position: int) -> None:
        """Wake on this process's commits at once, on other processes' within a poll or
        two: a poll reads the head, once for every waiter of this store (see
        ``_sqlite_probe``), and returns when it is at ``position`` or past it."""
        while True:
            began = time.monotonic()
            commits = self._commits
            woken = commits.waiters.register()
            if self._closed or commits.head > position:
                return
            try:
                await asyncio.wait_for(woken.wait(), POLL_INTERVAL)
            except TimeoutError:
                pass
            else:
                return  # a commit of this process, or close()
            pool = self._held.pool
            if self._closed or pool is None:
                return  # the caller's read says what there is
            try:
                probe = self._probe.since(began, partial(pool.submit, self._run_read, _head))
            except RuntimeError:  # the read threads were shut down: closing
                return
            head = await answer(probe)
            if head is not None and head >= position:
                return


def _head(connection: sqlite3.Connection) -> int | None:
    last: int | None = connection.execute(HEAD).fetchone()[0]
    return last


def _stream_state(connection: sqlite3.Connection, stream: str) -> StreamState | None:
    """The stream's bookkeeping as ``connection`` sees it (None: never written)."""
    row = connection.execute(
        f"SELECT {NEXT_POSITION}, s.first_visible, s.deleted FROM streams s WHERE s.name = ?",
        (stream,),
    ).fetchone()
    return None if row is None else StreamState(row[0], row[1], bool(row[2]))
