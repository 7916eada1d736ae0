"""Projection.wait_until for a position the projection cannot reach, or not yet.

It used to wait for ever (or until the caller's timeout, with no word of why) when the
store was closed, before or during the wait, and when the position was past the head of
a store nothing appends to; a timeout on a position never written gave no hint that the
position was not this store's.
"""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import ClosedError, Event, EventStore, Projection
from tests.replay.test_table_projection import append
from tests.store.pgfaultproxy import PgFaultProxy, proxied


def tally(store: EventStore, **options: str) -> Projection:
    projection = Projection("tally", store, initial=lambda: {"n": 0}, **options)

    @projection.on("account.credited")
    def count(state: dict[str, int], event: Event) -> None:
        state["n"] += 1

    return projection


def notes_of(timeout: BaseException) -> str:
    cause = timeout.__cause__
    return "\n".join(getattr(cause, "__notes__", []))


async def test_a_closed_store_is_said_at_once(any_store_url: str) -> None:
    store = EventStore(any_store_url)
    await append(store, 3)
    async with tally(store) as projection:
        await projection.run()
        await store.close()
        assert await projection.wait_until(2) == 2  # reached already: nothing to wait for
        with pytest.raises(ClosedError, match=r"'tally' cannot reach global position 9: the "):
            async with asyncio.timeout(10):
                await projection.wait_until(9)


async def test_closing_the_store_ends_a_wait(any_store_url: str) -> None:
    store = EventStore(any_store_url)
    await append(store, 3)
    async with tally(store) as projection:
        waiting = asyncio.ensure_future(projection.wait_until(2))  # nobody runs it
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await store.close()
        with pytest.raises(ClosedError, match="event store is closed"):
            async with asyncio.timeout(10):
                await waiting


async def test_a_timeout_past_the_head_says_the_position_was_never_written(
    any_store_url: str,
) -> None:
    async with EventStore(any_store_url) as store:
        await append(store, 2)
        async with tally(store) as projection:
            await projection.run()
            with pytest.raises(TimeoutError) as timed_out:
                async with asyncio.timeout(0.5):
                    await projection.wait_until(5)
            assert (
                "global position 5, which is past the store's newest event (global "
                "position 1)" in notes_of(timed_out.value)
            )
            # in the log but not applied (nobody runs the projection): no such note
            await append(store, 4, first=2)
            with pytest.raises(TimeoutError) as timed_out:
                async with asyncio.timeout(0.5):
                    await projection.wait_until(5)
            assert notes_of(timed_out.value) == ""


async def test_a_position_past_the_head_is_waited_for_until_written(any_store_url: str) -> None:
    async with EventStore(any_store_url) as store:
        await append(store, 1)
        runner, reader = tally(store), tally(store)
        waiting = asyncio.ensure_future(reader.wait_until(3))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await append(store, 3, first=1)  # another writer appends it
        await runner.run()
        async with asyncio.timeout(15):
            assert await waiting == 3
        await runner.close()
        await reader.close()


async def test_past_the_head_of_a_store_nothing_appends_to_is_refused(
    sqlite_url: str, tmp_path: object
) -> None:
    async with EventStore(sqlite_url) as store:
        await append(store, 2)
    async with EventStore(f"{sqlite_url}?immutable=1") as store:
        async with tally(store, state_store=f"sqlite:///{tmp_path}/views.db") as projection:
            with pytest.raises(
                ValueError,
                match=r"global position 7: it is past the store's "
                r"newest event \(global position 1\), and nothing is appended",
            ):
                async with asyncio.timeout(10):
                    await projection.wait_until(7)
            await projection.run()
            assert await projection.wait_until(1) == 1


@pytest.mark.postgres
@pytest.mark.parametrize("filtered", [False, True])
async def test_an_outage_of_the_event_store_alone_does_not_end_the_wait(
    postgres_url: str, tmp_path: object, filtered: bool
) -> None:
    """The state store elsewhere (an SQLite file) still says where the projection is:
    the head that cannot be read meanwhile is no reason to give up."""
    views = f"sqlite:///{tmp_path}/views.db"
    async with PgFaultProxy() as proxy, EventStore(postgres_url) as direct:
        await append(direct, 3)
        through = proxied(postgres_url, proxy.port, command_timeout=3, connect_timeout=2)
        async with EventStore(through) as store:
            scope = {"types": "account.*"} if filtered else {}
            reader = tally(store, state_store=views, **scope)
            runner = tally(direct, state_store=views, **scope)
            assert await store.head() == 2  # its connections are open
            proxy.refuse()
            proxy.drop()
            waiting = asyncio.ensure_future(reader.wait_until(2))
            await asyncio.sleep(1.5)
            assert not waiting.done() or waiting.exception() is None
            await runner.run()
            async with asyncio.timeout(15):
                assert await waiting == 2
            proxy.heal()
            await runner.close()
            await reader.close()
