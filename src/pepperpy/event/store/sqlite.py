"""The SQLite backend: an embedded, durable store in one file (stdlib ``sqlite3``).

Writes go through one writer thread that practises *group commit*: it drains every
append waiting in its queue, writes them in one transaction (each caller's batch inside
its own SAVEPOINT, so one caller's :class:`ConcurrencyError` does not fail the others),
commits once, and only then resolves each caller's future. A durable commit costs one
fsync (WAL, ``synchronous=FULL``), so twenty concurrent appenders pay for one fsync
instead of twenty. Reads run on a small pool of separate connections (WAL lets them
proceed while the writer writes); nothing blocking ever runs on the event loop.

Global positions are assigned inside the write transaction, and SQLite has a single
writer, so positions become visible in order: a subscription that has read position
``n`` can never later find a new event below ``n``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from .._errors import ClosedError, StoreError
from .base import (
    AppendResult,
    ExpectedVersion,
    FreshRecord,
    LogPage,
    NewRecord,
    PendingAppend,
    Row,
    SnapshotRow,
    StoreBackend,
    StreamState,
    log_page,
    plan_group,
)

__all__ = ["SQLiteBackend"]

T = TypeVar("T")

#: how long an idle subscription waits before re-reading (catches other processes' writes)
POLL_INTERVAL = 0.5
#: most appends written in one group transaction
MAX_GROUP = 1024
#: longest a group waits for stragglers before committing (seconds)
MAX_GATHER_WAIT = 0.002
#: most stream states the writer keeps between transactions
MAX_CACHED_STREAMS = 65_536
#: up to this many streams, the writer loads them all and skips lookups of new ones
MAX_LOADED_STREAMS = 16_384
#: shortest time between two such loads (another process's commits trigger them)
RELOAD_INTERVAL = 1.0
_READERS = 2
_BUSY_TIMEOUT_MS = 10_000

_COLUMNS = (
    "global_position, stream, position, id, type, version, data, metadata, "
    "timestamp, source, subject, recorded_at"
)

#: schema migrations, applied in order; ``PRAGMA user_version`` records how many ran
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE streams (
        name TEXT PRIMARY KEY,
        next_position INTEGER NOT NULL,
        first_visible INTEGER NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE events (
        global_position INTEGER PRIMARY KEY,
        stream TEXT NOT NULL,
        position INTEGER NOT NULL,
        id TEXT NOT NULL,
        type TEXT NOT NULL,
        version INTEGER NOT NULL,
        data BLOB NOT NULL,
        metadata BLOB,
        timestamp INTEGER NOT NULL,
        source TEXT,
        subject TEXT,
        recorded_at INTEGER NOT NULL,
        UNIQUE (stream, position)
    );
    CREATE INDEX events_stream_id ON events (stream, id);
    CREATE TABLE snapshots (
        stream TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        state BLOB NOT NULL,
        taken_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # ids are time-ordered (UUIDv7), so an index on the id alone grows at its right edge:
    # a group commit dirties one of its pages instead of one per stream touched
    """
    DROP INDEX events_stream_id;
    CREATE INDEX events_id ON events (id);
    """,
    # a stream's counter is max(position) + 1, read from the (stream, position) index: an
    # append to an existing stream then writes no streams row (one page fewer per stream
    # touched by a commit); the row is written when a stream starts or restarts
    """
    CREATE TABLE streams_v3 (
        name TEXT PRIMARY KEY,
        first_visible INTEGER NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    INSERT INTO streams_v3 (name, first_visible, deleted)
        SELECT name, first_visible, deleted FROM streams;
    DROP TABLE streams;
    ALTER TABLE streams_v3 RENAME TO streams;
    """,
)


# the 13th column says whether the row is visible (its stream was not deleted past it)
_READ_ALL = (
    f"SELECT {', '.join('e.' + name for name in _COLUMNS.split(', '))}, "
    "e.position >= s.first_visible FROM events e JOIN streams s ON s.name = e.stream "
    "WHERE e.global_position >= ? ORDER BY e.global_position LIMIT ?"
)


_INSERT = f"INSERT INTO events ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
#: a stream (re)started by an append: the only appends that write a streams row
_START_STREAM = "INSERT INTO streams (name) VALUES (?) ON CONFLICT (name) DO UPDATE SET deleted = 0"
#: the next position of stream ``s``: one step down the (stream, position) index
_NEXT_POSITION = "coalesce((SELECT max(e.position) + 1 FROM events e WHERE e.stream = s.name), 0)"
# a group's lookups take their keys as one JSON array, whatever the group's size
_ALL_STATES = f"SELECT s.name, {_NEXT_POSITION}, s.first_visible, s.deleted FROM streams s"
_STATES = f"{_ALL_STATES} WHERE s.name IN (SELECT value FROM json_each(?))"
_KNOWN_IDS = (
    "SELECT e.stream, e.id, e.position, e.global_position FROM json_each(?) AS k "
    "JOIN events e INDEXED BY events_id ON e.id = json_extract(k.value, '$[1]') "
    "AND e.stream = json_extract(k.value, '$[0]') "
    "JOIN streams s ON s.name = e.stream WHERE e.position >= s.first_visible"
)


_new_tuple = tuple.__new__


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    return connection


def _migrate(connection: sqlite3.Connection) -> None:
    connection.execute("BEGIN IMMEDIATE")  # one process at a time migrates
    try:
        (current,) = connection.execute("PRAGMA user_version").fetchone()
        for number, script in enumerate(_MIGRATIONS[current:], start=current + 1):
            for statement in script.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


class _Job:
    """A queued write: an append (planned together with its neighbours) or any other work."""

    __slots__ = ("append", "changes", "future", "loop", "work")

    def __init__(
        self,
        work: Callable[[sqlite3.Connection], Any] | None,
        append: PendingAppend | None,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        changes: str | None = None,
    ) -> None:
        self.work = work
        self.append = append
        self.loop = loop
        self.future = future
        #: the stream whose state a non-append job changes (the writer re-reads it)
        self.changes = changes


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    """Resolve ``future`` with ``outcome``: a result, or the exception a job failed with."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _settle_all(
    futures: list[asyncio.Future[Any]],
    outcomes: list[Any],
    on_commit: Callable[[int], None] | None,
    head: int | None,
) -> None:
    """On a loop: resolve futures with their outcomes, then report the commit, if any."""
    for future, outcome in zip(futures, outcomes, strict=True):
        if not future.done():
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
    if on_commit is not None and head is not None:
        on_commit(head)


def _translate(error: BaseException) -> BaseException:
    if isinstance(error, sqlite3.Error):
        translated = StoreError(f"SQLite: {error}")
        translated.__cause__ = error
        return translated
    return error


class _Writer(threading.Thread):
    """The one thread that writes: group commit over a queue of jobs.

    Jobs submitted from one event loop during one pass of that loop travel together: the
    first schedules a flush for the end of the pass, so a burst of appends costs the
    writer one wake-up and reaches it as one group.
    """

    def __init__(
        self,
        path: str,
        synchronous: str,
        loop: asyncio.AbstractEventLoop,
        on_commit: Callable[[int], None],
    ) -> None:
        super().__init__(name="pepperpy-sqlite-writer", daemon=True)
        self._path = path
        self._synchronous = synchronous
        #: called on ``loop`` after each durable commit, with the next global position
        self._on_commit = (loop, on_commit)
        self.jobs: queue.SimpleQueue[list[_Job] | None] = queue.SimpleQueue()
        self._batch: list[_Job] | None = None
        self._batch_loop: asyncio.AbstractEventLoop | None = None
        self._stop_lock = threading.Lock()
        self._stopped = False
        #: next global position, valid inside a write transaction
        self.head = 0
        #: the streams' states as of our last commit (valid while nobody else writes)
        self._states: dict[str, StreamState] = {}
        self._complete = False  # the cache holds every stream there is
        self._data_version: int | None = None
        self._loaded_at = -RELOAD_INTERVAL

    def submit(
        self,
        work: Callable[[sqlite3.Connection], T] | None,
        append: PendingAppend | None = None,
        changes: str | None = None,
    ) -> asyncio.Future[T]:
        """Queue ``work`` (or an append); ``changes`` names a stream whose state it alters."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(work, append, loop, future, changes)
        if self._batch_loop is None:
            self._batch_loop = loop
        if loop is not self._batch_loop:  # another loop (thread): no batching across loops
            with self._stop_lock:
                if not self._stopped:
                    self.jobs.put([job])
                    return future
            future.set_exception(ClosedError("the event store is closed"))
            return future
        batch = self._batch
        if batch is None:
            batch = self._batch = []
            loop.call_soon(self.flush)
        batch.append(job)
        return future

    def flush(self) -> None:
        """Hand the jobs batched on the loop to the writer (runs on that loop)."""
        batch, self._batch = self._batch, None
        if not batch:
            return
        with self._stop_lock:
            if not self._stopped:
                self.jobs.put(batch)
                return
        closed = ClosedError("the event store is closed")
        for job in batch:  # stopped meanwhile (from another thread): never leave one hanging
            _settle(job.future, closed)

    def stop(self) -> None:
        """Finish what is queued, then end; later jobs fail with ClosedError."""
        try:
            on_batch_loop = asyncio.get_running_loop() is self._batch_loop
        except RuntimeError:
            on_batch_loop = False
        if on_batch_loop:
            self.flush()  # this pass's appends still go in
        with self._stop_lock:
            self._stopped = True
            self.jobs.put(None)

    def run(self) -> None:
        connection: sqlite3.Connection | None = None
        stopping = False
        last_size, last_commit = 1, 0.0
        while not stopping:
            first = self.jobs.get()
            if first is None:
                break
            group, stopping = self._gather(first, last_size, last_commit)
            started = time.monotonic()
            try:
                if connection is None:
                    connection = _connect(self._path, self._synchronous)
                    _migrate(connection)
                outcomes = self._commit_group(connection, group)
                committed: int | None = self.head
            except BaseException as exc:  # the whole group failed (BEGIN or COMMIT)
                self._forget()
                outcomes = [_translate(exc)] * len(group)
                committed = None
            last_size, last_commit = len(group), time.monotonic() - started
            self._answer(group, outcomes, committed)
        if connection is not None:
            connection.close()
        while True:  # anything queued after stop() is refused, never left hanging
            try:
                late = self.jobs.get_nowait()
            except queue.Empty:
                break
            for job in late or ():
                with contextlib.suppress(RuntimeError):
                    job.loop.call_soon_threadsafe(
                        _settle, job.future, ClosedError("the event store is closed")
                    )

    def _answer(self, group: list[_Job], outcomes: list[Any], committed: int | None) -> None:
        """Resolve the group's futures and report the commit: one wake-up per event loop."""
        notify_loop, on_commit = self._on_commit
        by_loop: dict[asyncio.AbstractEventLoop, tuple[list[Any], list[Any]]] = {}
        loop = group[0].loop
        if all(job.loop is loop for job in group):
            by_loop[loop] = ([job.future for job in group], outcomes)
        else:
            for job, outcome in zip(group, outcomes, strict=True):
                futures, answers = by_loop.setdefault(job.loop, ([], []))
                futures.append(job.future)
                answers.append(outcome)
        if committed is not None and notify_loop not in by_loop:
            by_loop[notify_loop] = ([], [])
        for loop, (futures, answers) in by_loop.items():
            wake = on_commit if committed is not None and loop is notify_loop else None
            with contextlib.suppress(RuntimeError):  # that loop is gone
                loop.call_soon_threadsafe(_settle_all, futures, answers, wake, committed)

    def _gather(
        self, first: list[_Job], last_size: int, last_commit: float
    ) -> tuple[list[_Job], bool]:
        """Collect a group: what is queued, and briefly wait for the previous group's size.

        Callers whose appends were just committed come back within microseconds; starting
        the next commit with only the first of them would split every later group in
        two. The wait is bounded by a fraction of the last commit's duration (the idea of
        PostgreSQL's ``commit_delay``), and a lone sequential caller never waits.
        """
        group = list(first)
        deadline = time.monotonic() + min(MAX_GATHER_WAIT, last_commit / 2)
        while len(group) < MAX_GROUP:
            try:
                more = self.jobs.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if len(group) >= last_size or remaining <= 0:
                    break
                try:
                    more = self.jobs.get(timeout=remaining)
                except queue.Empty:
                    break
            if more is None:
                return group, True
            group.extend(more)
        return group, False

    def _forget(self) -> None:
        """Drop what we know of the streams: read it again in the next transaction."""
        self._states.clear()
        self._complete = False
        self._data_version = None

    def _revalidate(self, connection: sqlite3.Connection) -> None:
        """At the start of a write transaction: make head and the stream cache current.

        ``PRAGMA data_version`` changes when another connection committed since we last
        looked; only then can they be stale. With no more than ``MAX_LOADED_STREAMS``
        streams the cache is loaded whole (after others' commits at most once a second),
        so a stream missing from it is known not to exist and needs no lookup.
        """
        (version,) = connection.execute("PRAGMA data_version").fetchone()
        if version == self._data_version and len(self._states) <= MAX_CACHED_STREAMS:
            return
        elsewhere = self._data_version is not None  # None: we dropped the cache ourselves
        self._data_version = version
        self._states.clear()
        self._complete = False
        (last,) = connection.execute("SELECT max(global_position) FROM events").fetchone()
        self.head = 0 if last is None else last + 1
        now = time.monotonic()
        if elsewhere and now - self._loaded_at < RELOAD_INTERVAL:
            return
        self._loaded_at = now
        (count,) = connection.execute("SELECT count(*) FROM streams").fetchone()
        if count <= MAX_LOADED_STREAMS:
            for name, next_position, first_visible, deleted in connection.execute(_ALL_STATES):
                self._states[name] = StreamState(next_position, first_visible, bool(deleted))
            self._complete = True

    def _commit_group(self, connection: sqlite3.Connection, group: list[_Job]) -> list[Any]:
        appends = [job.append for job in group if job.append is not None]
        if len(appends) == len(group):
            # the usual group, appends only: no savepoint; should the write fail, the
            # transaction is rolled back and the group written again the careful way
            connection.execute("BEGIN IMMEDIATE")
            head = self.head
            try:
                self._revalidate(connection)
                head = self.head
                outcomes: list[Any] = self._write_appends(connection, appends)
            except BaseException as exc:
                connection.execute("ROLLBACK")
                self.head = head
                self._forget()
                if not isinstance(exc, Exception):
                    raise
            else:
                try:
                    connection.execute("COMMIT")
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
                return outcomes
        return self._commit_carefully(connection, group)

    def _commit_carefully(self, connection: sqlite3.Connection, group: list[_Job]) -> list[Any]:
        """Commit a group with each run of appends and each other job in a savepoint."""
        connection.execute("BEGIN IMMEDIATE")
        try:
            self._revalidate(connection)
            outcomes = []
            index = 0
            while index < len(group):
                if group[index].append is None:
                    outcomes.append(self._run_alone(connection, group[index]))
                    index += 1
                    continue
                end = index
                while end < len(group) and group[end].append is not None:
                    end += 1
                appends = [job.append for job in group[index:end] if job.append is not None]
                outcomes.extend(self._append_run(connection, appends))
                index = end
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return outcomes

    def _run_alone(self, connection: sqlite3.Connection, job: _Job) -> Any:
        """Run one non-append job inside its own savepoint."""
        assert job.work is not None
        connection.execute("SAVEPOINT job")
        try:
            result = job.work(connection)
        except BaseException as exc:
            connection.execute("ROLLBACK TO job")
            connection.execute("RELEASE job")
            return _translate(exc)
        connection.execute("RELEASE job")
        if job.changes is not None:  # a delete: what we know of that stream is stale
            self._states.pop(job.changes, None)
            for name, next_position, first_visible, deleted in connection.execute(
                _STATES, (_json_text([job.changes]),)
            ):
                self._states[name] = StreamState(next_position, first_visible, bool(deleted))
        return result

    def _append_run(
        self, connection: sqlite3.Connection, appends: list[PendingAppend]
    ) -> list[AppendResult | BaseException]:
        """Write consecutive appends with a few statements for all of them.

        Every expectation and idempotency check is decided in Python by
        :func:`plan_group` before anything is written, so one caller's
        ``ConcurrencyError`` never touches the others. Should the write itself fail, the
        run is rolled back to its savepoint and each append retried alone, so only the
        culprit fails.
        """
        head = self.head
        connection.execute("SAVEPOINT run")
        try:
            outcomes = self._write_appends(connection, appends)
        except Exception as exc:
            connection.execute("ROLLBACK TO run")
            connection.execute("RELEASE run")
            self.head = head
            self._forget()  # the plan changed them: read them again
            if len(appends) == 1:
                return [_translate(exc)]
            return [outcome for one in appends for outcome in self._append_run(connection, [one])]
        connection.execute("RELEASE run")
        return outcomes

    def _write_appends(
        self, connection: sqlite3.Connection, appends: list[PendingAppend]
    ) -> list[AppendResult | BaseException]:
        states = self._states
        if not self._complete:
            missing = {append.stream for append in appends} - states.keys()
            if missing:
                for name, next_position, first_visible, deleted in connection.execute(
                    _STATES, (_json_text(sorted(missing)),)
                ):
                    states[name] = StreamState(next_position, first_visible, bool(deleted))
        # ids the store has just minted cannot be stored yet: look up only the others
        pairs = [
            (append.stream, record.id)
            for append in appends
            for record in append.records
            if record.__class__ is not FreshRecord
            and (state := states.get(append.stream)) is not None
            and state.next_position > state.first_visible
        ]
        known: dict[tuple[str, str], tuple[int, int]] = {}
        if pairs:
            for stream, event_id, position, global_position in connection.execute(
                _KNOWN_IDS, (_json_text(pairs),)
            ):
                known[(stream, event_id)] = (position, global_position)
        # streams without a row, or deleted: an append (re)starts them and writes their row
        starting = [
            append.stream
            for append in appends
            if (state := states.get(append.stream)) is None
            or state.next_position == 0
            or state.deleted
        ]
        plan = plan_group(appends, states, known)
        first = self.head
        if plan.count:
            recorded_at = time.time_ns() // 1000
            connection.executemany(
                _INSERT,
                [
                    (first + offset + index, stream, position + index, *record, recorded_at)
                    for offset, stream, position, records in plan.spans
                    for index, record in enumerate(records)
                ],
            )
            moved = plan.next_positions
            started = {(name,) for name in starting if name in moved}
            if started:
                connection.executemany(_START_STREAM, started)
            self.head = first + plan.count
        return plan.outcomes(first)


class SQLiteBackend(StoreBackend):
    """Events in one SQLite file: WAL, ``synchronous=FULL`` and group commit."""

    def __init__(self, path: str, *, synchronous: str = "FULL") -> None:
        if synchronous.upper() not in ("FULL", "EXTRA", "NORMAL", "OFF"):
            raise ValueError(f"unknown SQLite synchronous mode {synchronous!r}")
        self.path = path
        self._synchronous = synchronous.upper()
        self._writer: _Writer | None = None
        self._ready: asyncio.Future[None] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._head = 0  # next global position, as far as this process has committed
        self._open = False  # the writer runs and the schema is in place
        self._closed = False

    # -- plumbing ---------------------------------------------------------------------

    async def _write(
        self,
        work: Callable[[sqlite3.Connection], T] | None,
        append: PendingAppend | None = None,
        changes: str | None = None,
    ) -> T:
        if self._closed:
            raise ClosedError("the event store is closed")
        if self._writer is None:
            self._loop = asyncio.get_running_loop()
            self._writer = _Writer(self.path, self._synchronous, self._loop, self._wake)
            self._writer.start()
            self._ready = self._writer.submit(lambda connection: None)
        ready = self._ready
        assert ready is not None
        if not ready.done() or ready.exception() is not None:
            await asyncio.shield(ready)  # the first callers wait for the schema
            if self._closed:
                raise ClosedError("the event store is closed")
        self._open = True
        return await self._writer.submit(work, append, changes)

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._ready is None or not self._ready.done():
            await self._write(lambda connection: None)  # the schema exists from here on
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_READERS, thread_name_prefix="pepperpy-sqlite-read")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run_read, work)

    def _run_read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        try:
            if connection is None:
                connection = _connect(self.path, self._synchronous)
                connection.execute("PRAGMA query_only = ON")
                self._local.connection = connection
                with self._connections_lock:
                    self._connections.append(connection)
            return work(connection)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite: {exc}") from exc

    def _wake(self, head: int = 0) -> None:
        self._head = max(self._head, head)
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    # -- the contract -----------------------------------------------------------------

    def append(
        self, stream: str, records: Sequence[NewRecord], expected_version: ExpectedVersion
    ) -> Awaitable[AppendResult]:
        append = _new_tuple(PendingAppend, (stream, records, expected_version))
        if self._open and not self._closed:  # the hot path: straight to the writer's queue
            assert self._writer is not None
            return self._writer.submit(None, append)
        return self._write(None, append)

    async def read_stream(
        self, stream: str, start: int | None, backwards: bool, limit: int
    ) -> list[Row]:
        if backwards:
            sql = (
                f"SELECT {_COLUMNS} FROM events WHERE stream = ? AND position <= ? "
                "AND position >= (SELECT first_visible FROM streams WHERE name = ?) "
                "ORDER BY position DESC LIMIT ?"
            )
            begin = (1 << 62) if start is None else start
        else:
            sql = (
                f"SELECT {_COLUMNS} FROM events WHERE stream = ? AND position >= ? "
                "AND position >= (SELECT first_visible FROM streams WHERE name = ?) "
                "ORDER BY position LIMIT ?"
            )
            begin = 0 if start is None else start
        return await self._read(
            lambda connection: connection.execute(sql, (stream, begin, stream, limit)).fetchall()
        )

    async def read_all(self, from_position: int, limit: int) -> LogPage:
        scanned = await self._read(
            lambda connection: connection.execute(_READ_ALL, (from_position, limit)).fetchall()
        )
        return log_page(scanned, from_position, limit)

    async def stream_state(self, stream: str) -> StreamState | None:
        row = await self._read(
            lambda connection: connection.execute(
                f"SELECT {_NEXT_POSITION}, s.first_visible, s.deleted FROM streams s "
                "WHERE s.name = ?",
                (stream,),
            ).fetchone()
        )
        return None if row is None else StreamState(row[0], row[1], bool(row[2]))

    async def stream_names(self) -> list[str]:
        rows = await self._read(
            lambda connection: connection.execute(
                "SELECT s.name FROM streams s WHERE s.deleted = 0 AND EXISTS (SELECT 1 FROM "
                "events e WHERE e.stream = s.name AND e.position >= s.first_visible) "
                "ORDER BY s.name"
            ).fetchall()
        )
        return [name for (name,) in rows]

    async def delete_stream(self, stream: str) -> bool:
        def work(connection: sqlite3.Connection) -> bool:
            connection.execute("DELETE FROM snapshots WHERE stream = ?", (stream,))
            cursor = connection.execute(
                f"UPDATE streams AS s SET first_visible = {_NEXT_POSITION}, deleted = 1 "
                "WHERE s.name = ? AND s.deleted = 0 AND EXISTS (SELECT 1 FROM events e "
                "WHERE e.stream = s.name AND e.position >= s.first_visible)",
                (stream,),
            )
            return cursor.rowcount > 0

        return await self._write(work, changes=stream)

    async def save_snapshot(self, stream: str, snapshot: SnapshotRow) -> None:
        await self._write(
            lambda connection: connection.execute(
                "INSERT OR REPLACE INTO snapshots (stream, version, state, taken_at) "
                "VALUES (?, ?, ?, ?)",
                (stream, *snapshot),
            )
        )

    async def load_snapshot(self, stream: str) -> SnapshotRow | None:
        row = await self._read(
            lambda connection: connection.execute(
                "SELECT version, state, taken_at FROM snapshots WHERE stream = ?", (stream,)
            ).fetchone()
        )
        return None if row is None else SnapshotRow(*row)

    async def wait(self, position: int) -> None:
        """Wake on this process's commits at once, on other processes' within a poll."""
        if self._closed or self._head > position:
            return
        if self._changed is None:
            self._changed = asyncio.Event()
        try:
            await asyncio.wait_for(self._changed.wait(), POLL_INTERVAL)
        except TimeoutError:
            pass

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake()
        writer, pool = self._writer, self._pool
        if writer is not None:
            writer.stop()
            await asyncio.to_thread(writer.join)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=False)
            await asyncio.to_thread(pool.shutdown, True)
        with self._connections_lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
