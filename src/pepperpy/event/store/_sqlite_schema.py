"""The SQLite store's schema, its migrations and the SQL its writer and readers share."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from .._sqlite import open_wal

__all__ = [
    "ALL_STATES",
    "COLUMNS",
    "INSERT",
    "KNOWN_IDS",
    "MIGRATIONS",
    "NEXT_POSITION",
    "READ_ALL",
    "STATES",
    "START_STREAM",
    "connect",
    "json_text",
    "migrate",
]

_BUSY_TIMEOUT = 10.0  # seconds a write waits for another process's lock

COLUMNS = (
    "global_position, stream, position, id, type, version, data, metadata, "
    "timestamp, source, subject, recorded_at"
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
)


# the 13th column says whether the row is visible (its stream was not deleted past it)
READ_ALL = (
    f"SELECT {', '.join('e.' + name for name in COLUMNS.split(', '))}, "
    "e.position >= s.first_visible FROM events e JOIN streams s ON s.name = e.stream "
    "WHERE e.global_position >= ? ORDER BY e.global_position LIMIT ?"
)


INSERT = f"INSERT INTO events ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
#: a stream (re)started by an append: the only appends that write a streams row
START_STREAM = "INSERT INTO streams (name) VALUES (?) ON CONFLICT (name) DO UPDATE SET deleted = 0"
#: the next position of stream ``s``: one step down the (stream, position) index
NEXT_POSITION = "coalesce((SELECT max(e.position) + 1 FROM events e WHERE e.stream = s.name), 0)"
# a group's lookups take their keys as one JSON array, whatever the group's size
ALL_STATES = f"SELECT s.name, {NEXT_POSITION}, s.first_visible, s.deleted FROM streams s"
STATES = f"{ALL_STATES} WHERE s.name IN (SELECT value FROM json_each(?))"
KNOWN_IDS = (
    "SELECT e.stream, e.id, e.position, e.global_position FROM json_each(?) AS k "
    "JOIN events e INDEXED BY events_id ON e.id = json_extract(k.value, '$[1]') "
    "AND e.stream = json_extract(k.value, '$[0]') "
    "JOIN streams s ON s.name = e.stream WHERE e.position >= s.first_visible"
)


def json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    return open_wal(path, synchronous=synchronous, timeout=_BUSY_TIMEOUT)


def migrate(connection: sqlite3.Connection) -> None:
    connection.execute("BEGIN IMMEDIATE")  # one process at a time migrates
    try:
        (current,) = connection.execute("PRAGMA user_version").fetchone()
        for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
            for statement in script.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
