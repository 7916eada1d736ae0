"""The PostgreSQL backend (asyncpg): one store shared by many processes and hosts.

Ordering promise: a subscription must never skip an event that commits late. Writers
therefore take global positions from a one-row counter (``pepperpy_head``) whose row
lock is held until commit, so positions are handed out in commit order and a reader
that has seen position ``n`` can never later find a new event below ``n``. The locked
section is one statement plus the commit; ``docs/store.md`` explains why this was
chosen over tracking in-flight transaction ids.

Live subscriptions wake on ``LISTEN``/``NOTIFY`` (the appending transaction notifies on
commit) through one listener connection per store, reconnected if it drops or stops
answering its pings; after a reconnect every waiter re-reads, so notifications lost in
between cost nothing.

Nothing waits on the network without a bound (a partition leaves connections open with
nobody answering, and the server's ``statement_timeout`` cannot help then): each attempt
at an operation waits ``command_timeout`` for PostgreSQL, connecting ``connect_timeout``,
``close`` at most ``CLOSE_TIMEOUT``, and the kernel is told to give up on a silent peer
(TCP keepalive, ``TCP_USER_TIMEOUT``). A connection that timed out, or whose caller was
cancelled mid-statement, is cut off rather than released: releasing it would wait for
asyncpg's cancel request, which needs a new connection to the same silent server. Where
asyncpg goes on without a cancelled caller (the reset of a connection being released,
the opening of a new one), that work is left to finish, within its bound, and its
outcome is read: nothing fails unseen on the loop (see :func:`shielded_connect`).

asyncpg connections work on the event loop that opened them only, so each loop using a
store gets its own pool, committer and listener (``_pg_loops.OnLoop``): a store keeps
working after ``asyncio.run`` ends, and from loops in other threads.

The schema is created and migrated on first use, under an advisory lock (two processes
starting at once take turns), and recorded in ``pepperpy_schema_version``. The URL option
``?schema=name`` keeps a store's tables in that PostgreSQL schema (created if missing), so
several independent stores can share one database.

This module holds the backend and its public names; its parts live beside it:
``_pg_options`` (the URL and its options), ``_pg_connect`` (one connection: opening,
bounds, cutting off, commit progress), ``_pg_pool`` (each loop's pool and the bounded
runs on it), ``_pg_schema`` (the tables, migrations and SQL), ``_pg_loops`` (what a store
holds on each loop, and its committer) and ``_pg_listen`` (the LISTEN connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from .._cancel import cancelling
from .._deps import require
from .._errors import ClosedError, StoreError
from .._loops import LoopShares
from ._names_page import prefix_bounds
from ._pg_connect import (
    Progress,
    Watchdog,
    in_transaction,
    shielded_connect,
    tune_socket,
)
from ._pg_listen import RECONNECT_INTERVAL, listen
from ._pg_loops import CommitJobs, Job, OnLoop, Status, commit_loop, dropped, listener_ended
from ._pg_options import (
    CLOSE_TIMEOUT,
    PostgresOptions,
    parse_options,
    parse_url,
)
from ._pg_pool import UNKNOWN, Pools
from ._pg_schema import (
    COUNT_BY_MINUTE,
    HEAD,
    READ_ALL,
    READ_ALL_BACKWARDS,
    READ_CATEGORIES,
    READ_CATEGORIES_BACKWARDS,
    READ_STREAM_BACKWARD,
    READ_STREAM_FORWARD,
    READ_TYPES,
    READ_TYPES_BACKWARDS,
    SCHEMA_LOCK,
    TIME_BLOCKS,
    schema_change,
    write_group,
)
from ._pg_stored import read_stored, write_stored
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
    redact_url,
    settle,
)

# besides the backend, the names the checkpoint store shares with it (from _pg_*)
__all__ = [
    "CLOSE_TIMEOUT",
    "SCHEMA_LOCK",
    "PostgresBackend",
    "PostgresOptions",
    "Progress",
    "Watchdog",
    "parse_options",
    "parse_url",
    "schema_change",
    "shielded_connect",
    "tune_socket",
]

T = TypeVar("T")

CHANNEL = "pepperpy_events"
_DEADLOCK_RETRIES = 3
#: SQLSTATE classes of errors caused by a value written, not by the connection or server
_REFUSALS = frozenset({"22", "23", "54"})
#: seconds ``close`` gives the committer to answer its callers after an abort
_ABORT_GRACE = 1.0


#: for a filtered read's statement: PostgreSQL estimates its cost as if every key read
#: a whole page (keys x limit rows, the keys of a prefix guessed at a hundred), which
#: passes ``jit_above_cost``; compiling the plan then took 250 ms (measured on 200,000
#: events) for a read of 10 rows that runs in 1 ms
_NO_JIT = "SET LOCAL jit = off"
#: a page of the names stream_names lists, in the same order (code points: ``COLLATE
#: "C"``): after a cursor, optionally under a prefix (the prefix itself or its names past
#: ``prefix.``). The primary key's index is in the database's collation, which may order
#: names otherwise, so the server reads the matching rows and keeps the page's smallest
_LIVE_NAMES = (
    "SELECT name FROM pepperpy_streams WHERE NOT deleted AND next_position > first_visible"
)
_NAMES_AFTER = f'{_LIVE_NAMES} AND name COLLATE "C" > $1 ORDER BY name COLLATE "C" LIMIT $2'
_NAMES_UNDER = (
    f'{_LIVE_NAMES} AND name COLLATE "C" > $1 AND name COLLATE "C" >= $3 '
    'AND name COLLATE "C" < $4 AND (name = $5 OR name COLLATE "C" >= $6) '
    'ORDER BY name COLLATE "C" LIMIT $2'
)


class PostgresBackend(StoreBackend):
    """Events in PostgreSQL tables, written in commit order, followed via NOTIFY.

    The tables are created on first use if they are missing. With ``create=False`` (also
    settable as the ``create`` attribute before first use) only an existing store is
    opened: a database (or ``?schema=``) without one raises
    :class:`~pepperpy.event.StoreError` naming the database on first use, and nothing is
    created there, so a tool that only reads cannot fill another application's database,
    given by mistake, with a store's tables. A store of an older schema version is still
    migrated, as on any open.
    """

    def __init__(self, url: str, *, create: bool = True) -> None:
        self._asyncpg = require("asyncpg", extra="postgres", feature="the PostgreSQL store")
        self.url = url
        self._dsn, self.options = parse_options(url)
        self.schema = self.options.schema
        #: the NOTIFY channel earlier versions named after the URL (``?schema=``), which
        #: writers still notify and the listener still hears, beside the tables' own
        #: (``_pg_schema.CHANNEL_OF_TABLES``); only ever a wake-up (see ``wait``)
        self.channel = CHANNEL if self.schema is None else f"{CHANNEL}_{self.schema}"
        #: connections, tasks and waiters of each loop using the store (see ``OnLoop``)
        self._loops: LoopShares[OnLoop] = LoopShares(OnLoop)
        #: closed, and the head: shared with the tasks, which never hold the backend
        self._status = Status()
        #: each loop's pool, and the bounded way work runs on it
        self._pools = Pools(self._asyncpg, url, self._dsn, self.options, self._status)
        #: what asyncpg raises (see ``Pools.errors``)
        self._errors = self._pools.errors
        self.create = create
        # dropped without close(): close the connections, with a warning; not at exit
        # (asyncio.run() has dropped them already when its loop ends)
        weakref.finalize(
            self, dropped, self._loops, self._status, redact_url(url), self.options.close_timeout
        ).atexit = False

    @property
    def _closed(self) -> bool:
        return self._status.closed

    @_closed.setter
    def _closed(self, closed: bool) -> None:
        self._status.closed = closed

    @property
    def create(self) -> bool:
        """Whether the first use may create the store's tables (see the class)."""
        return self._pools.create

    @create.setter
    def create(self, create: bool) -> None:
        self._pools.create = create

    def __repr__(self) -> str:
        return f"PostgresBackend({redact_url(self.url)!r})"

    # -- plumbing ---------------------------------------------------------------------

    def _here(self) -> OnLoop:
        """The running loop's share of the store, made on its first use there."""
        on = self._loops.here()
        if on.committer is None:
            self._status.used = True
            commit: weakref.WeakMethod[CommitJobs] = weakref.WeakMethod(self._commit_jobs)
            on.committer = on.loop.create_task(
                commit_loop(commit, on, self._status, self._loops, self._errors)
            )
        return on

    async def _run(
        self,
        what: str,
        work: Callable[[Any, Progress], Awaitable[T]],
        on: OnLoop | None = None,
        *,
        closing: bool = False,
    ) -> T:
        """Run ``work(connection, progress)`` on a pooled connection of ``on`` (the
        running loop's share if None): see :meth:`Pools.run`, the backend boundary.

        :class:`ClosedError` once the store is closed, unless ``closing`` (the committer
        writing the appends queued before ``close``).
        """
        if self._closed and not closing:
            raise ClosedError("the event store is closed")
        if on is None:
            on = self._here()
        return await self._pools.run(what, work, on, closing=closing)

    # -- the contract -----------------------------------------------------------------

    async def append(
        self, stream: str, records: Sequence[NewRecord], expected_version: ExpectedVersion
    ) -> AppendResult:
        """Queue the append for the loop's next group commit and wait for its outcome."""
        if self._closed:
            raise ClosedError("the event store is closed")
        on = self._here()
        future: asyncio.Future[AppendResult] = on.loop.create_future()
        on.pending.append((PendingAppend(stream, records, expected_version), future))
        on.work.set()
        return await future

    async def append_streams(self, appends: Sequence[PendingAppend]) -> list[AppendResult]:
        """Queued as one job of the loop's next group commit (see
        :class:`~.base.MultiAppend`): decided and written whole in its transaction."""
        if self._closed:
            raise ClosedError("the event store is closed")
        unit = MultiAppend.of(appends)
        on = self._here()
        future: asyncio.Future[list[AppendResult]] = on.loop.create_future()
        on.pending.append((unit, future))
        on.work.set()
        return await future

    async def _commit_jobs(self, on: OnLoop, jobs: list[Job]) -> None:
        """Commit a group of appends and resolve every caller's future."""
        try:
            await self._commit_split(on, jobs)
        except asyncio.CancelledError:  # the loop is shutting down; the callers may not be
            for _, future in jobs:
                settle(
                    future,
                    StoreError(
                        "PostgreSQL append: the store's committer was cancelled (its event "
                        "loop is shutting down) while writing it, so whether it was written "
                        f"is unknown; {UNKNOWN['append'][1]}"
                    ),
                )
            raise
        except Exception as exc:  # the connection or the server is gone
            for _, future in jobs:
                settle(future, exc)  # those already resolved are left alone

    async def _commit_split(self, on: OnLoop, jobs: list[Job]) -> None:
        """Commit ``jobs`` in one transaction; if PostgreSQL refuses a value, only its
        append fails.

        Such a refusal rolls the whole transaction back, writing nothing, so the group is
        committed again in two halves, in order (positions stay in queue order and later
        appends see the earlier ones, as in one group), and so on down to the culprit.
        This costs nothing while no write fails. Other failures (a lost connection, a
        server gone) are raised, failing every caller not answered yet.
        """
        try:
            outcomes = await self._commit_group(on, [append for append, _ in jobs])
        except Exception as exc:
            if not self._refused(exc):
                raise
            if len(jobs) == 1:
                settle(jobs[0][1], exc)
                return
            half = len(jobs) // 2
            for part in (jobs[:half], jobs[half:]):
                waiting = [job for job in part if not job[1].cancelled()]
                if waiting:
                    await self._commit_split(on, waiting)
            return
        for (_, future), outcome in zip(jobs, outcomes, strict=True):
            settle(future, outcome)

    def _refused(self, exc: Exception) -> bool:
        """Whether PostgreSQL (or asyncpg's encoder) refused a value some append holds.

        That is an error of SQLSTATE class 22 (data exception: a NUL in a text, a number
        out of range, text that is no UTF-8), 23 (integrity constraint) or 54 (program
        limit exceeded: a key too long for its index).
        """
        cause = exc.__cause__
        if not isinstance(cause, self._asyncpg.PostgresError):
            return False
        return str(getattr(cause, "sqlstate", ""))[:2] in _REFUSALS

    async def _commit_group(
        self, on: OnLoop, appends: list[PendingAppend | MultiAppend]
    ) -> list[Any]:
        write = functools.partial(write_group, self.channel, appends)

        async def work(connection: Any, progress: Progress) -> list[Any]:
            return await in_transaction(connection, progress, write)

        for attempt in range(_DEADLOCK_RETRIES):
            try:
                return await self._run("append", work, on, closing=True)
            except StoreError as exc:
                deadlock = isinstance(exc.__cause__, self._asyncpg.DeadlockDetectedError)
                if not deadlock or attempt == _DEADLOCK_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def read_stream(
        self, stream: str, start: int | None, backwards: bool, limit: int
    ) -> list[Row]:
        if backwards:
            sql = READ_STREAM_BACKWARD
            begin = (1 << 62) if start is None else start
        else:
            sql = READ_STREAM_FORWARD
            begin = 0 if start is None else start
        rows: list[Row] = await self._run(
            "read_stream", lambda connection, _: connection.fetch(sql, stream, begin, limit)
        )
        return rows

    async def read_all(self, from_position: int, limit: int) -> LogPage:
        scanned = await self._run(
            "read_all", lambda connection, _: connection.fetch(READ_ALL, from_position, limit)
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
        """Through pepperpy_events_type or pepperpy_events_category, in one statement
        (one snapshot): each key's rows in order up to ``limit``, then the first
        ``limit`` of them all. A prefix ``p`` stands for ``p`` and the names from
        ``p + "."`` up to ``p + "/"`` (``/`` follows ``.``). Without JIT (see
        :data:`_NO_JIT`)."""
        if limit <= 0:
            return LogPage([], from_position, True)
        keys = sorted(set(prefixes))
        arguments: list[list[str]]
        if column == "type":
            sql = READ_TYPES_BACKWARDS if backwards else READ_TYPES
            arguments = [keys, [key + "." for key in keys], [key + "/" for key in keys]]
        elif column == "stream":
            # a one-token prefix is its whole category; a longer one narrows its category
            whole = [key for key in keys if "." not in key]
            longer = [key for key in keys if "." in key]
            sql = READ_CATEGORIES_BACKWARDS if backwards else READ_CATEGORIES
            arguments = [
                whole,
                [key.split(".", 1)[0] for key in longer],
                longer,
                [key + "." for key in longer],
                [key + "/" for key in longer],
            ]
        else:
            raise ValueError(f"column must be 'type' or 'stream', got {column!r}")

        async def read(connection: Any, _: Progress) -> list[Any]:
            # a read-only transaction of its own, for SET LOCAL; nothing to commit, so a
            # connection lost at any point leaves a read to try again (no Progress.commit)
            transaction = connection.transaction(readonly=True)
            await transaction.start()
            try:
                await connection.execute(_NO_JIT)
                rows: list[Any] = await connection.fetch(sql, from_position, limit, *arguments)
            except Exception:
                with contextlib.suppress(Exception):
                    await transaction.rollback()
                raise
            await transaction.commit()
            return rows

        found = await self._run("read_all", read)
        head = found[0][0]
        scanned = [tuple(row)[1:] for row in found if row[1] is not None]
        if backwards:
            if len(scanned) == limit:
                return log_page_backwards(scanned, from_position, limit)
            return LogPage([row for row in scanned if row[12]], -1, False)  # to the first
        if len(scanned) == limit:
            return log_page(scanned, from_position, limit)
        end = from_position if head is None else max(from_position, head + 1)
        return LogPage([row for row in scanned if row[12]], end, False)

    async def read_all_backwards(self, from_position: int, limit: int) -> LogPage:
        scanned = await self._run(
            "read_all",
            lambda connection, _: connection.fetch(READ_ALL_BACKWARDS, from_position, limit),
        )
        return log_page_backwards(scanned, from_position, limit)

    async def head(self) -> int | None:
        """The newest committed event: positions are taken under a lock held until commit
        (see the module), so a transaction in flight holds only positions above it."""
        last: int | None = await self._run("head", lambda connection, _: connection.fetchval(HEAD))
        return last

    async def count_by_minute(self, since: int) -> list[MinuteCountRow]:
        rows = await self._run(
            "count_by_minute",
            lambda connection, _: connection.fetch(COUNT_BY_MINUTE, since),
        )
        return [MinuteCountRow(row[0], row[1], row[2]) for row in rows]

    async def time_ranges(
        self, start: int, end: int, from_position: int
    ) -> list[PositionRange] | None:
        """From pepperpy_time_blocks, which a trigger keeps (see ``_pg_schema``)."""
        block = max(from_position, 0) // BLOCK
        rows = await self._run(
            "time_ranges",
            lambda connection, _: connection.fetch(TIME_BLOCKS, block, start, end),
        )
        last = rows[0][1] if rows else None
        return ranges_of((row[0] for row in rows), last, from_position)

    async def read_stored(self, from_position: int, limit: int) -> list[StoredRow]:
        return await self._run(
            "read_stored",
            lambda connection, _: read_stored(connection, from_position, limit),
        )

    async def write_stored(
        self, rows: Sequence[Row], after: int | None, visible_from: Mapping[str, int]
    ) -> None:
        """In one transaction holding the lock appends take (see ``_pg_stored``)."""
        write = functools.partial(
            write_stored, self.channel, [tuple(row[:12]) for row in rows], after, visible_from
        )
        await self._run(
            "write_stored",
            lambda connection, progress: in_transaction(connection, progress, write),
        )

    async def stream_state(self, stream: str) -> StreamState | None:
        row = await self._run(
            "stream_state",
            lambda connection, _: connection.fetchrow(
                "SELECT next_position, first_visible, deleted FROM pepperpy_streams "
                "WHERE name = $1",
                stream,
            ),
        )
        return None if row is None else StreamState(row[0], row[1], row[2])

    async def stream_states(self, streams: Sequence[str]) -> dict[str, StreamState]:
        rows = await self._run(
            "stream_states",
            lambda connection, _: connection.fetch(
                "SELECT name, next_position, first_visible, deleted FROM pepperpy_streams "
                "WHERE name = any($1::text[])",
                list(streams),
            ),
        )
        return {row[0]: StreamState(row[1], row[2], row[3]) for row in rows}

    async def stream_names(self) -> list[str]:
        rows = await self._run(
            "stream_names",
            lambda connection, _: connection.fetch(
                "SELECT name FROM pepperpy_streams WHERE NOT deleted "
                'AND next_position > first_visible ORDER BY name COLLATE "C"'
            ),
        )
        return [row[0] for row in rows]

    async def stream_names_page(
        self, after: str | None, limit: int, prefix: str | None = None
    ) -> list[str]:
        """One query, ``COLLATE "C"`` (code-point order, as ``stream_names`` and Python
        sort); ``LIMIT`` keeps the server's sort to a page (see docs/store.md)."""
        if limit <= 0:
            return []
        arguments: tuple[str | int, ...]
        if prefix is None:  # every name is past "" (names are not empty)
            query, arguments = _NAMES_AFTER, (after or "", limit)
        else:
            low, high = prefix_bounds(prefix)
            query, arguments = _NAMES_UNDER, (after or "", limit, low, high, prefix, prefix + ".")
        rows = await self._run(
            "stream_names_page", lambda connection, _: connection.fetch(query, *arguments)
        )
        return [row[0] for row in rows]

    async def delete_stream(self, stream: str) -> bool:
        # the stream row is locked before the snapshot goes: a save_snapshot holding it
        # commits first and its snapshot is deleted here, or waits and finds it deleted
        async def delete(connection: Any) -> bool:
            status = await connection.execute(
                "UPDATE pepperpy_streams SET first_visible = next_position, deleted = true "
                "WHERE name = $1 AND NOT deleted AND next_position > first_visible",
                stream,
            )
            await connection.execute("DELETE FROM pepperpy_snapshots WHERE stream = $1", stream)
            return bool(status != "UPDATE 0")

        return await self._run(
            "delete_stream",
            lambda connection, progress: in_transaction(connection, progress, delete),
        )

    async def save_snapshot(self, stream: str, snapshot: SnapshotRow) -> None:
        # FOR SHARE: until this commits, no append or delete of the stream can change it
        async def save(connection: Any) -> None:
            row = await connection.fetchrow(
                "SELECT next_position, first_visible, deleted FROM pepperpy_streams "
                "WHERE name = $1 FOR SHARE",
                stream,
            )
            state = None if row is None else StreamState(row[0], row[1], row[2])
            check_snapshot_version(stream, state, snapshot.version)
            await connection.execute(
                "INSERT INTO pepperpy_snapshots (stream, version, state, taken_at) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (stream) DO UPDATE SET "
                "version = excluded.version, state = excluded.state, "
                "taken_at = excluded.taken_at",
                stream,
                snapshot.version,
                snapshot.state,
                snapshot.taken_at,
            )

        await self._run(
            "save_snapshot",
            lambda connection, progress: in_transaction(connection, progress, save),
        )

    async def load_snapshot(self, stream: str) -> SnapshotRow | None:
        row = await self._run(
            "load_snapshot",
            lambda connection, _: connection.fetchrow(
                "SELECT version, state, taken_at FROM pepperpy_snapshots WHERE stream = $1",
                stream,
            ),
        )
        return None if row is None else SnapshotRow(row[0], row[1], row[2])

    # -- live wake-ups ----------------------------------------------------------------

    async def wait(self, position: int) -> None:
        """Return once an event at ``position`` or later may exist.

        A notification only wakes the waiters, who re-read: its payload is never taken
        as the head, since a channel named after the URL may be another store's too.
        One that came since the head was last read here is not lost for a caller that
        was reading meanwhile (while others waited, or while this very call read the
        head): the head is then read from the tables (again, until no news came during
        the read), and the caller returns at once if it moved past ``position``; other
        waiters that came meanwhile are woken to re-read.
        """
        if self._closed or self._status.head > position:
            return
        on = self._here()
        while on.missed:
            on.missed = False
            before = self._status.head
            last = await self.head()
            self._status.head = max(self._status.head, 0 if last is None else last + 1)
            if self._status.head > before:
                on.wake()
            if self._status.head > position:
                return
        if on.listening is not None and on.listening.done():
            listener_ended(on.listening)  # a bug, not an outage: say so, start anew
            on.listening = None
        if on.listening is None:
            # start listening; events committed before LISTEN took effect are found by
            # the caller's next read, so return at once
            on.listening = asyncio.ensure_future(
                listen(
                    on,
                    self._status,
                    self._asyncpg,
                    self._dsn,
                    self.options,
                    self._errors,
                    self.channel,
                )
            )
            await self._wait_changed(on, RECONNECT_INTERVAL)
            return
        await self._wait_changed(on, None if on.connected else RECONNECT_INTERVAL)

    async def _wait_changed(self, on: OnLoop, at_most: float | None) -> None:
        if on.changed is None:
            on.changed = asyncio.Event()
        changed = on.changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most):
                await changed.wait()

    async def close(self) -> None:
        """Close the store: every loop's connections close once its queued appends are in.

        Bounded: if the server does not answer, after ``options.close_timeout`` seconds
        the connections are cut off (``OnLoop.abort``); appends still queued then fail
        with :class:`ClosedError`, the one being committed with :class:`StoreError` if
        its ``COMMIT`` may have been sent. Cancelling ``close`` does the same at once.
        Connections still being opened are not waited for past ``OPENING_GRACE`` (1 s):
        they are abandoned, and the calls waiting for them fail with :class:`ClosedError`.
        """
        if self._closed:
            # a close already under way on this loop: wait for it as it waits (bounded), so
            # that every close() returns only once the store is closed; cancelling this
            # wait leaves that close alone
            on = self._loops.get(asyncio.get_running_loop())
            committer = None if on is None else on.committer
            if committer is not None and not committer.done():
                await asyncio.wait((committer,), timeout=self.options.close_timeout + _ABORT_GRACE)
            return
        self._closed = True
        bound = self.options.close_timeout
        here = asyncio.get_running_loop()
        with self._loops.lock:
            for on in self._loops.others(here):
                if not on.stop_from_elsewhere(bound):
                    self._loops.leave(on)  # nothing runs there any more: drop them now
        mine = self._loops.get(here)
        if mine is None:
            return
        since = cancelling()  # what a task cleaning up after a cancellation counts
        mine.stop(bound)
        committer = mine.committer
        if committer is None:
            return
        try:
            # appends already queued are still committed, within the bound; past it the
            # abort fails what is left at once. A connection still being opened is given
            # up on after OPENING_GRACE at most (``OnLoop.stop``), its callers failing
            # with ClosedError
            await asyncio.wait((committer,), timeout=bound + _ABORT_GRACE)
        except asyncio.CancelledError:
            if cancelling() > since:
                mine.abort("close() was cancelled")
            raise
        if committer.done() and not committer.cancelled():
            committer.result()  # a bug in it is not swallowed
