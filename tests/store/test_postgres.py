"""The conformance suite on PostgreSQL, plus many writers, races, reconnects and crashes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from pepperpy.event import (
    AppendResult,
    ConcurrencyError,
    ConfigurationError,
    Event,
    EventStore,
    StoreError,
)
from tests.conftest import unique_name
from tests.helpers import eventually
from tests.store.conformance import MakeStore, StoreConformance
from tests.store.crash import assert_survives_sigkill

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def shared_database(postgres_server: str) -> Iterator[str]:
    """One database for the module; each test gets its own schema in it (fast to make)."""
    name = unique_name("pepperpy")

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(f"{postgres_server}/postgres")
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield f"{postgres_server}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class TestPostgresStore(StoreConformance):
    @pytest.fixture
    async def store_url(self, shared_database: str) -> AsyncIterator[str]:
        schema = unique_name("s")
        yield f"{shared_database}?schema={schema}"
        connection = await asyncpg.connect(shared_database)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()

    async def test_stores_in_two_schemas_of_one_database_are_independent(
        self, shared_database: str
    ) -> None:
        first = EventStore(f"{shared_database}?schema={unique_name('a')}")
        second = EventStore(f"{shared_database}?schema={unique_name('b')}")
        try:
            await first.append("same.name", {"type": "in.first"})
            subscription = second.subscribe()
            pending = asyncio.ensure_future(anext(subscription))
            await asyncio.sleep(0.1)
            await first.append("same.name", {"type": "in.first.again"})
            await second.append("same.name", {"type": "in.second"})
            assert (await asyncio.wait_for(pending, 5)).type == "in.second"
            assert [e.type for e in await second.read_all()] == ["in.second"]
            assert len(await first.read_all()) == 2
        finally:
            await first.close()
            await second.close()
            connection = await asyncpg.connect(shared_database)
            try:
                for store in (first, second):
                    schema = store.url.rsplit("=", 1)[1]
                    await connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
            finally:
                await connection.close()

    def test_a_bad_schema_name_is_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="schema"):
            EventStore("postgresql://localhost/db?schema=Robert'); DROP TABLE x;--")

    @pytest.mark.slow
    async def test_eight_stores_times_two_hundred_appends_while_a_subscriber_follows(
        self, make_store: MakeStore
    ) -> None:
        follower_store = make_store()
        seen: list[Event] = []

        async def follow() -> None:
            async for event in follower_store.subscribe():
                seen.append(event)

        follower = asyncio.create_task(follow())
        writers = [make_store() for _ in range(8)]

        async def write(number: int, store: EventStore) -> None:
            for n in range(200):
                await store.append(f"w.{number}.{n % 3}", {"type": "tick", "data": {"n": n}})

        await asyncio.gather(*(write(number, store) for number, store in enumerate(writers)))
        await eventually(lambda: len(seen) >= 1600, timeout=30)
        await asyncio.sleep(0.1)
        positions = [e.global_position for e in seen]
        assert positions == list(range(1600))  # every event, in global order, none twice
        for number in range(8):
            prefix = f"w.{number}."
            mine = [e.data["n"] for e in seen if (e.stream or "").startswith(prefix)]
            assert mine == list(range(200))
        await follower_store.close()
        await asyncio.wait_for(follower, 5)

    async def test_two_stores_racing_on_one_expected_version_exactly_one_wins(
        self, make_store: MakeStore
    ) -> None:
        first, second = make_store(), make_store()
        await first.append("race.1", {"type": "open"})

        async def attempt(store: EventStore, expected: int) -> AppendResult | ConcurrencyError:
            try:
                return await store.append("race.1", {"type": "move"}, expected_version=expected)
            except ConcurrencyError as exc:
                return exc

        for round_number in range(10):
            outcomes = await asyncio.gather(
                attempt(first, round_number), attempt(second, round_number)
            )
            assert sorted(type(o).__name__ for o in outcomes) == [
                "AppendResult",
                "ConcurrencyError",
            ]
        assert await first.stream_version("race.1") == 10

    async def test_a_subscription_survives_a_dropped_listener_connection(
        self, make_store: MakeStore, shared_database: str
    ) -> None:
        store, writer = make_store(), make_store()
        subscription = store.subscribe()
        await writer.append("live.1", {"type": "before"})
        assert (await asyncio.wait_for(anext(subscription), 5)).type == "before"
        pending = asyncio.ensure_future(anext(subscription))
        await asyncio.sleep(0.2)  # the listener is connected and LISTENing
        admin = await asyncpg.connect(shared_database)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'pepperpy-event-listener' "
                "AND datname = current_database()"
            )
        finally:
            await admin.close()
        assert killed >= 1
        await asyncio.sleep(0.1)
        await writer.append("live.1", {"type": "after"})
        event = await asyncio.wait_for(pending, 10)
        assert event.type == "after"
        await writer.append("live.1", {"type": "later"})
        assert (await asyncio.wait_for(anext(subscription), 10)).type == "later"

    async def test_stores_starting_at_once_create_the_schema_once(self, postgres_url: str) -> None:
        stores = [EventStore(postgres_url) for _ in range(4)]  # a fresh database, no schema=
        try:
            await asyncio.gather(
                *(s.append(f"boot.{i}", {"type": "t"}) for i, s in enumerate(stores))
            )
            assert len(await stores[0].read_all()) == 4
        finally:
            for store in stores:
                await store.close()
        admin = await asyncpg.connect(postgres_url)
        try:
            versions = await admin.fetch("SELECT version FROM public.pepperpy_schema_version")
        finally:
            await admin.close()
        assert [row[0] for row in versions] == [1]

    async def test_an_unreachable_server_raises_store_error(self) -> None:
        store = EventStore("postgresql://postgres@127.0.0.1:1/nowhere")
        try:
            with pytest.raises(StoreError, match="cannot connect"):
                await store.append("x.1", {"type": "t"})
        finally:
            await store.close()

    @pytest.mark.slow
    async def test_acknowledged_appends_survive_sigkill(self, postgres_url: str) -> None:
        await assert_survives_sigkill(postgres_url)
