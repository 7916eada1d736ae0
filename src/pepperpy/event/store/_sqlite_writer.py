"""The SQLite store's writer thread: group commit over a queue of jobs.

One thread owns the write connection. It takes every job waiting in its queue (appends
from one event-loop pass arrive together), writes them in one transaction, commits once
(one fsync with ``synchronous=FULL``), and only then resolves each caller's future on its
event loop.

Two groups overlap: a committed group's callers are answered once the next group is
written, just before that group's commit, so the event loop runs them (and they submit
their next appends) while the commit waits for the disk. A big group that finds nothing
in flight is committed in two halves to start this pipeline. See ``docs/store.md``,
"SQLite: group commit".
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from .._errors import ClosedError, StoreError
from ._sqlite_schema import (
    ALL_STATES,
    GREATEST_INDEXED_ID,
    INDEX_TAIL,
    INSERT,
    INSERT_PLAIN,
    KNOWN_IDS,
    KNOWN_INDEXED_IDS,
    START_STREAM,
    STATES,
    TAIL_IDS,
    connect,
    json_text,
    migrate,
)
from .base import (
    ANY,
    AppendResult,
    FreshRecord,
    PendingAppend,
    StreamState,
    append_result,
    plan_group,
    settle,
)

__all__ = ["Writer"]

T = TypeVar("T")

#: most appends written in one group transaction
MAX_GROUP = 1024
#: a group this big, with nothing else in flight, is committed in two halves
SPLIT_AT = 16
#: the last group's callers wait for the next group's write only if it is this short
MAX_ROWS_AHEAD = 256
#: longest a group waits for stragglers before committing (seconds)
MAX_GATHER_WAIT = 0.002
#: most stream states the writer keeps between transactions
MAX_CACHED_STREAMS = 65_536
#: up to this many streams, the writer loads them all and skips lookups of new ones
MAX_LOADED_STREAMS = 16_384
#: shortest time between two such loads (another process's commits trigger them)
RELOAD_INTERVAL = 1.0
#: the tail (events not in stream_index and id_index yet) is indexed at this many events
INDEX_EVERY = 256
#: most tail entries the writer keeps in memory to look ids up without scanning the tail
MAX_TAIL_IDS = 16_384


class _Job(NamedTuple):
    """A queued write: an append (planned together with its neighbours) or any other work."""

    work: Callable[[sqlite3.Connection], Any] | None
    append: PendingAppend | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    #: the stream whose state a non-append job changes (the writer re-reads it)
    changes: str | None


_new_job = tuple.__new__  # a _Job without NamedTuple's slower ``__new__`` (hot path)


def _settle_all(
    futures: list[asyncio.Future[Any]],
    outcomes: list[Any],
    on_commit: Callable[[int], None] | None,
    head: int | None,
) -> None:
    """On a loop: resolve futures with their outcomes, then report the commit, if any."""
    for future, outcome in zip(futures, outcomes, strict=True):
        settle(future, outcome)
    if on_commit is not None and head is not None:
        on_commit(head)


def _rows(group: list[_Job]) -> int:
    """How many events the group appends."""
    return sum(len(job.append.records) for job in group if job.append is not None)


def _insert(connection: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert event rows (all twelve columns, in order), binding few slow parameters.

    Python's sqlite3 binds ``int``, ``float``, ``str`` and ``bytearray`` directly, but
    sends ``None`` and ``bytes`` through its adapter lookup first: 1.2-1.3 us each on
    this project's VMs, against 0.1-0.4 us for the others. The usual row has three
    ``None`` (no metadata, source or subject) and ``bytes`` data, so it is written with
    those columns left out (NULL) and its data as a ``bytearray``: 4.4 us a row instead
    of 8.3 us, measured. Rows with any of the three go through the full statement.
    """
    plain: list[tuple[Any, ...]] = []
    full: list[tuple[Any, ...]] = []
    for row in rows:
        if row[7] is None and row[9] is None and row[10] is None:
            data = bytearray(row[6])
            plain.append((row[0], row[1], row[2], row[3], row[4], row[5], data, row[8], row[11]))
        else:
            full.append(row)
    if plain:
        connection.executemany(INSERT_PLAIN, plain)
    if full:
        connection.executemany(INSERT, full)


def _commit(connection: sqlite3.Connection) -> None:
    """COMMIT; should it fail, roll back what is left of the transaction and re-raise."""
    try:
        connection.execute("COMMIT")
    except BaseException:
        _roll_back(connection)
        raise


def _roll_back(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        connection.execute("ROLLBACK")


def _translate(error: BaseException) -> BaseException:
    if isinstance(error, sqlite3.Error):
        translated = StoreError(f"SQLite: {error}")
        translated.__cause__ = error
        return translated
    return error


class Writer(threading.Thread):
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
        #: where the tail starts, as of our last look (only decides when to index)
        self._indexed_before = 0
        #: (stream, id) -> (position, global position) of every event in the tail, when
        #: we can vouch for it (nobody else wrote since we looked); None when we cannot
        self._tail_ids: dict[tuple[str, str], tuple[int, int]] | None = None
        #: rows written since, not in ``_tail_ids`` yet (added when an id is looked up)
        self._tail_rows: list[list[tuple[Any, ...]]] = []
        #: the greatest id in id_index (None: empty), when ``_greatest_known``; kept and
        #: dropped with ``_tail_ids``
        self._greatest_id: str | None = None
        self._greatest_known = False
        #: the group committed last, answered only once the next one is written
        self._unanswered: tuple[list[_Job], list[Any], int | None] | None = None

    def submit(
        self,
        work: Callable[[sqlite3.Connection], T] | None,
        append: PendingAppend | None = None,
        changes: str | None = None,
    ) -> asyncio.Future[T]:
        """Queue ``work`` (or an append); ``changes`` names a stream whose state it alters."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _new_job(_Job, (work, append, loop, future, changes))
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
            settle(job.future, closed)

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
        carry: list[_Job] = []  # the second half of a group split in two
        while not stopping:
            if carry:
                group, carry = self._take(carry), []
            else:
                first = self._next()
                if first is None:
                    break
                group, stopping = self._gather(first, last_size, last_commit)
            if self._unanswered is None:
                if len(group) >= SPLIT_AT:
                    half = len(group) // 2
                    group, carry = group[:half], group[half:]
            elif _rows(group) > MAX_ROWS_AHEAD:  # a long write: answer the others first
                self._answer_previous()
            started = time.monotonic()
            try:
                if connection is None:
                    connection = connect(self._path, self._synchronous)
                    migrate(connection)
                outcomes = self._commit_group(connection, group)
                committed: int | None = self.head
            except BaseException as exc:  # the whole group failed (BEGIN or COMMIT)
                self._answer_previous()
                self._forget()
                outcomes = [_translate(exc)] * len(group)
                committed = None
            last_size, last_commit = len(group), time.monotonic() - started
            self._unanswered = (group, outcomes, committed)
        self._answer_previous()
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
                        settle, job.future, ClosedError("the event store is closed")
                    )

    def _next(self) -> list[_Job] | None:
        """The next item of the queue; the last group is answered before any wait."""
        if self._unanswered is not None:
            try:
                return self.jobs.get_nowait()
            except queue.Empty:
                self._answer_previous()
        return self.jobs.get()

    def _take(self, carry: list[_Job]) -> list[_Job]:
        """``carry`` and whatever else is queued (no waiting); a stop is queued again."""
        group = list(carry)
        while len(group) < MAX_GROUP:
            try:
                more = self.jobs.get_nowait()
            except queue.Empty:
                break
            if more is None:
                self.jobs.put(None)
                break
            group.extend(more)
        return group

    def _answer_previous(self) -> None:
        """Answer the group committed last, if not done yet (its commit is durable)."""
        unanswered, self._unanswered = self._unanswered, None
        if unanswered is not None:
            self._answer(*unanswered)

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
        if self._unanswered is not None:  # the stragglers may be the unanswered callers
            last_size = 0
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
        self._forget_tail()

    def _forget_tail(self) -> None:
        self._tail_ids = None
        self._tail_rows = []
        self._greatest_known = False

    def _wrote(self, rows: list[tuple[Any, ...]]) -> None:
        """Note rows just written (global position, stream, position, id, ...)."""
        if self._tail_ids is not None:
            self._tail_rows.append(rows)

    def _tail(
        self, connection: sqlite3.Connection
    ) -> dict[tuple[str, str], tuple[int, int]] | None:
        """Where each (stream, id) of the tail is: kept up to date, read once if unknown.

        Looking ids up here instead of scanning the tail in SQL saves most of an append's
        idempotency check when it brings its own ids (``Event`` objects). None: the tail
        is too long to keep (another writer left it so); scan it in SQL.
        """
        tail = self._tail_ids
        if tail is None:
            rows = connection.execute(f"{TAIL_IDS} LIMIT {MAX_TAIL_IDS + 1}").fetchall()
            if len(rows) > MAX_TAIL_IDS:
                return None
            self._tail_rows = []
            tail = self._tail_ids = {
                (stream, event_id): (position, global_position)
                for stream, event_id, position, global_position in rows
            }
            return tail
        for written in self._tail_rows:
            for row in written:
                tail[(row[1], row[3])] = (row[2], row[0])
        self._tail_rows = []
        return tail

    def _greatest_indexed_id(self, connection: sqlite3.Connection) -> str | None:
        """The greatest id in id_index (None: it is empty), read once per indexing.

        An id greater than it is not in id_index: the UUIDv7 of an ``Event`` created since
        the tail was last indexed is, so its append needs no lookup in SQL at all.
        """
        if not self._greatest_known:
            (self._greatest_id,) = connection.execute(GREATEST_INDEXED_ID).fetchone()
            self._greatest_known = True
        return self._greatest_id

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
        self._forget_tail()
        (last,) = connection.execute("SELECT max(global_position) FROM events").fetchone()
        self.head = 0 if last is None else last + 1
        (self._indexed_before,) = connection.execute(
            "SELECT indexed_before FROM index_state"
        ).fetchone()
        now = time.monotonic()
        if elsewhere and now - self._loaded_at < RELOAD_INTERVAL:
            return
        self._loaded_at = now
        (count,) = connection.execute("SELECT count(*) FROM streams").fetchone()
        if count <= MAX_LOADED_STREAMS:
            self._read_states(connection, None)
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
                self._index_tail(connection)
            except BaseException as exc:
                _roll_back(connection)  # some errors end the transaction themselves
                self.head = head
                self._forget()
                if not isinstance(exc, Exception):
                    raise
            else:
                self._answer_previous()
                _commit(connection)
                return outcomes
        return self._commit_carefully(connection, group)

    def _index_tail(self, connection: sqlite3.Connection) -> None:
        """In the group's transaction: move a long enough tail into the index tables.

        Indexing events in bulk, rather than one index entry per event as it is written,
        is what keeps a commit small: the entries of a tail that shares index pages
        (several events of a stream, streams with neighbouring names, ids minted close
        together) are written with each page once. Readers scan the tail instead.
        """
        if self.head - self._indexed_before < INDEX_EVERY:
            return
        (start,) = connection.execute("SELECT indexed_before FROM index_state").fetchone()
        for statement in INDEX_TAIL:
            connection.execute(statement, (start,))
        connection.execute("UPDATE index_state SET indexed_before = ?", (self.head,))
        self._indexed_before = self.head
        self._tail_ids, self._tail_rows = {}, []  # the tail is empty now
        self._greatest_known = False

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
            self._index_tail(connection)
        except BaseException:
            _roll_back(connection)
            raise
        self._answer_previous()
        _commit(connection)
        return outcomes

    def _read_states(self, connection: sqlite3.Connection, names: list[str] | None) -> None:
        """Read the named streams' states (None: every stream's) into the cache."""
        rows = (
            connection.execute(ALL_STATES)
            if names is None
            else connection.execute(STATES, (json_text(names),))
        )
        for name, next_position, first_visible, deleted in rows:
            self._states[name] = StreamState(next_position, first_visible, bool(deleted))

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
            self._read_states(connection, [job.changes])
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
        fresh = self._write_fresh(connection, appends)
        if fresh is not None:
            return fresh
        states = self._states
        if not self._complete:
            missing = {append.stream for append in appends} - states.keys()
            if missing:
                self._read_states(connection, sorted(missing))
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
            tail = self._tail(connection)
            lookup, query = pairs, KNOWN_IDS
            if tail is not None:
                greatest = self._greatest_indexed_id(connection)
                query = KNOWN_INDEXED_IDS
                lookup = [] if greatest is None else [pair for pair in pairs if pair[1] <= greatest]
            if lookup:
                for stream, event_id, position, global_position in connection.execute(
                    query, (json_text(lookup),)
                ):
                    known[(stream, event_id)] = (position, global_position)
            if tail is not None:
                for pair in pairs:
                    found = tail.get(pair)
                    if found is not None and found[0] >= states[pair[0]].first_visible:
                        known[pair] = found
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
            rows = [
                (first + offset + index, stream, position + index, *record, recorded_at)
                for offset, stream, position, records in plan.spans
                for index, record in enumerate(records)
            ]
            _insert(connection, rows)
            self._wrote(rows)
            moved = plan.next_positions
            started = {(name,) for name in starting if name in moved}
            if started:
                connection.executemany(START_STREAM, started)
            self.head = first + plan.count
        return plan.outcomes(first)

    def _write_fresh(
        self, connection: sqlite3.Connection, appends: list[PendingAppend]
    ) -> list[AppendResult | BaseException] | None:
        """Write the usual group in one pass: None when it is not one, nothing written.

        The usual group holds appends with ``ANY`` to streams whose state is known and
        that are not deleted, of records that cannot be stored yet: ids the store has
        just minted, or ids that are neither in the tail (known in memory) nor at or
        below the greatest id in id_index (a new ``Event``'s UUIDv7), each once in the
        group. Nothing can fail then, so :func:`plan_group` has nothing to decide: each
        append goes at its stream's next position, and no id needs looking up in SQL.
        """
        states = self._states
        complete = self._complete
        head = self.head
        recorded_at = time.time_ns() // 1000
        rows: list[tuple[Any, ...]] = []
        ends: list[tuple[int, int]] = []  # per append: its last (position, global position)
        moved: dict[str, int] = {}
        started: list[tuple[str]] = []
        tail: dict[tuple[str, str], tuple[int, int]] | None = None
        greatest: str | None = None
        brought: set[tuple[str, str]] = set()  # the group's (stream, id) given by callers
        for stream, records, expected in appends:
            if expected is not ANY:
                return None
            position = moved.get(stream)
            if position is None:
                state = states.get(stream)
                if state is None:
                    if not complete:  # it may exist: the general path looks it up
                        return None
                    position = 0
                elif state.deleted:
                    return None
                else:
                    position = state.next_position
                if position == 0:
                    started.append((stream,))
            for record in records:
                if record.__class__ is not FreshRecord:
                    if tail is None:
                        tail = self._tail(connection)
                        if tail is None:
                            return None
                        greatest = self._greatest_indexed_id(connection)
                    key = (stream, record.id)
                    if (greatest is not None and key[1] <= greatest) or key in tail:
                        return None  # it may be stored: the general path looks it up
                    if key in brought:
                        return None  # twice in the group: the general path decides
                    brought.add(key)
                rows.append((head, stream, position, *record, recorded_at))
                head += 1
                position += 1
            moved[stream] = position
            ends.append((position - 1, head - 1))
        _insert(connection, rows)
        self._wrote(rows)
        if started:
            connection.executemany(START_STREAM, started)
        for stream, position in moved.items():
            state = states.get(stream)
            if state is None:
                states[stream] = StreamState(position)
            else:
                state.next_position = position
        self.head = head
        return [append_result(position, global_position) for position, global_position in ends]
