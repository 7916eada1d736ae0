"""A projection's saved state remembers the streams and types it was folded from.

It was saved under the projection's name alone: a projection of that name made with other
filters (changed ones, or another service's) resumed the state as if it were its own,
folding new events into a state derived from other ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import (
    CheckpointStore,
    ConfigurationError,
    Event,
    EventStore,
    MemoryCheckpointStore,
    Projection,
    TableProjection,
)


@pytest.fixture
def url(any_store_url: str) -> str:
    return any_store_url  # every backend, not only the SQL ones of replay/conftest.py


@pytest.fixture
async def store(url: str) -> AsyncIterator[EventStore]:
    async with EventStore(url) as events:
        await events.append("order.1", Event("order.placed", {"n": 1}))
        await events.append("user.1", Event("user.created", {"n": 2}))
        yield events


#: one state store per test for the memory event store (SQL ones keep it in their database)
SHARED: dict[str, CheckpointStore] = {}


@pytest.fixture(autouse=True)
def _fresh_shared() -> None:
    SHARED.clear()


def counts(
    store: EventStore, streams: str | list[str] | None = "order.*", types: str | None = None
) -> Projection:
    state_store = (
        SHARED.setdefault("m", MemoryCheckpointStore()) if store.url == "memory://" else None
    )
    projection = Projection("counts", store, streams=streams, types=types, state_store=state_store)

    @projection.on("#")
    def count(state: dict[str, Any], event: Event) -> None:
        state[event.stream] = state.get(event.stream, 0) + 1

    return projection


async def saved(store: EventStore, **filters: Any) -> None:
    async with counts(store, **filters) as projection:
        await projection.run()
        assert projection.state == {"order.1": 1}


async def test_other_streams_are_refused_naming_both_and_the_remedy(store: EventStore) -> None:
    await saved(store)
    async with counts(store, "user.*") as other:
        for call in (other.load, other.run, lambda: other.wait_until(0), other.follow):
            with pytest.raises(ConfigurationError) as refused:
                await call()
            message = str(refused.value)
            assert "['order.*']" in message and "['user.*']" in message
            assert "rebuild()" in message
            assert (other.state, other.position) == ({}, None)  # nothing loaded
    async with counts(store) as same:  # the state is as it was
        assert await same.load() == {"order.1": 1}


async def test_other_types_are_refused(store: EventStore) -> None:
    await saved(store)
    async with counts(store, types="order.shipped") as other:
        with pytest.raises(ConfigurationError, match=r"types \['order.shipped'\]"):
            await other.run()


async def test_the_same_patterns_in_another_order_are_the_same_scope(store: EventStore) -> None:
    await saved(store, streams=["order.*", "cart.*"])
    async with counts(store, ["cart.*", "order.*", "cart.*"]) as same:
        assert await same.load() == {"order.1": 1}
        await store.append("order.2", Event("order.placed", {"n": 3}))
        await same.run()
        assert same.state == {"order.1": 1, "order.2": 1}


async def test_a_rebuild_starts_over_with_the_new_filters_and_records_them(
    store: EventStore,
) -> None:
    await saved(store)
    async with counts(store, "user.*") as other:
        report = await other.rebuild()
        assert report.replayed == 1 and other.state == {"user.1": 1}
    async with counts(store, "user.*") as again:  # the new scope is the saved one now
        assert await again.load() == {"user.1": 1}
    async with counts(store) as old:
        with pytest.raises(ConfigurationError, match=r"\['user.\*'\]"):
            await old.load()


async def test_a_rebuild_with_nothing_to_apply_still_records_the_new_scope(
    store: EventStore,
) -> None:
    await saved(store)
    async with counts(store, "nothing.*") as other:
        await other.rebuild()
        assert (other.state, other.position) == ({}, None)
    async with counts(store) as old:
        with pytest.raises(ConfigurationError, match=r"\['nothing.\*'\]"):
            await old.run()


async def test_a_state_saved_without_a_scope_is_adopted_and_the_scope_recorded(
    store: EventStore,
) -> None:
    async with counts(store) as legacy:  # saved as an older version saved it: no scope
        await legacy.state_store.save("projection:counts", 0, {"order.1": 1}, previous=None)
    async with counts(store) as adopted:
        assert await adopted.load() == {"order.1": 1}
        await adopted.run()  # records the scope
        assert adopted.state == {"order.1": 1}
    async with counts(store, "user.*") as other:
        with pytest.raises(ConfigurationError):
            await other.load()


async def test_the_scope_rows_are_not_listed_as_checkpoints(store: EventStore) -> None:
    await saved(store)
    async with counts(store) as projection:
        assert await projection.state_store.names() == ["projection:counts"]


# -- table projections (SQLite and PostgreSQL) ----------------------------------------


def ledger(store: EventStore, streams: str) -> TableProjection:
    sqlite = store.url.startswith("sqlite")
    if sqlite:

        def setup(db: sqlite3.Connection) -> None:
            db.execute("CREATE TABLE IF NOT EXISTS seen (stream TEXT)")

        def reset(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM seen")

        def add(db: sqlite3.Connection, event: Event) -> None:
            db.execute("INSERT INTO seen VALUES (?)", (event.stream,))

        projection = TableProjection("ledger", store, setup=setup, reset=reset, streams=streams)
        projection.on("#", add)
        return projection

    async def asetup(db: Any) -> None:
        await db.execute("CREATE TABLE IF NOT EXISTS seen (stream TEXT)")

    async def areset(db: Any) -> None:
        await db.execute("DELETE FROM seen")

    async def aadd(db: Any, event: Event) -> None:
        await db.execute("INSERT INTO seen VALUES ($1)", event.stream)

    projection = TableProjection("ledger", store, setup=asetup, reset=areset, streams=streams)
    projection.on("#", aadd)
    return projection


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    value: str = request.getfixturevalue("postgres_url")
    return value


async def test_a_table_projection_remembers_its_scope_too(sql_url: str) -> None:
    async with EventStore(sql_url) as store:
        await store.append("order.1", Event("order.placed", {"n": 1}))
        await store.append("user.1", Event("user.created", {"n": 2}))
        await tables_of_other_scopes(store)


async def tables_of_other_scopes(store: EventStore) -> None:
    async with ledger(store, "order.*") as first:
        await first.run()
    async with ledger(store, "user.*") as other:
        with pytest.raises(ConfigurationError, match=r"table projection 'ledger'"):
            await other.run()
        assert await other.state_store.names() == ["tables:ledger"]
        await other.rebuild()  # empties the tables, records the new scope
        assert other.position == 1
    async with ledger(store, "user.*") as again:
        assert await again.load() == 1
    async with ledger(store, "order.*") as old:
        with pytest.raises(ConfigurationError, match=r"\['user.\*'\]"):
            await old.load()
