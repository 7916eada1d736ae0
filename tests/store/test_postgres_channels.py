"""PostgreSQL live wake-ups: the NOTIFY channel is the tables', whatever URL reaches them.

Named after the ``pepperpy_events`` table (its OID), not after the URL's ``?schema=``: two
URLs reaching the same tables share it, and stores in other schemas never do. A payload
only wakes the waiters, who re-read: a channel named after the URL, which writers still
notify for earlier versions, may be shared by stores in other schemas.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from pepperpy.event import EventStore
from pepperpy.event.store import _pg_schema
from tests.helpers import eventually

pytestmark = pytest.mark.postgres


async def _admin(url: str, sql: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _listening(url: str) -> None:
    """Wait until a store's LISTEN connection on ``url``'s database listens."""
    connection = await asyncpg.connect(url)
    try:
        for _ in range(500):
            found = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'pepperpy-event-listener' AND query LIKE 'LISTEN%'"
            )
            if found:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the store's LISTEN connection never listened")
    finally:
        await connection.close()


@pytest.mark.parametrize(
    ("reader", "writer"),
    [("", "?schema=public"), ("?schema=public", ""), ("?search_path=s1", "?schema=s1")],
)
async def test_a_live_subscription_sees_appends_through_another_url_to_its_tables(
    postgres_url: str, reader: str, writer: str
) -> None:
    # both URLs name the same tables: the channel was named after ?schema=, so these
    # notified a channel the other did not listen on, and the subscription stalled
    await _admin(postgres_url, "CREATE SCHEMA s1")
    async with EventStore(postgres_url + writer) as writing:
        await writing.append("seed.1", {"type": "seed"})  # the tables exist
        async with EventStore(postgres_url + reader) as reading:
            subscription = reading.subscribe()
            assert (await asyncio.wait_for(anext(subscription), 10)).type == "seed"
            pending = asyncio.ensure_future(anext(subscription))
            await _listening(postgres_url)
            await asyncio.sleep(0.6)  # past the first wait's 0.5 s re-read: now it listens
            await writing.append("live.1", {"type": "live"})
            try:
                event = await asyncio.wait_for(pending, 10)
            finally:
                pending.cancel()
            assert event.type == "live"
            await subscription.aclose()


async def test_an_idle_subscription_is_not_kept_busy_by_another_schemas_appends(
    postgres_url: str,
) -> None:
    # two stores, schemas chosen by ?search_path=: they share the URL's channel (no
    # ?schema=); its payload, the other store's head, was taken as this one's, and an
    # idle subscription re-read in a loop (thousands of reads a second)
    await _admin(postgres_url, "CREATE SCHEMA xa; CREATE SCHEMA xb")
    async with (
        EventStore(postgres_url + "?search_path=xa") as a,
        EventStore(postgres_url + "?search_path=xb") as b,
    ):
        await a.append("a.1", {"type": "t"})
        await b.append("b.1", [{"type": "t"} for _ in range(50)])
        reads = 0
        backend: Any = a.backend
        read_all: Callable[..., Awaitable[Any]] = backend.read_all

        async def counting(*args: Any) -> Any:
            nonlocal reads
            reads += 1
            return await read_all(*args)

        backend.read_all = counting
        got: list[str] = []

        async def follow() -> None:
            async for event in a.subscribe():
                got.append(event.type)

        task = asyncio.ensure_future(follow())
        try:
            await eventually(lambda: len(got) == 1)
            await _listening(postgres_url)
            await asyncio.sleep(0.6)  # past the first wait's 0.5 s re-read
            before = reads
            await b.append("b.1", {"type": "t"})
            await asyncio.sleep(1.0)
            assert reads - before <= 5  # a wake-up costs a read, not a loop of them
            assert got == ["t"]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_a_subscription_wakes_on_a_writer_of_an_earlier_version(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an earlier version's writer notifies only the channel named after the URL
    async with EventStore(postgres_url) as reading, EventStore(postgres_url) as writing:
        await writing.append("seed.1", {"type": "seed"})
        subscription = reading.subscribe()
        assert (await asyncio.wait_for(anext(subscription), 10)).type == "seed"
        pending = asyncio.ensure_future(anext(subscription))
        await _listening(postgres_url)
        await asyncio.sleep(0.6)
        old = _pg_schema._WRITE.replace(f"pg_notify({_pg_schema.CHANNEL_OF_TABLES}, ", "(")
        assert old != _pg_schema._WRITE
        monkeypatch.setattr(_pg_schema, "_WRITE", old)
        await writing.append("live.1", {"type": "live"})
        try:
            assert (await asyncio.wait_for(pending, 10)).type == "live"
        finally:
            pending.cancel()
        await subscription.aclose()


@pytest.mark.parametrize(
    ("suffix", "channel"), [("", "pepperpy_events"), ("?schema=k1", "pepperpy_events_k1")]
)
async def test_appends_still_notify_the_channel_earlier_versions_listen_on(
    postgres_url: str, suffix: str, channel: str
) -> None:
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(postgres_url)
    try:
        await listener.add_listener(channel, lambda *args: heard.put_nowait(args[3]))
        async with EventStore(postgres_url + suffix) as store:
            await store.append("x.1", [{"type": "t"}, {"type": "t"}])
        assert await asyncio.wait_for(heard.get(), 10) == "2"  # the new head, as before
    finally:
        await listener.close()
