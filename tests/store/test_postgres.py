"""The conformance suite on PostgreSQL, plus many writers, races, reconnects and crashes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterator

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
from pepperpy.event.store.base import ANY, NewRecord
from pepperpy.event.store.postgres import PostgresBackend
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


# -- group commit failures, cancelled callers, and a store used from a new event loop ----


@pytest.fixture
def schema_url(shared_database: str) -> Iterator[str]:
    """A store URL in a schema of its own, for tests that run their own event loops."""
    schema = unique_name("s")
    yield f"{shared_database}?schema={schema}"

    async def drop() -> None:
        connection = await asyncpg.connect(shared_database)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()

    asyncio.run(drop())


def record(n: int, **changes: object) -> NewRecord:
    """A record ready for the backend, with values the facade would refuse if asked."""
    fields = {
        "id": f"id-{n}",
        "type": "ok",
        "version": 1,
        "data": b"{}",
        "metadata": None,
        "timestamp": 0,
        "source": None,
        "subject": None,
        **changes,
    }
    return NewRecord(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "refused",
    [
        {"type": "bad\x00type"},  # PostgreSQL refuses NUL in text (SQLSTATE 22021)
        {"version": 2**31},  # beyond the int4 column (asyncpg's encoder, 22000)
        {"source": 123},  # not text at all (asyncpg's encoder, 22000)
        {"id": "\ud800"},  # not encodable as UTF-8 (asyncpg's encoder, 22000)
    ],
    ids=["nul", "int4-overflow", "not-text", "surrogate"],
)
async def test_a_value_postgresql_refuses_fails_only_its_own_append(
    schema_url: str, refused: dict[str, object]
) -> None:
    backend = PostgresBackend(schema_url)
    try:
        async with asyncio.timeout(30):
            await backend.append("warm.1", [record(0)], ANY)
            calls: list[Awaitable[AppendResult]] = [
                backend.append(f"good.{n}", [record(n)], ANY) for n in range(10)
            ]
            calls.insert(0, backend.append("bad.1", [record(100, **refused)], ANY))
            calls.insert(6, backend.append("bad.2", [record(101, **refused)], ANY))
            # a later append in the group sees an earlier one, as if each ran alone
            calls.append(backend.append("good.0", [record(200)], 0))
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            assert isinstance(outcomes[0], StoreError)
            assert isinstance(outcomes[6], StoreError)
            assert "PostgreSQL" in str(outcomes[0])
            good = [outcome for n, outcome in enumerate(outcomes) if n not in (0, 6)]
            assert all(isinstance(outcome, AppendResult) for outcome in good)
            positions = [outcome.global_position for outcome in good]  # type: ignore[union-attr]
            assert positions == list(range(1, 12))  # in queue order, no gaps
            page = await backend.read_all(0, 100)
            assert [row[1] for row in page.rows] == [
                "warm.1",
                *(f"good.{n}" for n in range(10)),
                "good.0",
            ]
            assert await backend.stream_state("bad.1") is None
    finally:
        await backend.close()


async def test_a_caller_cancelled_before_its_group_is_written_is_not_written(
    schema_url: str,
) -> None:
    store = EventStore(schema_url)
    try:
        async with asyncio.timeout(30):
            await store.append("warm.1", {"type": "t"})
            task = asyncio.create_task(store.append("order.1", {"type": "order.placed"}))
            await asyncio.sleep(0)  # queued for the next group, not taken yet
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await store.append("later.1", {"type": "t"})  # the next group is written
            assert await store.get_stream("order.1") == []
            assert [e.stream for e in await store.read_all()] == ["warm.1", "later.1"]
    finally:
        await store.close()


def test_a_store_appends_again_on_a_second_event_loop(schema_url: str) -> None:
    store = EventStore(schema_url)

    async def first() -> None:
        async with asyncio.timeout(30):
            await store.append("loop.1", {"type": "first"})
            await store.read_all()

    async def second() -> list[str]:
        try:
            async with asyncio.timeout(30):
                await store.append("loop.1", {"type": "second"}, expected_version=0)
                return [event.type for event in await store.get_stream("loop.1")]
        finally:
            await store.close()

    asyncio.run(first())  # ends without closing the store: the loop's connections go
    assert asyncio.run(second()) == ["first", "second"]


def test_a_subscription_waits_on_a_second_event_loop(schema_url: str) -> None:
    store = EventStore(schema_url)

    async def first() -> None:
        async with asyncio.timeout(30):
            await store.append("live.1", {"type": "first"})
            subscription = store.subscribe()
            assert (await anext(subscription)).type == "first"
            with pytest.raises(TimeoutError):  # waits live on this loop once
                await asyncio.wait_for(anext(subscription), 0.3)

    async def second() -> str:
        try:
            async with asyncio.timeout(30):
                pending = asyncio.ensure_future(anext(store.subscribe(from_position=1)))
                await asyncio.sleep(0.2)  # waiting live
                await store.append("live.1", {"type": "second"})
                return (await asyncio.wait_for(pending, 10)).type
        finally:
            await store.close()

    asyncio.run(first())
    assert asyncio.run(second()) == "second"


def test_loops_in_two_threads_append_to_one_store_at_once(schema_url: str) -> None:
    store = EventStore(schema_url)

    async def write(number: int) -> None:
        async with asyncio.timeout(30):
            for n in range(20):
                await store.append(f"thread.{number}", {"type": "tick", "data": {"n": n}})

    async def both() -> list[Event]:
        try:
            async with asyncio.timeout(60):
                await asyncio.gather(
                    asyncio.to_thread(asyncio.run, write(0)),
                    asyncio.to_thread(asyncio.run, write(1)),
                    write(2),
                )
                return await store.read_all()
        finally:
            await store.close()

    events = asyncio.run(both())
    assert [e.global_position for e in events] == list(range(60))
    for number in range(3):
        mine = [e.data["n"] for e in events if e.stream == f"thread.{number}"]
        assert mine == list(range(20))


async def test_a_group_failing_for_a_lost_server_is_not_retried_in_parts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = PostgresBackend("postgresql://postgres@127.0.0.1:1/nowhere")
    attempts: list[int] = []
    commit_group = backend._commit_group

    async def counting(on: object, appends: list[object]) -> object:
        attempts.append(len(appends))
        return await commit_group(on, appends)  # type: ignore[arg-type]

    monkeypatch.setattr(backend, "_commit_group", counting)
    try:
        async with asyncio.timeout(30):
            outcomes = await asyncio.gather(
                *(backend.append(f"s.{n}", [record(n)], ANY) for n in range(8)),
                return_exceptions=True,
            )
        assert all(isinstance(outcome, StoreError) for outcome in outcomes)
        assert attempts == [8]  # one try for the whole group, not one per part
    finally:
        await backend.close()
