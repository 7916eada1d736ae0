"""The PostgreSQL store's tables: their migrations, and the SQL that reads and writes them.

The schema is created and migrated on first use (:func:`migrate`), under an advisory
lock (:data:`SCHEMA_LOCK`: two processes starting at once take turns), and recorded in
``pepperpy_schema_version``. A group of appends is written by :func:`write_group`,
taking global positions from the one-row counter ``pepperpy_head`` (see the
``postgres`` module for why).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from .._errors import StoreError
from ._pg_connect import Progress, in_transaction
from ._time_blocks import BLOCK
from .base import (
    FreshRecord,
    MultiAppend,
    PendingAppend,
    StreamState,
    parts,
    plan_group,
)

__all__ = [
    "CHANNEL_OF_TABLES",
    "COUNT_BY_MINUTE",
    "HEAD",
    "LISTEN_CHANNEL",
    "READ_ALL",
    "READ_ALL_BACKWARDS",
    "READ_CATEGORIES",
    "READ_CATEGORIES_BACKWARDS",
    "READ_STREAM_BACKWARD",
    "READ_STREAM_FORWARD",
    "READ_TYPES",
    "READ_TYPES_BACKWARDS",
    "SCHEMA_LOCK",
    "TIME_BLOCKS",
    "LongStep",
    "migrate",
    "schema_change",
    "write_group",
]

#: advisory lock key serialising every change of the schema ("pepperpy" in ASCII): the
#: store's migrations and the checkpoint table (see :func:`schema_change`) take turns on it
SCHEMA_LOCK = 0x7065707065727079

COLUMNS = (
    "global_position, stream, position, id, type, version, data, metadata, "
    "timestamp, source, subject, recorded_at"
)


def _summarize(rows: str) -> str:
    """Widen pepperpy_time_blocks by the events in table ``rows`` (see ``_time_blocks``)."""
    return (
        "INSERT INTO pepperpy_time_blocks AS b (block, low, high) "
        f"SELECT global_position / {BLOCK}, min(timestamp), max(timestamp) FROM {rows} "
        "GROUP BY 1 ON CONFLICT (block) DO UPDATE SET "
        "low = least(b.low, excluded.low), high = greatest(b.high, excluded.high)"
    )


_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE pepperpy_streams (
        name text PRIMARY KEY,
        next_position bigint NOT NULL,
        first_visible bigint NOT NULL DEFAULT 0,
        deleted boolean NOT NULL DEFAULT false
    );
    CREATE TABLE pepperpy_events (
        global_position bigint PRIMARY KEY,
        stream text NOT NULL,
        position bigint NOT NULL,
        id text NOT NULL,
        type text NOT NULL,
        version integer NOT NULL,
        data bytea NOT NULL,
        metadata bytea,
        timestamp bigint NOT NULL,
        source text,
        subject text,
        recorded_at bigint NOT NULL,
        UNIQUE (stream, position)
    );
    CREATE INDEX pepperpy_events_stream_id ON pepperpy_events (stream, id);
    CREATE TABLE pepperpy_head (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        next_position bigint NOT NULL
    );
    INSERT INTO pepperpy_head (next_position) VALUES (0);
    CREATE TABLE pepperpy_snapshots (
        stream text PRIMARY KEY,
        version bigint NOT NULL,
        state bytea NOT NULL,
        taken_at bigint NOT NULL
    );
    """,
    # counting the events recorded since some time (COUNT_BY_MINUTE, the console's activity
    # chart) reads their index entries, not the whole log. IF NOT EXISTS: an index made
    # beforehand under this name (CREATE INDEX CONCURRENTLY, which does not block appends
    # while it builds, as this migration's CREATE INDEX does) is kept
    """
    CREATE INDEX IF NOT EXISTS pepperpy_events_recorded_at ON pepperpy_events (recorded_at);
    """,
    # reads of some types or stream categories (READ_TYPES, READ_CATEGORIES) read their
    # index entries, not the whole log: (type, global_position), in code point order
    # (COLLATE "C") so that a prefix's types are a range; and (the stream name's first
    # token, global_position). IF NOT EXISTS, as above: indexes built beforehand with
    # CREATE INDEX CONCURRENTLY under these names are kept
    """
    CREATE INDEX IF NOT EXISTS pepperpy_events_type
        ON pepperpy_events (type COLLATE "C", global_position);
    CREATE INDEX IF NOT EXISTS pepperpy_events_category
        ON pepperpy_events (split_part(stream, '.', 1), global_position);
    """,
    # pepperpy_time_blocks: the least and greatest timestamp of each block of BLOCK global
    # positions (see _time_blocks), so a replay with a time window reads the blocks that
    # can hold its events, not the whole log. Kept by a statement-level trigger: one
    # upsert per insert statement (a group commit's, a copy's batch), in its transaction,
    # whichever version of this library runs it. Filled here for the rows stored, in SQL
    f"""
    CREATE TABLE IF NOT EXISTS pepperpy_time_blocks (
        block bigint PRIMARY KEY,
        low bigint NOT NULL,
        high bigint NOT NULL
    );
    CREATE OR REPLACE FUNCTION pepperpy_note_time_blocks() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
    BEGIN
        {_summarize("pepperpy_inserted")};
        RETURN NULL;
    END $$;
    DROP TRIGGER IF EXISTS pepperpy_events_time_blocks ON pepperpy_events;
    CREATE TRIGGER pepperpy_events_time_blocks AFTER INSERT ON pepperpy_events
        REFERENCING NEW TABLE AS pepperpy_inserted
        FOR EACH STATEMENT EXECUTE FUNCTION pepperpy_note_time_blocks();
    {_summarize("pepperpy_events")};
    """,
    # stream names a page at a time (stream_names_page: the console, `streams`) in code
    # point order, COLLATE "C" as Python sorts: the primary key is in the database's
    # collation, which that order cannot use, so each page was a scan of every stream
    # and a sort. IF NOT EXISTS, as above (CREATE INDEX CONCURRENTLY beforehand is kept)
    """
    CREATE INDEX IF NOT EXISTS pepperpy_streams_name_c
        ON pepperpy_streams (name COLLATE "C");
    """,
)

#: the NOTIFY channel of the store whose tables the session finds, as a SQL expression:
#: named after the OID of its ``pepperpy_events`` table, not after the URL, so every URL
#: reaching one store's tables (``?schema=``, ``?search_path=``, the role's search_path)
#: shares it, and no other store's ever does (a channel is per database). At most 26
#: bytes, well under PostgreSQL's 63. Writers also notify the channel named after the URL
#: (``pepperpy_events`` or ``pepperpy_events_<schema>``), which earlier versions listen on
CHANNEL_OF_TABLES = "'pepperpy_events:' || 'pepperpy_events'::regclass::oid"

#: the listener's channel (see :data:`CHANNEL_OF_TABLES`); NULL when there are no tables
LISTEN_CHANNEL = "SELECT 'pepperpy_events:' || to_regclass('pepperpy_events')::oid"

# Everything after the group's stream checks, in one round trip: take positions from the
# head row (its lock is held until commit), insert, move the streams on, notify on commit.
_WRITE = f"""
WITH head AS (
    UPDATE pepperpy_head SET next_position = next_position + $1
    RETURNING next_position - $1 AS first
), inserted AS (
    INSERT INTO pepperpy_events ({COLUMNS})
    SELECT head.first + e.n - 1, e.stream, e.position, e.id, e.type, e.version, e.data,
           e.metadata, e.timestamp, e.source, e.subject,
           (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
    FROM head, unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::int[],
                      $7::bytea[], $8::bytea[], $9::bigint[], $10::text[], $11::text[])
         WITH ORDINALITY AS e(stream, position, id, type, version, data, metadata,
                              timestamp, source, subject, n)
), moved AS (
    UPDATE pepperpy_streams AS s SET next_position = m.next_position, deleted = false
    FROM unnest($12::text[], $13::bigint[]) AS m(name, next_position)
    WHERE s.name = m.name
)
SELECT head.first, pg_notify({CHANNEL_OF_TABLES}, (head.first + $1)::text),
       pg_notify($14, (head.first + $1)::text)
FROM head
"""


def _read_all(compare: str, order: str) -> str:
    """A page of the log from global position ``$1`` on, at most ``$2`` rows, forwards
    (``>=``) or backwards (``<=``, ``DESC``); the 13th column says whether the row is
    visible (its stream was not deleted past it)."""
    return f"""
SELECT {", ".join("e." + name for name in COLUMNS.split(", "))}, e.position >= s.first_visible
FROM pepperpy_events e JOIN pepperpy_streams s ON s.name = e.stream
WHERE e.global_position {compare} $1 ORDER BY e.global_position {order} LIMIT $2
"""


READ_ALL = _read_all(">=", "")
READ_ALL_BACKWARDS = _read_all("<=", "DESC")


def _read_matching(keys: str, *arms: tuple[str, str, str], backwards: bool = False) -> str:
    """A page of the log from ``$1`` on, at most ``$2`` rows, of the rows each arm
    ``(table, key, match)`` finds for each key ``k.key`` of ``table`` (a CTE of ``keys``),
    narrowed by ``match`` (``" AND ..."``, or ""): each key's rows come from its index on
    (``key``, global_position) in order, up to ``$2``, and the page is the first ``$2``
    of them all.

    ``key = k.key AND global_position >= $1`` is written as a row comparison and a bound
    (the same rows): PostgreSQL would see the key as one value, drop it from the order,
    and could then walk the log by position filtering on the key, at the cost of the
    whole log when the key's rows are few or late. Ordered by the index's two columns,
    only that index gives the order: a seek to (key, $1), then the key's rows.
    ``backwards``: the same downwards from ``$1`` (``<=``, descending), newest first.

    Every result row starts with the head (the newest position, NULL: none) as of the
    same snapshot; an empty page is one row with the head alone. The page's rows are
    fetched by their positions as an array (``= ANY``), and their streams' visibility by
    name: a lookup each, where a join could merge along the whole log between the first
    and the last, or hash every stream."""
    columns = ", ".join("e." + name for name in COLUMNS.split(", "))
    past, within, order = ("<=", ">=", " DESC") if backwards else (">=", "<=", "")
    found = " UNION ".join(
        f"""SELECT f.global_position FROM {table} k CROSS JOIN LATERAL (
        SELECT global_position FROM pepperpy_events
        WHERE ({key}, global_position) {past} (k.key, $1) AND {key} {within} k.key{match}
        ORDER BY {key}{order}, global_position{order} LIMIT $2
    ) f"""
        for table, key, match in arms
    )
    return f"""
WITH RECURSIVE {keys}, page AS (
    {found} ORDER BY 1{order} LIMIT $2
)
SELECT h.head, {columns},
       e.position >= (SELECT first_visible FROM pepperpy_streams WHERE name = e.stream)
FROM (SELECT max(global_position) AS head FROM pepperpy_events) h
LEFT JOIN pepperpy_events e
    ON e.global_position = ANY (ARRAY(SELECT global_position FROM page))
ORDER BY e.global_position{order}
"""


#: rows whose type is one of ``$3`` or lies in one of the ranges ``$4`` to ``$5``
#: (exclusive): each range's types are listed first, an index seek each (a skip scan)
_TYPE_KEYS = """named (type, high) AS (
    SELECT (SELECT min(type COLLATE "C") FROM pepperpy_events
            WHERE type COLLATE "C" >= r.low AND type COLLATE "C" < r.high), r.high
    FROM unnest($4::text[], $5::text[]) AS r (low, high)
    UNION ALL
    SELECT (SELECT min(type COLLATE "C") FROM pepperpy_events
            WHERE type COLLATE "C" > n.type AND type COLLATE "C" < n.high), n.high
    FROM named n WHERE n.type IS NOT NULL
), keys AS (
    SELECT unnest($3::text[]) COLLATE "C" AS key
    UNION SELECT type FROM named WHERE type IS NOT NULL
)"""
_TYPE_ARM = ("keys", 'type COLLATE "C"', "")
READ_TYPES = _read_matching(_TYPE_KEYS, _TYPE_ARM)
READ_TYPES_BACKWARDS = _read_matching(_TYPE_KEYS, _TYPE_ARM, backwards=True)
#: rows of the categories ``$3`` (a stream name's first token: the whole category), and
#: of the categories ``$4`` whose stream is ``$5`` or lies in the range ``$6`` to ``$7``
#: (exclusive). The whole categories have an arm of their own: a filter there, even one
#: that keeps every row, makes PostgreSQL expect few rows and sort them all
_CATEGORY_KEYS = (
    "whole AS (SELECT unnest($3::text[]) AS key), "
    "narrowed AS (SELECT * FROM unnest($4::text[], $5::text[], $6::text[], $7::text[]) "
    "AS k (key, exact, low, high))"
)
_CATEGORY_ARMS = (
    ("whole", "split_part(stream, '.', 1)", ""),
    (
        "narrowed",
        "split_part(stream, '.', 1)",
        ' AND (stream = k.exact OR (stream COLLATE "C" >= k.low AND stream COLLATE "C" < k.high))',
    ),
)
READ_CATEGORIES = _read_matching(_CATEGORY_KEYS, *_CATEGORY_ARMS)
READ_CATEGORIES_BACKWARDS = _read_matching(_CATEGORY_KEYS, *_CATEGORY_ARMS, backwards=True)

#: the blocks from ``$1`` on whose timestamps may fall in [``$2``, ``$3``), each with the
#: last block there is (one snapshot for both)
TIME_BLOCKS = """
SELECT block, (SELECT max(block) FROM pepperpy_time_blocks) FROM pepperpy_time_blocks
WHERE block >= $1 AND high >= $2 AND low < $3 ORDER BY block
"""

#: the newest committed event's global position, hidden ones included (NULL: none). A
#: writer takes positions under the ``pepperpy_head`` row lock, held until its commit, so
#: the positions of transactions in flight are all above it: none can commit below it
HEAD = "SELECT max(global_position) FROM pepperpy_events"


#: the visible events recorded at or after ``$1``, counted by (minute, type), in code point
#: order of the types (``COLLATE "C"``, as Python sorts); found through
#: pepperpy_events_recorded_at, and never detoasting an event's data
COUNT_BY_MINUTE = """
SELECT e.recorded_at / 60000000 AS minute, e.type, count(*) AS events
FROM pepperpy_events e JOIN pepperpy_streams s ON s.name = e.stream
WHERE e.recorded_at >= $1 AND e.position >= s.first_visible
GROUP BY 1, 2 ORDER BY 1, e.type COLLATE "C"
"""


def _read_stream(order: str, compare: str) -> str:
    """A page of one stream (``$1``) from position ``$2`` on, forwards (``compare``
    ``>=``) or backwards (``<=``), at most ``$3`` events; a deleted part is hidden."""
    return (
        f"SELECT {COLUMNS} FROM pepperpy_events WHERE stream = $1 AND position {compare} $2 "
        "AND position >= (SELECT first_visible FROM pepperpy_streams WHERE name = $1) "
        f"ORDER BY position{order} LIMIT $3"
    )


READ_STREAM_FORWARD = _read_stream("", ">=")
READ_STREAM_BACKWARD = _read_stream(" DESC", "<=")

_LOCK_STREAMS = """
SELECT name, next_position, first_visible, deleted FROM pepperpy_streams
WHERE name = any($1::text[]) ORDER BY name FOR UPDATE
"""

_KNOWN_IDS = """
SELECT e.stream, e.id, e.position, e.global_position
FROM unnest($1::text[], $2::text[]) AS k(stream, id)
JOIN pepperpy_events e ON e.stream = k.stream AND e.id = k.id
JOIN pepperpy_streams s ON s.name = e.stream
WHERE e.position >= s.first_visible
"""


async def write_group(
    channel: str, appends: list[PendingAppend | MultiAppend], connection: Any
) -> list[Any]:
    """Write ``appends`` in ``connection``'s transaction, which notifies on commit (the
    tables' channel, :data:`CHANNEL_OF_TABLES`, and ``channel``, named after the URL):
    each append's outcome, in order, decided by :func:`~.base.plan_group` (a
    :class:`~.base.MultiAppend`'s, a list of results).

    Every stream of the group is locked in one statement, in name order, whichever
    appends (one stream or several) name it: two groups crossing the same streams take
    their locks in the same order and cannot deadlock."""
    singles = parts(appends)
    names = sorted({append.stream for append in singles})
    await connection.execute(
        "INSERT INTO pepperpy_streams (name, next_position) "
        "SELECT unnest($1::text[]), 0 ON CONFLICT DO NOTHING",
        names,
    )
    states = {
        row[0]: StreamState(row[1], row[2], row[3])
        for row in await connection.fetch(_LOCK_STREAMS, names)
    }
    known: dict[tuple[str, str], tuple[int, int]] = {}
    # ids the store has just minted cannot be stored yet: look up only the others
    pairs = [
        (append.stream, record.id)
        for append in singles
        if states[append.stream].next_position > states[append.stream].first_visible
        for record in append.records
        if record.__class__ is not FreshRecord
    ]
    if pairs:
        streams, ids = zip(*pairs, strict=True)
        for row in await connection.fetch(_KNOWN_IDS, list(streams), list(ids)):
            known[(row[0], row[1])] = (row[2], row[3])
    plan = plan_group(appends, states, known)
    first = 0
    if plan.count:
        rows = [(stream, position, *record) for _, stream, position, record in plan.rows]
        columns = [list(column) for column in zip(*rows, strict=True)]
        moved = plan.next_positions
        first = await connection.fetchval(
            _WRITE, plan.count, *columns, list(moved), list(moved.values()), channel
        )
    return plan.outcomes(first)


@contextlib.asynccontextmanager
async def schema_change(connection: Any, schema: str | None) -> AsyncIterator[None]:
    """A transaction holding :data:`SCHEMA_LOCK`, with ``schema`` created if missing.

    PostgreSQL's ``CREATE ... IF NOT EXISTS`` is not safe under concurrency: two
    sessions creating one table (or schema) at once can both find it missing, and one
    then fails on the catalog's unique index (``pg_type_typname_nsp_index``). DDL run
    inside this block takes turns with every other starter's, in this process or
    others; the lock goes with the transaction, whatever ends it.

    Not ``async with connection.transaction()``: on a lost connection its ``ROLLBACK``
    fails, and that error would replace the one saying what happened. A failure here
    is raised even if the ``ROLLBACK`` fails too; a cancellation sends none (the caller
    cuts the connection off, which rolls back as surely).
    """
    transaction = connection.transaction()
    await transaction.start()
    try:
        await connection.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
        if schema is not None:
            await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        yield
    except Exception:
        with contextlib.suppress(Exception):
            await transaction.rollback()
        raise
    await transaction.commit()


@dataclass(frozen=True, slots=True)
class LongStep:
    """A step of :func:`migrate` that may take as long as it takes: a migration's script
    (``migration``, its version number, of ``of``: an index built over a big store's
    log), or the wait for :data:`SCHEMA_LOCK` while another process migrates
    (``migration`` None).

    Announced to the connection :func:`migrate` gets when it has a ``long_step(step)``
    method, an async context manager around the step (``_pg_pool``'s schema setup lifts
    its ``command_timeout`` bound there, and logs each migration): the step is said as
    such, not recognised by its SQL text.
    """

    migration: int | None
    of: int

    def __str__(self) -> str:
        if self.migration is None:
            return "the wait for the schema lock (another process may be migrating)"
        return f"schema migration {self.migration} of {self.of}"


@contextlib.asynccontextmanager
async def _long(connection: Any, step: LongStep) -> AsyncIterator[None]:
    """``step`` announced to ``connection`` (see :class:`LongStep`), if it listens."""
    hook = getattr(type(connection), "long_step", None)
    if hook is None:
        yield
        return
    async with hook(connection, step):
        yield


#: whether the version table is there (in the session's search_path), read without DDL
_HAS_VERSIONS = "SELECT to_regclass('pepperpy_schema_version') IS NOT NULL"
_VERSION = "SELECT coalesce(max(version), 0) FROM pepperpy_schema_version"


async def migrate(connection: Any, schema: str | None, create: bool = True) -> None:
    """Create or upgrade the schema; concurrent starters queue on :data:`SCHEMA_LOCK`.

    With ``create`` False a database (or ``schema``) that holds no store is refused
    (:func:`_missing`) before anything is written; a store of an older version is
    still migrated.

    The version is read first, without DDL or lock: a store already up to date costs
    two reads, and a role without CREATE rights (DML only, the DDL run by the owner)
    can use it, where PostgreSQL checks the privilege of a ``CREATE ... IF NOT EXISTS``
    before it checks whether the object exists. Only when something is missing or
    behind is the lock taken, and the version read again under it.

    A session lock, not :func:`schema_change`'s: each migration is a transaction of its
    own, and the version check before them must not race either. The lock is released
    at the end; if anything fails, it is not: the caller cuts the connection off, and
    the lock goes with the session (an unlock on a lost connection would only fail in
    turn and hide why). A migration commits with the row recording it, so running this
    again after a failure is safe. A schema version newer than this library's is refused
    (:class:`StoreError`, ``written`` False), and the store left as it is.
    """
    current = 0
    if await connection.fetchval(_HAS_VERSIONS):
        current = await connection.fetchval(_VERSION)
        if current > len(_MIGRATIONS):
            raise _newer(current, schema)
        if current == len(_MIGRATIONS):
            return
    if current == 0 and not create:  # no table, or one a first setup left empty
        raise await _missing(connection, schema)
    async with _long(connection, LongStep(None, len(_MIGRATIONS))):
        await connection.execute("SELECT pg_advisory_lock($1)", SCHEMA_LOCK)
    if schema is not None:
        await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    await connection.execute(
        "CREATE TABLE IF NOT EXISTS pepperpy_schema_version ("
        "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    current = await connection.fetchval(_VERSION)
    if current > len(_MIGRATIONS):
        raise _newer(current, schema)
    for number, script in enumerate(_MIGRATIONS[current:], start=current + 1):
        # not ``async with connection.transaction()``: on a lost connection its ROLLBACK
        # fails, and that error would replace the one that says what happened
        migration = functools.partial(_apply_migration, number, script)
        await in_transaction(connection, Progress(connection), migration)
    await connection.execute("SELECT pg_advisory_unlock($1)", SCHEMA_LOCK)


def _newer(version: int, schema: str | None) -> StoreError:
    """The refusal of a store whose schema a newer pepperpy-event made: this one would
    write through tables it does not know (a rolled-back deployment, an old worker next
    to an upgraded one)."""
    where = "" if schema is None else f" (schema {schema!r})"
    error = StoreError(
        f"PostgreSQL: the store{where} has schema version {version}, newer than this "
        f"pepperpy-event knows ({len(_MIGRATIONS)}): upgrade pepperpy-event to use it; "
        "it was left as it is"
    )
    error.written = False
    return error


async def _missing(connection: Any, schema: str | None) -> StoreError:
    """The refusal of a database without a store, opened not to create one: the
    database given by mistake (another application's) is left without our tables."""
    database, searched = await connection.fetchrow(
        "SELECT current_database(), array_to_string(current_schemas(false), ', ')"
    )
    where = f"schema {schema!r}" if schema is not None else f"search_path {searched or '(empty)'}"
    error = StoreError(
        f"PostgreSQL: no event store in database {database!r} ({where}: no "
        "pepperpy_schema_version table); it was opened with create=False (as commands "
        "that only read open it), so nothing was made there: check the database name (and "
        "?schema=) in the URL, or create the store first by writing to it"
    )
    error.written = False
    return error


async def _apply_migration(number: int, script: str, connection: Any) -> None:
    async with _long(connection, LongStep(number, len(_MIGRATIONS))):
        await connection.execute(script)
    await connection.execute("INSERT INTO pepperpy_schema_version (version) VALUES ($1)", number)
