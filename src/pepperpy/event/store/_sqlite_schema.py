"""The SQLite store's schema, its migrations and the SQL its writer and readers share."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, NoReturn

import orjson

from .._errors import StoreError
from .._sqlite import open_read_only, open_wal, write_transaction
from ._sqlite_causes import NOTHING_WRITTEN, named_error, read_only_file
from ._time_blocks import BLOCK

__all__ = [
    "ALL_STATES",
    "COLUMNS",
    "COUNT_BY_MINUTE",
    "GREATEST_INDEXED_ID",
    "HEAD",
    "INDEX_TAIL",
    "INSERT",
    "INSERT_PLAIN",
    "KNOWN_IDS",
    "KNOWN_INDEXED_IDS",
    "LIVE_STREAMS",
    "MIGRATIONS",
    "NEXT_POSITION",
    "NOTHING_WRITTEN",
    "READ_IT_IMMUTABLE",
    "READ_ALL",
    "READ_ALL_BACKWARDS",
    "READ_STREAM_BACKWARD",
    "READ_STREAM_FORWARD",
    "STATES",
    "START_STREAM",
    "SUMMARIZE",
    "TIMED_FROM",
    "TIME_BLOCKS",
    "TAIL_IDS",
    "TAIL_START",
    "BUSY_TIMEOUT",
    "CATEGORY",
    "MATCHING_FROM",
    "READABLE_FROM",
    "check_event_store",
    "check_file",
    "check_schema_version",
    "connect",
    "file_identity",
    "json_text",
    "named_error",
    "migrate",
    "read_only_file",
    "wal_size",
]

#: seconds a write waits for another process's lock (URL option ``busy_timeout``)
BUSY_TIMEOUT = 10.0

COLUMNS = (
    "global_position, stream, position, id, type, version, data, metadata, "
    "timestamp, source, subject, recorded_at"
)

#: a stream's category: its name's first token (the whole name if it has one token)
CATEGORY = "substr(stream, 1, instr(stream || '.', '.') - 1)"


def _summarize(where: str) -> str:
    """Widen time_blocks by the events rows ``where`` selects (see ``_time_blocks``)."""
    return (
        "INSERT INTO time_blocks (block, low, high) "
        f"SELECT global_position / {BLOCK}, min(timestamp), max(timestamp) FROM events "
        f"WHERE {where} GROUP BY 1 ON CONFLICT (block) DO UPDATE SET "
        "low = min(low, excluded.low), high = max(high, excluded.high)"
    )


#: schema migrations, applied in order; ``PRAGMA user_version`` records how many ran
MIGRATIONS: tuple[str, ...] = (
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
    # the (stream, position) and id indexes move out of the events table into stream_index
    # and id_index, which the writer fills in bulk (see INDEX_TAIL): a commit of single
    # events no longer dirties one index page per stream touched, nor the id index's last
    # page. Events at or past index_state's indexed_before (the tail) are found by a short
    # scan of the newest rows
    """
    CREATE TABLE events_v4 (
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
        recorded_at INTEGER NOT NULL
    );
    INSERT INTO events_v4 (COLUMNS) SELECT COLUMNS FROM events ORDER BY global_position;
    DROP TABLE events;
    ALTER TABLE events_v4 RENAME TO events;
    CREATE TABLE stream_index (
        stream TEXT NOT NULL,
        position INTEGER NOT NULL,
        global_position INTEGER NOT NULL,
        PRIMARY KEY (stream, position)
    ) WITHOUT ROWID;
    INSERT INTO stream_index (stream, position, global_position)
        SELECT stream, position, global_position FROM events ORDER BY stream, position;
    CREATE TABLE id_index (
        id TEXT NOT NULL,
        global_position INTEGER NOT NULL,
        PRIMARY KEY (id, global_position)
    ) WITHOUT ROWID;
    INSERT INTO id_index (id, global_position)
        SELECT id, global_position FROM events ORDER BY id, global_position;
    CREATE TABLE index_state (indexed_before INTEGER NOT NULL);
    INSERT INTO index_state (indexed_before)
        SELECT coalesce(max(global_position) + 1, 0) FROM events;
    """.replace("COLUMNS", COLUMNS),
    # time_index (recorded_at -> global position), filled in bulk with the other two, so
    # counting the events recorded since some time (COUNT_BY_MINUTE, the console's
    # activity chart) reads those events' entries, not the whole log. Idempotent: a
    # table made by hand beforehand is kept and completed
    """
    CREATE TABLE IF NOT EXISTS time_index (
        recorded_at INTEGER NOT NULL,
        global_position INTEGER NOT NULL,
        PRIMARY KEY (recorded_at, global_position)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO time_index (recorded_at, global_position)
        SELECT recorded_at, global_position FROM events
        WHERE global_position < (SELECT indexed_before FROM index_state)
        ORDER BY recorded_at, global_position;
    """,
    # type_index and category_index (the stream name's first token), filled in bulk with
    # the others, so a read of some types or stream categories reads their entries, not
    # the whole log (see _sqlite_matching). category_index carries the stream name, so a
    # longer prefix (tenant.a.*) is narrowed in the index, without reading events rows.
    # Idempotent, as migration 5 is
    """
    CREATE TABLE IF NOT EXISTS type_index (
        type TEXT NOT NULL,
        global_position INTEGER NOT NULL,
        PRIMARY KEY (type, global_position)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO type_index (type, global_position)
        SELECT type, global_position FROM events
        WHERE global_position < (SELECT indexed_before FROM index_state)
        ORDER BY type, global_position;
    CREATE TABLE IF NOT EXISTS category_index (
        category TEXT NOT NULL,
        global_position INTEGER NOT NULL,
        stream TEXT NOT NULL,
        PRIMARY KEY (category, global_position)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO category_index (category, global_position, stream)
        SELECT CATEGORY, global_position, stream FROM events
        WHERE global_position < (SELECT indexed_before FROM index_state)
        ORDER BY 1, 2;
    """.replace("CATEGORY", CATEGORY),
    # time_blocks: the least and greatest timestamp of each block of BLOCK global
    # positions (see _time_blocks), so a replay with a time window reads the blocks that
    # can hold its events, not the whole log. Filled here for the rows stored, in SQL;
    # the writer keeps it from then on (SUMMARIZE, once per group commit). Idempotent: a
    # table made beforehand is kept and widened
    """
    CREATE TABLE IF NOT EXISTS time_blocks (
        block INTEGER PRIMARY KEY,
        low INTEGER NOT NULL,
        high INTEGER NOT NULL
    );
    SUMMARIZE_ALL
    """.replace("SUMMARIZE_ALL", _summarize("true")),
)

#: the first schema version readers can use as it is: a read-only store of version 5
#: (before type_index and category_index) is read, its filtered reads by a scan
READABLE_FROM = 5
#: the first schema version with type_index and category_index
MATCHING_FROM = 6
#: the first schema version with time_blocks
TIMED_FROM = 7
#: the rows written from global position ``?`` on, into time_blocks: once per group commit
SUMMARIZE = _summarize("global_position >= ?")
#: the blocks from ``:block`` on whose timestamps may fall in [``:start``, ``:end``), each
#: with the last block there is (one snapshot for both)
TIME_BLOCKS = (
    "SELECT block, (SELECT max(block) FROM time_blocks) FROM time_blocks "
    "WHERE block >= :block AND high >= :start AND low < :end ORDER BY block"
)


#: events at or past this global position (the tail) are not in stream_index and id_index yet
TAIL_START = "(SELECT indexed_before FROM index_state)"


def _read_all(compare: str, order: str) -> str:
    """A page of the log from a global position on, forwards (``>=``) or backwards
    (``<=``, ``DESC``); the 13th column says whether the row is visible (its stream was
    not deleted past it)."""
    return (
        f"SELECT {', '.join('e.' + name for name in COLUMNS.split(', '))}, "
        "e.position >= s.first_visible FROM events e JOIN streams s ON s.name = e.stream "
        f"WHERE e.global_position {compare} ? ORDER BY e.global_position {order} LIMIT ?"
    )


READ_ALL = _read_all(">=", "ASC")
READ_ALL_BACKWARDS = _read_all("<=", "DESC")
#: the newest event's global position, hidden ones included (NULL: none)
HEAD = "SELECT max(global_position) FROM events"


def _read_stream(order: str, compare: str) -> str:
    """A page of one stream: its indexed events merged with its events in the tail.

    The indexed branch selects ``i.position`` so that its order comes from the index;
    SQLite merges the two ordered branches and stops at the limit. Parameters: ``s``
    (the stream), ``at`` (the first position to read), ``n`` (the page size).
    """
    visible = "(SELECT first_visible FROM streams WHERE name = :s)"
    indexed = ", ".join(
        "i.position" if name == "position" else "e." + name for name in COLUMNS.split(", ")
    )
    return (
        f"SELECT {indexed} FROM stream_index i JOIN events e "
        "ON e.global_position = i.global_position "
        f"WHERE i.stream = :s AND i.position {compare} :at AND i.position >= {visible} "
        f"UNION ALL SELECT {COLUMNS} FROM events WHERE global_position >= {TAIL_START} "
        f"AND stream = :s AND position {compare} :at AND position >= {visible} "
        f"ORDER BY 3 {order} LIMIT :n"
    )


READ_STREAM_FORWARD = _read_stream("ASC", ">=")
READ_STREAM_BACKWARD = _read_stream("DESC", "<=")

INSERT = f"INSERT INTO events ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
#: the usual row, without metadata, source or subject (left NULL): see ``_sqlite_log``'s
#: ``insert_rows``
INSERT_PLAIN = (
    "INSERT INTO events (global_position, stream, position, id, type, version, data, "
    "timestamp, recorded_at) VALUES (?,?,?,?,?,?,?,?,?)"
)
#: a stream (re)started by an append: the only appends that write a streams row
START_STREAM = "INSERT INTO streams (name) VALUES (?) ON CONFLICT (name) DO UPDATE SET deleted = 0"
#: the tail, from the given global position, into the five indexes (each in key order)
INDEX_TAIL = (
    "INSERT INTO stream_index (stream, position, global_position) "
    "SELECT stream, position, global_position FROM events WHERE global_position >= ? "
    "ORDER BY stream, position",
    "INSERT INTO id_index (id, global_position) "
    "SELECT id, global_position FROM events WHERE global_position >= ? "
    "ORDER BY id, global_position",
    "INSERT INTO time_index (recorded_at, global_position) "
    "SELECT recorded_at, global_position FROM events WHERE global_position >= ? "
    "ORDER BY recorded_at, global_position",
    "INSERT INTO type_index (type, global_position) "
    "SELECT type, global_position FROM events WHERE global_position >= ? "
    "ORDER BY type, global_position",
    "INSERT INTO category_index (category, global_position, stream) "
    f"SELECT {CATEGORY}, global_position, stream FROM events WHERE global_position >= ? "
    "ORDER BY 1, 2",
)
#: the visible events recorded at or after ``:since``, counted by (minute, type): the
#: indexed ones found in time_index, the tail's by a scan of it. Each event's row is read
#: for its stream, position and type only, which come before its data: a large event's
#: overflow pages are never read (recorded_at comes from the index, except in the tail)
COUNT_BY_MINUTE = (
    "SELECT w.recorded_at / 60000000, e.type, count(*) FROM ("
    "SELECT recorded_at, global_position FROM time_index WHERE recorded_at >= :since "
    "UNION ALL SELECT recorded_at, global_position FROM events "
    f"WHERE global_position >= {TAIL_START} AND recorded_at >= :since) w "
    "JOIN events e ON e.global_position = w.global_position "
    "JOIN streams s ON s.name = e.stream WHERE e.position >= s.first_visible "
    "GROUP BY 1, 2 ORDER BY 1, 2"
)
#: the last indexed position of stream ``s``
_INDEXED_LAST = "(SELECT max(i.position) FROM stream_index i WHERE i.stream = s.name)"
#: the next position of stream ``s``: its last event in the tail, else in stream_index
NEXT_POSITION = (
    "coalesce((SELECT max(e.position) FROM events e "
    f"WHERE e.global_position >= {TAIL_START} AND e.stream = s.name), {_INDEXED_LAST}, -1) + 1"
)
#: streams joined with their last positions in the tail (one scan of it for all of them)
_WITH_TAIL = (
    "streams s LEFT JOIN (SELECT stream, max(position) AS last FROM events "
    f"WHERE global_position >= {TAIL_START} GROUP BY stream) t ON t.stream = s.name"
)
_NEXT_POSITIONS = f"coalesce(t.last, {_INDEXED_LAST}, -1) + 1"
# a group's lookups take their keys as one JSON array, whatever the group's size
ALL_STATES = f"SELECT s.name, {_NEXT_POSITIONS}, s.first_visible, s.deleted FROM {_WITH_TAIL}"
STATES = f"{ALL_STATES} WHERE s.name IN (SELECT value FROM json_each(?))"
#: the streams that have visible events, by name
LIVE_STREAMS = (
    f"SELECT s.name FROM {_WITH_TAIL} "
    f"WHERE s.deleted = 0 AND {_NEXT_POSITIONS} > s.first_visible ORDER BY s.name"
)
#: which of the (stream, id) pairs given as one JSON array are stored, and where: found in
#: id_index or in the tail, and still visible (not behind a deletion). The tail branch
#: scans the tail once against the keys as an IN list (SQLite builds it a temporary index);
#: a join there would scan every key for each tail row, or index the whole events table
#: for the join
_KEYS = (
    "WITH k AS (SELECT json_extract(value, '$[0]') AS stream, "
    "json_extract(value, '$[1]') AS id FROM json_each(?)), "
)
_FOUND_INDEXED = (
    "SELECT e.stream, e.id, e.position, e.global_position FROM k "
    "JOIN id_index x ON x.id = k.id JOIN events e ON e.global_position = x.global_position "
    "WHERE e.stream = k.stream"
)
_VISIBLE = (
    "SELECT f.stream, f.id, f.position, f.global_position FROM found f "
    "JOIN streams s ON s.name = f.stream WHERE f.position >= s.first_visible"
)
KNOWN_IDS = (
    f"{_KEYS}found AS ({_FOUND_INDEXED} "
    "UNION ALL SELECT e.stream, e.id, e.position, e.global_position FROM events e "
    f"WHERE e.global_position >= {TAIL_START} AND (e.id, e.stream) IN (SELECT id, stream FROM k)) "
    f"{_VISIBLE}"
)
#: the same, looking in id_index only (for a writer that knows the tail itself)
KNOWN_INDEXED_IDS = f"{_KEYS}found AS ({_FOUND_INDEXED}) {_VISIBLE}"
#: the greatest id in id_index (SQLite reads it off the index's last page)
GREATEST_INDEXED_ID = "SELECT max(id) FROM id_index"
#: every event in the tail: stream, id, position, global position
TAIL_IDS = (
    f"SELECT stream, id, position, global_position FROM events "
    f"WHERE global_position >= {TAIL_START}"
)


def json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def connect(path: str, synchronous: str, busy_timeout: float = BUSY_TIMEOUT) -> sqlite3.Connection:
    return open_wal(path, synchronous=synchronous, timeout=busy_timeout)


def file_identity(path: str) -> tuple[int, int] | None:
    """The file at ``path`` as (device, inode), or None if there is none."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


def check_file(path: str, identity: tuple[int, int] | None, *, write: bool = False) -> None:
    """Raise :class:`StoreError` if ``path`` is no longer the file opened as ``identity``.

    A connection keeps writing to the file it opened even after that file is deleted
    or replaced (a restore renamed over it): commits would go to an inode nobody can
    open any more, and be lost. ``write``: the check of a write, refused before its
    ``COMMIT`` (its transaction is rolled back), so the error says nothing of it was
    written (``written=False``).
    """
    if identity is not None and file_identity(path) != identity:
        refused = StoreError(
            f"SQLite: {path!r} was removed or replaced since the store opened it; "
            "nothing more is written to (or read from) the old file: close the store "
            "and open it again" + ("; nothing of this call was written" if write else "")
        )
        if write:
            refused.written = False
        raise refused


#: how every SQLite database file starts
_MAGIC = b"SQLite format 3\x00"
#: tables every version of the schema has
_TABLES = frozenset({"events", "streams", "snapshots"})


#: what a store says to do when its file's directory cannot be written (see named_error)
READ_IT_IMMUTABLE = "if nothing writes the file, open it with ?immutable=1 (read-only) to read it"


def check_event_store(
    path: str, busy_timeout: float = BUSY_TIMEOUT, immutable: bool = False, hint: str = ""
) -> int:
    """Raise :class:`StoreError` unless ``path`` is an event store; return its schema version.

    Nothing is written. A missing file, an empty one, one that is not an SQLite
    database, or a database without the store's tables (another application's) is
    refused. The header is read first: a database at schema version 0 whose write-ahead
    log is empty is refused without SQLite opening it. Otherwise a read-only connection
    (:func:`~pepperpy.event._sqlite.open_read_only`, ``immutable`` as given) looks for the
    tables; SQLite may then add the ``-wal`` and ``-shm`` files beside a database in WAL
    mode, but the database file itself is left as it is. ``hint`` ends the error of a
    file whose directory cannot be written (see
    :func:`~pepperpy.event.store._sqlite_causes.named_error`).
    """
    file = Path(path)
    try:
        with file.open("rb") as opened:
            header = opened.read(100)
    except FileNotFoundError:
        raise StoreError(f"no event store at {path!r}") from None
    except OSError as exc:
        raise StoreError(f"cannot open {path!r}: {exc.strerror or exc}") from exc
    if not header:
        _not_a_store(path, "an empty file")
    if len(header) < 100 or not header.startswith(_MAGIC):
        _not_a_store(path, "not an SQLite database")
    logged = wal_size(path) > 0  # a new store's schema may be there
    if not logged and int.from_bytes(header[60:64], "big") == 0:  # PRAGMA user_version
        _not_a_store(path, "an SQLite database without the event store's tables")
    try:
        connection = open_read_only(path, timeout=busy_timeout, immutable=immutable)
        try:
            (version,) = connection.execute("PRAGMA user_version").fetchone()
            tables = {
                name
                for (name,) in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            }
        finally:
            connection.close()
    except sqlite3.OperationalError as exc:  # locked, unreadable
        raise named_error(exc, path, "it could not be read", hint=hint) from exc
    except sqlite3.DatabaseError:  # damaged, or not a database after all
        _not_a_store(path, "not a readable SQLite database")
    if version == 0 or not _TABLES <= tables:
        _not_a_store(path, "an SQLite database without the event store's tables")
    return int(version)


def wal_size(path: str) -> int:
    """The size of ``path``'s write-ahead log (0: there is none)."""
    try:
        return os.stat(f"{path}-wal").st_size
    except FileNotFoundError:
        return 0


def check_schema_version(path: str, version: int) -> None:
    """Raise :class:`StoreError` unless schema ``version`` can be read as it is.

    For a store opened read-only, which cannot be migrated: a version before
    :data:`READABLE_FROM` needs one writable open first, a newer one than this library
    writes a newer pepperpy-event. Versions from :data:`READABLE_FROM` on lack only
    indexes that reads can do without.
    """
    current = len(MIGRATIONS)
    if version < READABLE_FROM:
        raise StoreError(
            f"SQLite: {path!r} has schema version {version} and needs migration to "
            f"version {current}, which a read-only store (mode=ro) never does: open it "
            "writable once (without mode=ro or immutable=1) to migrate it"
        )
    if version > current:
        raise StoreError(_newer(path, version))


def _newer(path: str, version: int) -> str:
    return (
        f"SQLite: {path!r} has schema version {version}, newer than this "
        f"pepperpy-event knows ({len(MIGRATIONS)}): upgrade pepperpy-event to use it; "
        "it was left as it is"
    )


def _not_a_store(path: str, why: str) -> NoReturn:
    raise StoreError(f"{path!r} is not an event store ({why}); it was left as it is")


def migrate(connection: sqlite3.Connection, path: str) -> None:
    """Bring the store's file at ``path`` (for messages) to the current schema."""
    with write_transaction(connection):  # BEGIN IMMEDIATE: one process at a time migrates
        (current,) = connection.execute("PRAGMA user_version").fetchone()
        if current > len(MIGRATIONS):
            raise StoreError(_newer(path, current))
        for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
            for statement in script.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number}")
