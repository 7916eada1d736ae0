"""A projection's state on PostgreSQL reads back exactly as committed, and older tables
are converted.

The checkpoint table kept the state as ``jsonb``, which reorders an object's keys (by
length, then bytes) and turns ``-0.0`` into ``0.0``: a read model that evicts its oldest
entry (``next(iter(state))``) evicted another one after a restart on PostgreSQL, while
SQLite and memory keep the order. The state is now the JSON text itself (``bytea``, as
event data is), and a ``jsonb`` column of an older table is converted on first use,
under the schema lock, by however many stores open it at once.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import Event, EventStore, PostgresCheckpointStore, Projection

#: the table as the code before this change made it
OLD_TABLE = (
    "CREATE TABLE pepperpy_checkpoints (name TEXT PRIMARY KEY, position BIGINT NOT NULL, "
    "state JSONB, updated_at TIMESTAMPTZ NOT NULL)"
)


def last_three(store: EventStore) -> Projection:
    """A read model of the last three orders placed: it evicts the oldest key."""
    projection = Projection("recent", store, initial={})

    @projection.on("order.placed")
    def keep(state: dict[str, int], event: Event) -> None:
        state[event.data["id"]] = event.data["amount"]
        while len(state) > 3:
            del state[next(iter(state))]

    return projection


async def test_a_projection_restarted_between_events_keeps_its_order_on_sqlite(
    tmp_path: Path,
) -> None:
    await restart_between_events(f"sqlite:///{tmp_path / 'orders.db'}")


@pytest.mark.postgres
async def test_a_projection_restarted_between_events_keeps_its_order_on_postgres(
    postgres_url: str,
) -> None:
    await restart_between_events(postgres_url)


async def restart_between_events(url: str) -> None:
    ids = ["o-100", "o-2", "o-30000", "o-4"]  # jsonb orders keys by length: o-2 first
    async with EventStore(url) as store:
        for n, order in enumerate(ids[:3]):
            await store.append(f"order.{n}", Event("order.placed", {"id": order, "amount": n}))
        async with last_three(store) as first:  # the first process stops here
            await first.run()
            assert list(first.state) == ["o-100", "o-2", "o-30000"]
        await store.append("order.3", Event("order.placed", {"id": ids[3], "amount": 3}))
        async with last_three(store) as restarted:  # the next one resumes
            assert list(await restarted.load()) == ["o-100", "o-2", "o-30000"]
            await restarted.run()
            resumed = restarted.state
        async with last_three(store) as straight:
            await straight.rebuild()  # all four events in one run
            assert straight.state == {"o-2": 1, "o-30000": 2, "o-4": 3}
    assert resumed == straight.state
    assert list(resumed) == list(straight.state)


async def _admin(url: str, *statements: tuple[Any, ...]) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        for statement in statements:
            await connection.execute(*statement)
    finally:
        await connection.close()


async def _state_type(url: str, schema: str = "public") -> str:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        kind: str = await connection.fetchval(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = $1 "
            "AND table_name = 'pepperpy_checkpoints' AND column_name = 'state'",
            schema,
        )
    finally:
        await connection.close()
    return kind


@pytest.mark.postgres
@pytest.mark.parametrize("schema", [None, "shop"])
async def test_an_old_jsonb_table_is_converted_on_first_use(
    postgres_url: str, schema: str | None
) -> None:
    where = "public" if schema is None else schema
    # written as the old code wrote them: the JSON text cast to jsonb, or NULL
    await _admin(
        postgres_url,
        (f'CREATE SCHEMA IF NOT EXISTS "{where}"',),
        (f'SET search_path TO "{where}"',),
        (OLD_TABLE,),
        (
            "INSERT INTO pepperpy_checkpoints VALUES ($1, $2, $3::jsonb, now())",
            "projection:recent",
            7,
            '{"o-100":0,"o-2":1,"nested":{"bb":1,"a":[1.5,"x"]}}',
        ),
        ("INSERT INTO pepperpy_checkpoints VALUES ('replay:nightly', 3, NULL, now())",),
    )
    url = postgres_url if schema is None else f"{postgres_url}?schema={schema}"
    store = PostgresCheckpointStore(url)
    try:
        old = await store.load("projection:recent")
        assert old is not None and old.position == 7
        # the old row reads as jsonb kept it (the order it was saved in was lost then)
        assert old.state == {"o-2": 1, "o-100": 0, "nested": {"a": [1.5, "x"], "bb": 1}}
        assert list(old.state) == ["o-2", "o-100", "nested"]
        nightly = await store.load("replay:nightly")
        assert nightly is not None and (nightly.position, nightly.state) == (3, None)
        assert await _state_type(postgres_url, where) == "bytea"
        # from now on a state keeps its order
        await store.save("projection:recent", 8, {"o-100": 0, "o-2": 1, "z": -0.0}, previous=7)
        await store.save("fresh", 1, {"zz": 1, "a": 2}, previous=None)
    finally:
        await store.close()
    again = PostgresCheckpointStore(url)  # a store opening the converted table
    try:
        saved = await again.load("projection:recent")
        assert saved is not None and repr(saved.state) == "{'o-100': 0, 'o-2': 1, 'z': -0.0}"
        fresh = await again.load("fresh")
        assert fresh is not None and list(fresh.state) == ["zz", "a"]
    finally:
        await again.close()


@pytest.mark.postgres
async def test_stores_opening_an_old_table_at_once_all_work(postgres_url: str) -> None:
    for round_ in range(3):  # a race: give it a few tables to show up on
        schema = f"r{round_}"
        await _admin(
            postgres_url,
            (f'CREATE SCHEMA "{schema}"',),
            (f'SET search_path TO "{schema}"',),
            (OLD_TABLE,),
            (
                "INSERT INTO pepperpy_checkpoints VALUES ('kept', 1, $1::jsonb, now())",
                '{"b":1,"a":2}',
            ),
        )
        stores = [PostgresCheckpointStore(f"{postgres_url}?schema={schema}") for _ in range(8)]
        try:
            loaded = await asyncio.gather(*(store.load("kept") for store in stores))
            assert [c.state if c else None for c in loaded] == [{"a": 2, "b": 1}] * 8
            await asyncio.gather(
                *(
                    store.save(f"new-{n}", n, {"y": n, "x": -0.0}, previous=None)
                    for n, store in enumerate(stores)
                )
            )
            for n, store in enumerate(stores):
                saved = await store.load(f"new-{(n + 1) % 8}")
                assert (
                    saved is not None and repr(saved.state) == f"{{'y': {(n + 1) % 8}, 'x': -0.0}}"
                )
        finally:
            for store in stores:
                await store.close()
        assert await _state_type(postgres_url, schema) == "bytea"


#: one process: open a checkpoint store on the old table and use it
WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from pepperpy.event._checkpoints import PostgresCheckpointStore

    async def main(url, n):
        store = PostgresCheckpointStore(url)
        try:
            kept = await store.load("kept")
            assert kept is not None and kept.state == {"a": 2, "b": 1}, kept
            await store.save(f"p{n}", 1, {"y": 1, "x": 2}, previous=None)
            saved = await store.load(f"p{n}")
            assert list(saved.state) == ["y", "x"], saved
        finally:
            await store.close()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


@pytest.mark.postgres
async def test_processes_opening_an_old_table_at_once_all_work(postgres_url: str) -> None:
    await _admin(
        postgres_url,
        (OLD_TABLE,),
        ("INSERT INTO pepperpy_checkpoints VALUES ('kept', 1, $1::jsonb, now())", '{"b":1,"a":2}'),
    )
    started = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER,
            postgres_url,
            str(n),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(4)
    ]
    for process in started:
        _, err = await asyncio.wait_for(process.communicate(), 90)
        assert process.returncode == 0, err.decode()
    assert await _state_type(postgres_url) == "bytea"
