"""``EventStore.count_by_minute``: what the conformance suite cannot show on every backend.

The count is a query on an index of ``recorded_at`` (SQLite's bulk-filled ``time_index``,
PostgreSQL's ``pepperpy_events_recorded_at``), so counting the last hour reads the
hour's index entries, not the log: the query plans say so. Each index comes with a
migration that upgrades an existing store, and may be run on one that has the index
already. A backend that does not implement the call gets the contract's fallback (a
scan through ``read_all``), which counts the same. Counting needs ``read`` on the whole
log, and reads no event's data (an encrypted store needs no key for it).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import NO_STREAM, AccessDenied, EncryptionError, EventStore
from pepperpy.event.security import (
    AccessControl,
    AuditLog,
    KeyRing,
    MemoryKeyStore,
    StreamEncryption,
    acting_as,
)
from pepperpy.event.store import MemoryBackend, _pg_schema
from pepperpy.event.store._sqlite_schema import COUNT_BY_MINUTE, INDEX_TAIL, MIGRATIONS
from pepperpy.event.store.base import MINUTE, MinuteCount, StoreBackend, from_micros
from tests.store.conformance import record_at

HOUR = 60 * MINUTE
START = 29_000_000 * MINUTE  # 2025-02-19T21:20Z, on a whole minute


def plan_of(path: str) -> list[str]:
    """SQLite's plan for COUNT_BY_MINUTE on the file at ``path``, one line per step."""
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute(f"EXPLAIN QUERY PLAN {COUNT_BY_MINUTE}", {"since": 0})
        return [row[3] for row in rows]
    finally:
        connection.close()


# -- SQLite -------------------------------------------------------------------------------


async def test_sqlite_counts_from_the_time_index_and_the_tail(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pepperpy.event.store import _sqlite_log

    monkeypatch.setattr(_sqlite_log, "INDEX_EVERY", 4)
    path = sqlite_url.removeprefix("sqlite:///")
    async with EventStore(sqlite_url) as store:
        for n in range(10):  # indexed in bulk at 4 and 8 events: two stay in the tail
            await store.append(f"s.{n % 3}", {"type": f"t.{n % 2}"})
        connection = sqlite3.connect(path)
        try:
            indexed = connection.execute(
                "SELECT global_position FROM time_index ORDER BY recorded_at, global_position"
            ).fetchall()
            (tail,) = connection.execute("SELECT indexed_before FROM index_state").fetchone()
        finally:
            connection.close()
        assert [position for (position,) in indexed] == list(range(tail)) and 0 < tail < 10
        # one event a minute: the hour from the 7th on holds four, indexed and in the tail
        await record_at(store, {n: START + n * MINUTE for n in range(10)})
        counts = await store.count_by_minute(from_micros(START + 6 * MINUTE))
    assert counts == [
        MinuteCount(from_micros(START + n * MINUTE), f"t.{n % 2}", 1) for n in range(6, 10)
    ]
    plan = plan_of(path)
    # a range of time_index and of the tail's rowids; each event then by its rowid
    assert "SEARCH time_index USING PRIMARY KEY (recorded_at>?)" in plan, plan
    assert "SEARCH events USING INTEGER PRIMARY KEY (rowid>?)" in plan, plan
    assert "SEARCH e USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan
    # nothing else is scanned but the window found, and the one-row index_state
    assert {step for step in plan if step.startswith("SCAN")} == {"SCAN w", "SCAN index_state"}


def _version_4_store(path: str, premade_index: bool) -> None:
    """An SQLite store of schema 4, as the previous release left it: three events, two
    of them indexed (one of a deleted stream), one in the tail; with ``premade_index``,
    a time_index made by hand already, holding the first event."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        for script in MIGRATIONS[:4]:
            connection.executescript(script)
        connection.execute("PRAGMA user_version = 4")
        connection.execute("INSERT INTO streams VALUES ('kept.1', 0, 0), ('gone.1', 1, 1)")
        for position, stream, type, recorded_at in [
            (0, "kept.1", "t.a", START),
            (1, "gone.1", "t.a", START + 1),
            (2, "kept.1", "t.b", START + MINUTE),
        ]:
            number = 0 if stream == "gone.1" else position // 2
            connection.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, 1, X'6e756c6c', NULL, 0, NULL, NULL, ?)",
                (position, stream, number, f"id-{position}", type, recorded_at),
            )
        for statement in INDEX_TAIL[:2]:
            connection.execute(statement.replace("global_position >= ?", "global_position < 2"))
        connection.execute("UPDATE index_state SET indexed_before = 2")
        if premade_index:
            connection.execute(
                "CREATE TABLE time_index (recorded_at INTEGER NOT NULL, global_position "
                "INTEGER NOT NULL, PRIMARY KEY (recorded_at, global_position)) WITHOUT ROWID"
            )
            connection.execute("INSERT INTO time_index VALUES (?, 0)", (START,))
    finally:
        connection.close()


@pytest.mark.parametrize("premade_index", [False, True])
async def test_sqlite_migration_5_indexes_the_events_of_an_older_store(
    tmp_path: Path, premade_index: bool
) -> None:
    path = str(tmp_path / "old.db")
    _version_4_store(path, premade_index)
    async with EventStore(f"sqlite:///{path}") as store:
        counts = await store.count_by_minute(from_micros(START))
    assert counts == [
        MinuteCount(from_micros(START), "t.a", 1),  # gone.1's is hidden
        MinuteCount(from_micros(START + MINUTE), "t.b", 1),  # from the tail
    ]
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
        assert connection.execute("SELECT * FROM time_index").fetchall() == [
            (START, 0),
            (START + 1, 1),
        ]
    finally:
        connection.close()


# -- PostgreSQL ---------------------------------------------------------------------------


@pytest.mark.postgres
async def test_postgres_counts_the_hour_through_the_recorded_at_index(
    direct: str, schema_admin: Any
) -> None:
    from pepperpy.event.store._pg_schema import COUNT_BY_MINUTE as PG_COUNT

    async with EventStore(direct) as store:
        for _ in range(6):
            await store.append("bulk.1", [{"type": "t.x"}] * 500)
        # one event a minute, for 3,000 minutes: the hour is 2% of the log
        await schema_admin.execute(
            f"UPDATE pepperpy_events SET recorded_at = {START} + global_position * {MINUTE}"
        )
        await schema_admin.execute("ANALYZE pepperpy_events")
        await schema_admin.execute("ANALYZE pepperpy_streams")
        since = START + 3000 * MINUTE - HOUR
        rows = await schema_admin.fetch(f"EXPLAIN {PG_COUNT}", since)
        plan = "\n".join(row[0] for row in rows)
        assert "pepperpy_events_recorded_at" in plan, plan
        assert "Seq Scan on pepperpy_events" not in plan, plan
        counts = await store.count_by_minute(from_micros(since))
    assert counts == [MinuteCount(from_micros(since + n * MINUTE), "t.x", 1) for n in range(60)]


@pytest.mark.postgres
@pytest.mark.parametrize("premade_index", [False, True])
async def test_postgres_migration_2_indexes_an_older_schema(
    direct: str, schema_admin: Any, premade_index: bool
) -> None:
    """A schema of version 1 gets the index; one made beforehand by hand (CONCURRENTLY,
    so as not to block appends while it builds) is kept under its name."""
    from pepperpy.event.store._pg_schema import _MIGRATIONS

    await schema_admin.execute(_MIGRATIONS[0])
    await schema_admin.execute(
        "CREATE TABLE pepperpy_schema_version (version integer PRIMARY KEY, "
        "applied_at timestamptz NOT NULL DEFAULT now()); "
        "INSERT INTO pepperpy_schema_version (version) VALUES (1); "
        "INSERT INTO pepperpy_streams VALUES ('kept.1', 2, 0, false), ('gone.1', 1, 1, true); "
        f"INSERT INTO pepperpy_events VALUES (0, 'kept.1', 0, 'a', 't.a', 1, 'null', NULL, "
        f"0, NULL, NULL, {START}), (1, 'gone.1', 0, 'b', 't.a', 1, 'null', NULL, 0, NULL, "
        f"NULL, {START}), (2, 'kept.1', 1, 'c', 't.b', 1, 'null', NULL, 0, NULL, NULL, "
        f"{START + MINUTE}); UPDATE pepperpy_head SET next_position = 3"
    )
    if premade_index:
        await schema_admin.execute(
            "CREATE INDEX CONCURRENTLY pepperpy_events_recorded_at ON pepperpy_events (recorded_at)"
        )
    async with EventStore(direct) as store:
        counts = await store.count_by_minute(from_micros(START))
        await store.append("kept.1", {"type": "t.c"})
    assert counts == [
        MinuteCount(from_micros(START), "t.a", 1),
        MinuteCount(from_micros(START + MINUTE), "t.b", 1),
    ]
    versions = await schema_admin.fetch("SELECT version FROM pepperpy_schema_version ORDER BY 1")
    assert [row[0] for row in versions] == list(range(1, len(_pg_schema._MIGRATIONS) + 1))
    indexes = await schema_admin.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename = 'pepperpy_events' AND indexdef LIKE '%(recorded_at)%'"
    )
    assert [row[0] for row in indexes] == ["pepperpy_events_recorded_at"]


@pytest.mark.postgres
async def test_postgres_minutes_are_utc_whatever_the_session_time_zone(direct: str) -> None:
    """Minutes come from recorded_at's microseconds, not from a date_trunc that would
    follow the session's TimeZone (Nepal's is 5:45 ahead of UTC)."""
    async with EventStore(direct) as store:
        await store.append("a.1", [{"type": "t.x"}] * 2)
        await record_at(store, {0: START - 1, 1: START + MINUTE - 1})
        async with EventStore(f"{direct}&TimeZone=Asia/Kathmandu") as elsewhere:
            counts = await elsewhere.count_by_minute(datetime(2025, 2, 19, tzinfo=UTC))
    assert counts == [
        MinuteCount(from_micros(START - MINUTE), "t.x", 1),
        MinuteCount(from_micros(START), "t.x", 1),
    ]


# -- the contract's fallback, and the facade ----------------------------------------------


class ReadingBackend(MemoryBackend):
    """A backend that leaves count_by_minute to the contract's default."""

    count_by_minute = StoreBackend.count_by_minute


def test_count_by_minute_is_not_abstract() -> None:
    """A backend written before the call existed still instantiates (and counts)."""
    assert "count_by_minute" not in StoreBackend.__abstractmethods__


async def test_the_fallback_counts_what_the_backends_count() -> None:
    backend = ReadingBackend()
    async with EventStore(backend) as store:
        await store.append("big.1", [{"type": f"t.{n % 3}"} for n in range(2500)])  # 3 pages
        await store.append("gone.1", [{"type": "t.0"}] * 700)
        await store.delete_stream("gone.1")
        await store.append("gone.1", {"type": "t.9"}, expected_version=NO_STREAM)
        await record_at(store, {n: START + (n // 1000) * MINUTE + n for n in range(3201)})
        since = from_micros(START + 1500)
        counts = await store.count_by_minute(since)
        assert counts == [
            MinuteCount(from_micros(minute * MINUTE), type, events)
            for minute, type, events in await MemoryBackend.count_by_minute(backend, START + 1500)
        ]
    assert sum(count.events for count in counts) == 1500 + 1  # big.1 from 1,000 on, and t.9
    assert counts[-1] == MinuteCount(from_micros(START + 3 * MINUTE), "t.9", 1)


async def test_counting_needs_read_on_the_whole_log() -> None:
    """Counts by type over every stream would tell about streams one cannot read."""
    log = AuditLog()
    access = AccessControl(default="deny", audit=log)
    access.allow("#", "append", "#")
    access.allow("console", "read", "orders.#")
    store = EventStore(access=access)
    since = datetime(2025, 1, 1, tzinfo=UTC)
    try:
        await store.append("secret.1", {"type": "salary.paid"})
        with acting_as("console"):
            with pytest.raises(AccessDenied, match="console"):
                await store.count_by_minute(since)
            access.allow("console", "read", "#")
            assert [count.type for count in await store.count_by_minute(since)] == ["salary.paid"]
            access.deny("console", "read", "secret.#")  # overlaps the whole log
            with pytest.raises(AccessDenied, match="refused by deny"):
                await store.count_by_minute(since)
    finally:
        await store.close()
    denied = [entry for entry in log.entries() if entry.outcome == "denied"]
    assert [(entry.principal, entry.action, entry.target) for entry in denied] == [
        ("console", "read", "#"),
        ("console", "read", "#"),
    ]


async def test_an_encrypted_store_counts_without_its_keys() -> None:
    """Types stay in clear in an encrypted store (what reads show of a shredded stream),
    and counting reads nothing else: no key is needed, none is used."""
    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore(), on_shredded="error")
    async with EventStore(encryption=crypto) as store:
        await store.append("user.1", [{"type": "user.created", "data": {"ssn": "1"}}] * 2)
        await store.shred_stream("user.1")
        with pytest.raises(EncryptionError):
            await store.read_all()
        counts = await store.count_by_minute(datetime(2025, 1, 1, tzinfo=UTC))
    assert [(count.type, count.events) for count in counts] == [("user.created", 2)]
