"""Filtered reads through an index: what the conformance suite cannot show on every backend.

``read_all``/``subscribe`` with types or streams patterns that start with literal tokens
read the matches through an index (SQLite's bulk-filled ``type_index`` and
``category_index``, PostgreSQL's ``pepperpy_events_type`` and ``pepperpy_events_category``):
the query plans say so. Each index comes with a migration that upgrades an existing store,
which then reads the same events; a read-only SQLite store of the schema before reads them
by a scan. That the events are exactly those a filter over the whole log gives is the
conformance suite's ``test_filtered_reads_give_what_a_filter_over_the_whole_log_gives``.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import EventStore
from pepperpy.event._patterns import matches
from pepperpy.event.store import _pg_schema, _sqlite_matching
from pepperpy.event.store._sqlite_schema import INDEX_TAIL, MIGRATIONS

#: the shapes an index serves, and their expected reads over the log of ``_old_log``
SHAPES: list[dict[str, Any]] = [
    {"types": "order.placed"},
    {"types": "order.*"},
    {"streams": "order.*"},
    {"streams": "order.eu.1"},
    {"streams": ["user.*", "order.#"], "types": "*.placed"},
]

#: (stream, type) of the events of ``_old_log``, in global order; "gone.1" is deleted
OLD_LOG = [
    (f"{['order', 'user', 'gone', 'order.eu'][n % 4]}.{n % 3}", f"{['order', 'user'][n % 2]}.{t}")
    for n, t in ((n, ["placed", "paid", "created"][n % 3]) for n in range(40))
]


def _expected(filters: dict[str, Any], start: int = 0) -> list[int]:
    """The global positions a filter over OLD_LOG keeps (deleted gone.* hidden)."""

    def ok(patterns: str | list[str] | None, name: str) -> bool:
        listed = [patterns] if isinstance(patterns, str) else patterns
        return listed is None or any(matches(pattern, name) for pattern in listed)

    return [
        position
        for position, (stream, type) in enumerate(OLD_LOG)
        if position >= start
        and not stream.startswith("gone.")
        and ok(filters.get("streams"), stream)
        and ok(filters.get("types"), type)
    ]


async def _positions(store: EventStore, filters: dict[str, Any], start: int = 0) -> list[int]:
    return [e.global_position for e in await store.read_all(start, **filters)]


# -- SQLite -------------------------------------------------------------------------------


def _trace_plans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the query plan steps (EXPLAIN QUERY PLAN) of each statement the SQLite
    backend's filtered reads run, as they run, in the list returned."""
    from pepperpy.event.store import sqlite

    steps: list[str] = []
    original = sqlite.read_matching

    def traced(connection: sqlite3.Connection, *arguments: Any) -> Any:
        def trace(sql: str) -> None:
            if sql.lstrip().upper().startswith("SELECT"):
                plan = explain.execute(f"EXPLAIN QUERY PLAN {sql}")
                steps.extend(row[3] for row in plan)

        (path,) = [row[2] for row in connection.execute("PRAGMA database_list")]
        explain = sqlite3.connect(path)
        connection.set_trace_callback(trace)
        try:
            return original(connection, *arguments)
        finally:
            connection.set_trace_callback(None)
            explain.close()

    monkeypatch.setattr(sqlite, "read_matching", traced)
    return steps


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({"types": "t.3"}, "SEARCH type_index USING PRIMARY KEY (type=? AND global_position>?)"),
        ({"types": "t.#"}, "SEARCH type_index USING PRIMARY KEY (type=? AND global_position>?)"),
        (
            {"streams": "c.2.*"},
            "SEARCH category_index USING PRIMARY KEY (category=? AND global_position>?)",
        ),
    ],
)
async def test_sqlite_filtered_reads_search_the_index_and_the_tail_only(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, filters: dict[str, Any], index: str
) -> None:
    async with EventStore(sqlite_url) as store:
        await asyncio.gather(
            *(store.append(f"c.{n % 5}.{n % 7}", [{"type": f"t.{n % 11}"}] * 3) for n in range(300))
        )
        plans = _trace_plans(monkeypatch)
        events = [e async for e in store.read_all(0, **filters)]
        subscription = store.subscribe(0, **filters)
        async with asyncio.timeout(10):
            followed = [await anext(subscription) for _ in events]
        await subscription.aclose()
        forwards = list(plans)
        plans.clear()
        last = await store.read_all(backwards=True, limit=5, **filters)
        backwards = list(plans)
    assert events and [e.id for e in followed] == [e.id for e in events]
    assert [e.id for e in last] == [e.id for e in reversed(events)][:5]
    # backwards: the same ranges, downwards
    assert index.replace("global_position>?", "global_position<?") in backwards, backwards
    assert "SEARCH events USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)" in backwards
    plans = forwards
    assert index in plans, plans
    # the tail is a range of rowids from where it starts, each page's rows by rowid
    assert "SEARCH events USING INTEGER PRIMARY KEY (rowid>?)" in plans, plans
    assert "SEARCH e USING INTEGER PRIMARY KEY (rowid=?)" in plans, plans
    # nothing is scanned but the rowid list and the one-row index_state; no sort
    assert {step for step in plans if step.startswith("SCAN")} <= {
        "SCAN json_each VIRTUAL TABLE INDEX 1:",
        "SCAN index_state",
    }, plans
    assert not [step for step in plans + backwards if "TEMP B-TREE" in step], plans


async def test_sqlite_a_prefix_of_many_types_is_read_as_one_range(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sqlite_matching, "MAX_TYPE_KEYS", 3)
    async with EventStore(sqlite_url) as store:
        for n in range(300):
            await store.append(f"s.{n % 4}", {"type": f"t.{n % 6}.x"})
        log = await store.read_all()
        found = [e.global_position for e in await store.read_all(types="t.#")]
        some = [e.global_position for e in await store.read_all(types="t.2.*")]
    assert found == [e.global_position for e in log]
    assert some == [e.global_position for e in log if e.type == "t.2.x"]


def _version_5_store(path: str) -> None:
    """An SQLite store of schema 5, as the previous release left it: OLD_LOG, its first 30
    events indexed and the rest in the tail, gone.* deleted."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        for script in MIGRATIONS[:5]:
            connection.executescript(script)
        connection.execute("PRAGMA user_version = 5")
        counts: dict[str, int] = {}
        for position, (stream, type) in enumerate(OLD_LOG):
            number = counts[stream] = counts.get(stream, -1) + 1
            connection.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, 1, X'6e756c6c', NULL, 0, NULL, NULL, ?)",
                (position, stream, number, f"id-{position}", type, position),
            )
        for stream, count in counts.items():
            gone = stream.startswith("gone.")
            connection.execute(
                "INSERT INTO streams VALUES (?, ?, ?)", (stream, count + 1 if gone else 0, gone)
            )
        for statement in INDEX_TAIL[:3]:
            connection.execute(statement.replace("global_position >= ?", "global_position < 30"))
        connection.execute("UPDATE index_state SET indexed_before = 30")
    finally:
        connection.close()


async def test_sqlite_a_store_of_schema_5_reads_the_same_read_only_then_migrated(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "old.db")
    _version_5_store(path)
    for query in ("mode=ro", "immutable=1"):  # as it is: by a scan
        async with EventStore(f"sqlite:///{path}?{query}") as store:
            for filters in SHAPES:
                assert await _positions(store, filters) == _expected(filters), (query, filters)
    # two stores open it at once: one migrates, the other waits and finds it done
    stores = [EventStore(f"sqlite:///{path}") for _ in range(2)]
    try:
        reads = await asyncio.gather(*(_positions(store, SHAPES[1]) for store in stores))
        assert reads == [_expected(SHAPES[1])] * 2
        for filters in SHAPES:
            for start in (0, 17, 30, 35):
                assert await _positions(stores[0], filters, start) == _expected(filters, start)
    finally:
        for store in stores:
            await store.close()
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
        assert connection.execute("SELECT * FROM type_index ORDER BY 2").fetchall() == [
            (type, position) for position, (_, type) in enumerate(OLD_LOG[:30])
        ]
        assert connection.execute("SELECT * FROM category_index ORDER BY 2").fetchall() == [
            (stream.split(".")[0], position, stream)
            for position, (stream, _) in enumerate(OLD_LOG[:30])
        ]
    finally:
        connection.close()
    async with EventStore(f"sqlite:///{path}?mode=ro") as store:  # schema 6: the index
        for filters in SHAPES:
            assert await _positions(store, filters) == _expected(filters)


# -- PostgreSQL ---------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("column", "index"),
    [("type", "pepperpy_events_type"), ("stream", "pepperpy_events_category")],
)
@pytest.mark.parametrize("backwards", [False, True], ids=["forwards", "backwards"])
async def test_postgres_filtered_reads_use_the_index(
    direct: str, schema_admin: Any, column: str, index: str, backwards: bool
) -> None:
    from pepperpy.event.store import _pg_schema

    async with EventStore(direct) as store:
        for round in range(10):
            await asyncio.gather(
                *(
                    store.append(f"c{n % 20}.{n}", [{"type": f"t{n % 20}.x{round % 3}"}] * 5)
                    for n in range(100)
                )
            )
    await schema_admin.execute("ANALYZE pepperpy_events")
    name = ("READ_TYPES" if column == "type" else "READ_CATEGORIES") + (
        "_BACKWARDS" if backwards else ""
    )
    sql = getattr(_pg_schema, name)
    arguments = [["t3"], ["t3."], ["t3/"]] if column == "type" else [["c3"], [], [], [], []]
    # a page of 20 from a key of 250 rows, from the first position or down from the last
    start = 4999 if backwards else 0
    explained = await schema_admin.fetch(f"EXPLAIN {sql}", start, 20, *arguments)
    plan = "\n".join(row[0] for row in explained)
    assert re.search(f"Index (Only )?Scan (Backward )?using {index} ", plan), plan
    # the page's rows are looked up by position: no scan, nor a merge along the log
    assert "Index Cond: (global_position = ANY ($" in plan, plan
    assert "Seq Scan" not in plan and "Merge Join" not in plan, plan


@pytest.mark.postgres
async def test_postgres_a_schema_of_version_2_gains_the_indexes_and_reads_the_same(
    direct: str, schema_admin: Any
) -> None:
    from pepperpy.event.store._pg_schema import _MIGRATIONS

    await schema_admin.execute(_MIGRATIONS[0])
    await schema_admin.execute(_MIGRATIONS[1])
    await schema_admin.execute(
        "CREATE TABLE pepperpy_schema_version (version integer PRIMARY KEY, "
        "applied_at timestamptz NOT NULL DEFAULT now()); "
        "INSERT INTO pepperpy_schema_version (version) VALUES (1), (2)"
    )
    counts: dict[str, int] = {}
    for position, (stream, type) in enumerate(OLD_LOG):
        counts[stream] = counts.get(stream, 0) + 1
        await schema_admin.execute(
            "INSERT INTO pepperpy_events VALUES ($1, $2, $3, $4, $5, 1, 'null', NULL, 0, "
            "NULL, NULL, 0)",
            position,
            stream,
            counts[stream] - 1,
            f"id-{position}",
            type,
        )
    await schema_admin.executemany(
        "INSERT INTO pepperpy_streams VALUES ($1, $2, $3, $4)",
        [
            (name, count, count if name.startswith("gone.") else 0, name.startswith("gone."))
            for name, count in counts.items()
        ],
    )
    await schema_admin.execute("UPDATE pepperpy_head SET next_position = $1", len(OLD_LOG))
    stores = [EventStore(direct) for _ in range(2)]  # both migrate at once: they take turns
    try:
        reads = await asyncio.gather(*(_positions(store, SHAPES[1]) for store in stores))
        assert reads == [_expected(SHAPES[1])] * 2
        for filters in SHAPES:
            for start in (0, 17, 39, 40):
                assert await _positions(stores[0], filters, start) == _expected(filters, start)
        appended = await stores[1].append("order.1", {"type": "order.placed"})
        later = await stores[0].read_all(len(OLD_LOG), types="order.placed")
        assert [e.global_position for e in later] == [appended.global_position]
    finally:
        for store in stores:
            await store.close()
    versions = await schema_admin.fetch("SELECT version FROM pepperpy_schema_version ORDER BY 1")
    assert [row[0] for row in versions] == list(range(1, len(_pg_schema._MIGRATIONS) + 1))
    indexes = await schema_admin.fetch(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename = 'pepperpy_events' ORDER BY 1"
    )
    assert {"pepperpy_events_type", "pepperpy_events_category"} <= {row[0] for row in indexes}
