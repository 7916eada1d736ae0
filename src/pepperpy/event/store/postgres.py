"""The PostgreSQL backend (asyncpg): one store shared by many processes and hosts.

Ordering promise: a subscription must never skip an event that commits late. Writers
therefore take global positions from a one-row counter (``pepperpy_head``) whose row
lock is held until commit, so positions are handed out in commit order and a reader
that has seen position ``n`` can never later find a new event below ``n``. The locked
section is one statement plus the commit; ``docs/store.md`` explains why this was
chosen over tracking in-flight transaction ids.

Live subscriptions wake on ``LISTEN``/``NOTIFY`` (the appending transaction notifies on
commit) through one listener connection per store, reconnected if it drops; after a
reconnect every waiter re-reads, so notifications lost in between cost nothing.

The schema is created and migrated on first use, under an advisory lock (two processes
starting at once take turns), and recorded in ``pepperpy_schema_version``. The URL option
``?schema=name`` keeps a store's tables in that PostgreSQL schema (created if missing), so
several independent stores can share one database.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._deps import require
from .._errors import ClosedError, ConfigurationError, StoreError
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
    redact_url,
    settle,
)

__all__ = ["PostgresBackend"]

CHANNEL = "pepperpy_events"
#: advisory lock key serialising schema migrations ("pepperpy" in ASCII)
_MIGRATION_LOCK = 0x7065707065727079
_POOL_SIZE = 8
#: most appends committed in one transaction
_MAX_GROUP = 512
_DEADLOCK_RETRIES = 3
#: while the listener is down, waiters re-read this often
_RECONNECT_INTERVAL = 0.5
_LISTENER_NAME = "pepperpy-event-listener"

_COLUMNS = (
    "global_position, stream, position, id, type, version, data, metadata, "
    "timestamp, source, subject, recorded_at"
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
)

# Everything after the group's stream checks, in one round trip: take positions from the
# head row (its lock is held until commit), insert, move the streams on, notify on commit.
_WRITE = f"""
WITH head AS (
    UPDATE pepperpy_head SET next_position = next_position + $1
    RETURNING next_position - $1 AS first
), inserted AS (
    INSERT INTO pepperpy_events ({_COLUMNS})
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
SELECT head.first, pg_notify($14, (head.first + $1)::text) FROM head
"""

# the 13th column says whether the row is visible (its stream was not deleted past it)
_READ_ALL = f"""
SELECT {", ".join("e." + name for name in _COLUMNS.split(", "))}, e.position >= s.first_visible
FROM pepperpy_events e JOIN pepperpy_streams s ON s.name = e.stream
WHERE e.global_position >= $1 ORDER BY e.global_position LIMIT $2
"""

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


class PostgresBackend(StoreBackend):
    """Events in PostgreSQL tables, written in commit order, followed via NOTIFY."""

    def __init__(self, url: str) -> None:
        self._asyncpg = require("asyncpg", extra="postgres", feature="the PostgreSQL store")
        self.url = url
        self._dsn, self.schema = _split_schema(url)
        #: the NOTIFY channel: one per schema, so stores in other schemas do not wake us
        self.channel = CHANNEL if self.schema is None else f"{CHANNEL}_{self.schema}"
        self._settings = {} if self.schema is None else {"search_path": self.schema}
        self._pool: Any = None
        self._ready: asyncio.Future[Any] | None = None
        self._listener: Any = None
        self._listening: asyncio.Task[None] | None = None
        self._pending: list[tuple[PendingAppend, asyncio.Future[AppendResult]]] = []
        self._work = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._changed: asyncio.Event | None = None
        self._head = 0  # next global position, as far as notifications told us
        self._connected = False
        self._closed = False

    # -- plumbing ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _connection(self, *, closing: bool = False) -> AsyncIterator[Any]:
        if self._closed and not closing:
            raise ClosedError("the event store is closed")
        if self._ready is None:
            self._ready = asyncio.ensure_future(self._open())
        try:
            pool = await asyncio.shield(self._ready)
        except BaseException:
            if self._ready.done():
                self._ready = None  # try again next time (e.g. the server was down)
            raise
        try:
            async with pool.acquire() as connection:
                yield connection
        except (self._asyncpg.PostgresError, self._asyncpg.InterfaceError, OSError) as exc:
            if self._closed and not closing:
                raise ClosedError("the event store is closed") from exc
            raise StoreError(f"PostgreSQL: {exc}") from exc

    async def _open(self) -> Any:
        asyncpg = self._asyncpg
        try:
            pool = await asyncpg.create_pool(
                self._dsn, min_size=1, max_size=_POOL_SIZE, server_settings=self._settings
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, ValueError) as exc:
            where = redact_url(self.url)
            raise StoreError(f"cannot connect to PostgreSQL at {where}: {exc}") from exc
        try:
            async with pool.acquire() as connection:
                await _migrate(connection, self.schema)
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, asyncpg.PostgresError | OSError):
                raise StoreError(f"PostgreSQL schema setup failed: {exc}") from exc
            raise
        self._pool = pool
        return pool

    # -- the contract -----------------------------------------------------------------

    async def append(
        self, stream: str, records: Sequence[NewRecord], expected_version: ExpectedVersion
    ) -> AppendResult:
        """Queue the append for the next group commit and wait for its outcome."""
        if self._closed:
            raise ClosedError("the event store is closed")
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._pending.append((PendingAppend(stream, records, expected_version), future))
        if self._committer is None:
            self._committer = asyncio.ensure_future(self._commit_loop())
        self._work.set()
        return await future

    async def _commit_loop(self) -> None:
        """Commit queued appends in groups, one transaction per group, until closed."""
        while True:
            await self._work.wait()
            self._work.clear()
            if not self._pending:
                if self._closed:
                    return
                continue
            group, self._pending = self._pending[:_MAX_GROUP], self._pending[_MAX_GROUP:]
            if self._pending:
                self._work.set()
            appends = [append for append, _ in group]
            try:
                outcomes = await self._commit_group(appends)
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    for _, future in group:
                        future.cancel()
                    raise
                outcomes = [exc] * len(group)
            for (_, future), outcome in zip(group, outcomes, strict=True):
                settle(future, outcome)

    async def _commit_group(
        self, appends: list[PendingAppend]
    ) -> list[AppendResult | BaseException]:
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                async with (
                    self._connection(closing=True) as connection,
                    connection.transaction(),
                ):
                    return await self._write_group(connection, appends)
            except StoreError as exc:
                deadlock = isinstance(exc.__cause__, self._asyncpg.DeadlockDetectedError)
                if not deadlock or attempt == _DEADLOCK_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _write_group(
        self, connection: Any, appends: list[PendingAppend]
    ) -> list[AppendResult | BaseException]:
        names = sorted({append.stream for append in appends})
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
            for append in appends
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
                _WRITE, plan.count, *columns, list(moved), list(moved.values()), self.channel
            )
        return plan.outcomes(first)

    async def read_stream(
        self, stream: str, start: int | None, backwards: bool, limit: int
    ) -> list[Row]:
        if backwards:
            sql = (
                f"SELECT {_COLUMNS} FROM pepperpy_events WHERE stream = $1 AND position <= $2 "
                "AND position >= (SELECT first_visible FROM pepperpy_streams WHERE name = $1) "
                "ORDER BY position DESC LIMIT $3"
            )
            begin = (1 << 62) if start is None else start
        else:
            sql = (
                f"SELECT {_COLUMNS} FROM pepperpy_events WHERE stream = $1 AND position >= $2 "
                "AND position >= (SELECT first_visible FROM pepperpy_streams WHERE name = $1) "
                "ORDER BY position LIMIT $3"
            )
            begin = 0 if start is None else start
        async with self._connection() as connection:
            rows: list[Row] = await connection.fetch(sql, stream, begin, limit)
            return rows

    async def read_all(self, from_position: int, limit: int) -> LogPage:
        async with self._connection() as connection:
            scanned = await connection.fetch(_READ_ALL, from_position, limit)
        return log_page(scanned, from_position, limit)

    async def stream_state(self, stream: str) -> StreamState | None:
        async with self._connection() as connection:
            row = await connection.fetchrow(
                "SELECT next_position, first_visible, deleted FROM pepperpy_streams "
                "WHERE name = $1",
                stream,
            )
        return None if row is None else StreamState(row[0], row[1], row[2])

    async def stream_names(self) -> list[str]:
        async with self._connection() as connection:
            rows = await connection.fetch(
                "SELECT name FROM pepperpy_streams WHERE NOT deleted "
                'AND next_position > first_visible ORDER BY name COLLATE "C"'
            )
        return [row[0] for row in rows]

    async def delete_stream(self, stream: str) -> bool:
        async with self._connection() as connection, connection.transaction():
            await connection.execute("DELETE FROM pepperpy_snapshots WHERE stream = $1", stream)
            status = await connection.execute(
                "UPDATE pepperpy_streams SET first_visible = next_position, deleted = true "
                "WHERE name = $1 AND NOT deleted AND next_position > first_visible",
                stream,
            )
        return bool(status != "UPDATE 0")

    async def save_snapshot(self, stream: str, snapshot: SnapshotRow) -> None:
        async with self._connection() as connection:
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

    async def load_snapshot(self, stream: str) -> SnapshotRow | None:
        async with self._connection() as connection:
            row = await connection.fetchrow(
                "SELECT version, state, taken_at FROM pepperpy_snapshots WHERE stream = $1",
                stream,
            )
        return None if row is None else SnapshotRow(row[0], row[1], row[2])

    # -- live wake-ups ----------------------------------------------------------------

    async def wait(self, position: int) -> None:
        if self._closed or self._head > position:
            return
        if self._listening is None:
            # start listening; events committed before LISTEN took effect are found by
            # the caller's next read, so return at once
            self._listening = asyncio.ensure_future(self._listen())
            await self._wait_changed(_RECONNECT_INTERVAL)
            return
        await self._wait_changed(None if self._connected else _RECONNECT_INTERVAL)

    async def _wait_changed(self, at_most: float | None) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most):
                await self._changed.wait()

    def _wake(self) -> None:
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._head = max(self._head, int(payload))
        self._wake()

    async def _listen(self) -> None:
        """Keep one LISTEN connection up; wake every waiter after each (re)connect."""
        asyncpg = self._asyncpg
        while not self._closed:
            dropped = asyncio.Event()
            try:
                connection = await asyncpg.connect(
                    self._dsn, server_settings={"application_name": _LISTENER_NAME}
                )
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await asyncio.sleep(_RECONNECT_INTERVAL)
                continue
            try:
                connection.add_termination_listener(_on_drop(dropped))
                await connection.add_listener(self.channel, self._notified)
                self._listener = connection
                self._connected = True
                self._wake()  # anything committed while not listening is re-read now
                await dropped.wait()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                pass
            finally:
                self._connected = False
                self._listener = None
                if not connection.is_closed():
                    connection.terminate()
            self._wake()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake()
        if self._committer is not None:  # appends already queued are still committed
            self._work.set()
            await self._committer
        if self._listening is not None:
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listening
        if self._listener is not None:
            await self._listener.close()
        if self._ready is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._ready)  # an open in progress finishes, then closes
        if self._pool is not None:
            await self._pool.close()


async def _migrate(connection: Any, schema: str | None) -> None:
    """Create or upgrade the schema; concurrent starters queue on an advisory lock."""
    await connection.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        if schema is not None:
            await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS pepperpy_schema_version ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await connection.fetchval(
            "SELECT coalesce(max(version), 0) FROM pepperpy_schema_version"
        )
        for number, script in enumerate(_MIGRATIONS[current:], start=current + 1):
            async with connection.transaction():
                await connection.execute(script)
                await connection.execute(
                    "INSERT INTO pepperpy_schema_version (version) VALUES ($1)", number
                )
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)


def _on_drop(dropped: asyncio.Event) -> Any:
    """A termination callback for asyncpg that sets ``dropped``."""

    def callback(connection: Any) -> None:
        dropped.set()

    return callback


_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,39}")


def _split_schema(url: str) -> tuple[str, str | None]:
    """Take the store's own ``schema=`` option out of the URL (the rest goes to asyncpg)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    if not schemas:
        return url, None
    schema = schemas[-1]
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigurationError(
            f"schema={schema!r}: use lower-case letters, digits and '_' (at most 40)"
        )
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema
