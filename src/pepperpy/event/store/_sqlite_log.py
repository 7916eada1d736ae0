"""What the SQLite writer knows of the log between transactions, and how it writes appends.

The writer thread (``_sqlite_writer``) owns one :class:`LogWriter` and calls it inside its
write transactions. Between transactions the log writer keeps the head of the log, the
streams' states, and where each event of the unindexed tail sits, trusting them only while
no other connection has committed (``PRAGMA data_version``). See ``docs/store.md``,
"SQLite: group commit" and "SQLite: the indexes are written in bulk".
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

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
    SUMMARIZE,
    TAIL_IDS,
    json_text,
)
from .base import (
    ANY,
    FreshRecord,
    MultiAppend,
    PendingAppend,
    StreamState,
    append_result,
    parts,
    plan_group,
)

__all__ = ["INDEX_EVERY", "LogWriter", "TransactionLost", "insert_rows"]

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


def insert_rows(connection: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
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


class TransactionLost(Exception):
    """SQLite rolled back the whole transaction of a group (``error``: a full disk, an I/O
    error met in the middle of a statement), so no savepoint is left to roll back to.

    Raised out of the group's transaction for the writer, which writes the group's jobs
    again, each in a transaction of its own, so that only the culprit fails."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class LogWriter:
    """The writer's knowledge of the log, and the appends it writes with it.

    It is used by the writer thread only; the methods that take a connection run inside
    the write transaction their caller opened.
    """

    def __init__(self) -> None:
        #: next global position, valid inside a write transaction
        self.head = 0
        #: the streams' states as of our last commit (valid while nobody else writes)
        self.states: dict[str, StreamState] = {}
        self.complete = False  # the cache holds every stream there is
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

    def reread(self, connection: sqlite3.Connection, stream: str) -> None:
        """Read one stream's state again (another job, a delete, changed it)."""
        self.states.pop(stream, None)
        self.read_states(connection, [stream])

    def forget(self) -> None:
        """Drop what we know of the streams: read it again in the next transaction."""
        self.states.clear()
        self.complete = False
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

    def revalidate(self, connection: sqlite3.Connection) -> None:
        """At the start of a write transaction: make head and the stream cache current.

        ``PRAGMA data_version`` changes when another connection committed since we last
        looked; only then can they be stale. With no more than ``MAX_LOADED_STREAMS``
        streams the cache is loaded whole (after others' commits at most once a second),
        so a stream missing from it is known not to exist and needs no lookup.
        """
        (version,) = connection.execute("PRAGMA data_version").fetchone()
        if version == self._data_version and len(self.states) <= MAX_CACHED_STREAMS:
            return
        elsewhere = self._data_version is not None  # None: we dropped the cache ourselves
        self._data_version = version
        self.states.clear()
        self.complete = False
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
            self.read_states(connection, None)
            self.complete = True

    def index_tail(self, connection: sqlite3.Connection) -> None:
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

    def summarize(self, connection: sqlite3.Connection, since: int) -> None:
        """In the group's transaction: widen time_blocks by the rows written from global
        position ``since`` (the head when the transaction began) on: one statement per
        group commit, none when nothing was written (see ``_time_blocks``)."""
        if self.head > since:
            connection.execute(SUMMARIZE, (since,))

    def read_states(self, connection: sqlite3.Connection, names: list[str] | None) -> None:
        """Read the named streams' states (None: every stream's) into the cache."""
        rows = (
            connection.execute(ALL_STATES)
            if names is None
            else connection.execute(STATES, (json_text(names),))
        )
        for name, next_position, first_visible, deleted in rows:
            self.states[name] = StreamState(next_position, first_visible, bool(deleted))

    def append_run(
        self, connection: sqlite3.Connection, appends: list[PendingAppend | MultiAppend]
    ) -> list[Any]:
        """Write consecutive appends with a few statements for all of them.

        Every expectation and idempotency check is decided in Python by
        :func:`plan_group` before anything is written, so one caller's
        ``ConcurrencyError`` never touches the others. Should the write itself fail, the
        run is rolled back to its savepoint and each append retried alone, so only the
        culprit fails: its outcome is the error as raised (a ``sqlite3`` error is named,
        with the file and its cause, by the writer, which knows the file). An error that
        made SQLite roll back the whole transaction (a full disk or an I/O error met in
        the middle of a statement) leaves no savepoint to go back to: it is raised as
        :class:`TransactionLost`, for the writer to retry the group's jobs one by one.
        """
        head = self.head
        connection.execute("SAVEPOINT run")
        try:
            outcomes = self.write_appends(connection, appends)
        except Exception as exc:
            if not connection.in_transaction:  # SQLite rolled back the whole transaction
                self.head = head
                self.forget()
                raise TransactionLost(exc) from exc
            connection.execute("ROLLBACK TO run")
            connection.execute("RELEASE run")
            self.head = head
            self.forget()  # the plan changed them: read them again
            if len(appends) == 1:
                return [exc]
            return [outcome for one in appends for outcome in self.append_run(connection, [one])]
        connection.execute("RELEASE run")
        return outcomes

    def write_appends(
        self, connection: sqlite3.Connection, appends: list[PendingAppend | MultiAppend]
    ) -> list[Any]:
        """Write a run of appends: each one's :class:`AppendResult` or exception (a
        :class:`MultiAppend`'s list of results), decided by :func:`plan_group`."""
        fresh = self._write_fresh(connection, appends)
        if fresh is not None:
            return fresh
        singles = parts(appends)
        states = self.states
        if not self.complete:
            missing = {append.stream for append in singles} - states.keys()
            if missing:
                self.read_states(connection, sorted(missing))
        # ids the store has just minted cannot be stored yet: look up only the others
        pairs = [
            (append.stream, record.id)
            for append in singles
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
            for append in singles
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
            insert_rows(connection, rows)
            self._wrote(rows)
            moved = plan.next_positions
            started = {(name,) for name in starting if name in moved}
            if started:
                connection.executemany(START_STREAM, started)
            self.head = first + plan.count
        return plan.outcomes(first)

    def _write_fresh(
        self, connection: sqlite3.Connection, appends: list[PendingAppend | MultiAppend]
    ) -> list[Any] | None:
        """Write the usual group in one pass: None when it is not one, nothing written.

        The usual group holds appends with ``ANY`` to streams whose state is known and
        that are not deleted, of records that cannot be stored yet: ids the store has
        just minted, or ids that are neither in the tail (known in memory) nor at or
        below the greatest id in id_index (a new ``Event``'s UUIDv7), each once in the
        group. Nothing can fail then, so :func:`plan_group` has nothing to decide: each
        append goes at its stream's next position, and no id needs looking up in SQL. A
        :class:`MultiAppend` in the group sends it down the general path.
        """
        states = self.states
        complete = self.complete
        head = self.head
        recorded_at = time.time_ns() // 1000
        rows: list[tuple[Any, ...]] = []
        ends: list[tuple[int, int]] = []  # per append: its last (position, global position)
        moved: dict[str, int] = {}
        started: list[tuple[str]] = []
        tail: dict[tuple[str, str], tuple[int, int]] | None = None
        greatest: str | None = None
        brought: set[tuple[str, str]] = set()  # the group's (stream, id) given by callers
        for append in appends:
            if append.__class__ is MultiAppend:
                return None
            stream, records, expected = append  # type: ignore[misc]
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
        insert_rows(connection, rows)
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
