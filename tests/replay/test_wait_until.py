"""Projection.wait_until: read-your-writes on a read model.

An event-sourcing user appends, then reads the read model; without a way to wait for
the projection to reach the append, they polled ``position`` (audit 6, finding 11).
"""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import Event, EventStore, Projection
from tests.replay.test_table_projection import append, ledger, rows


def tally(store: EventStore) -> Projection:
    projection = Projection("tally", store, initial=lambda: {"n": 0})

    @projection.on("account.credited")
    def count(state: dict[str, int], event: Event) -> None:
        state["n"] += 1

    return projection


async def test_it_returns_once_this_objects_follower_has_committed_the_append(url: str) -> None:
    async with EventStore(url) as store:
        projection = ledger(store)
        follower = asyncio.ensure_future(projection.follow())
        try:
            for n in range(3):
                result = await store.append(
                    f"account.{n}", Event("account.credited", {"amount": n})
                )
                async with asyncio.timeout(15):
                    at = await projection.wait_until(result.global_position)
                assert at >= result.global_position
                credits, _ = await rows(url)  # the read model has the write
                assert result.global_position in credits
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await projection.close()


async def test_it_sees_the_position_another_object_saves(url: str) -> None:
    async with EventStore(url) as store:
        await append(store, 5)
        runner, reader = tally(store), tally(store)  # as in two processes
        waiting = asyncio.ensure_future(reader.wait_until(4))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await runner.run()
        async with asyncio.timeout(15):
            assert await waiting == 4
        assert reader.position is None  # it only looked: its own state is as it was
        await runner.close()
        await reader.close()


async def test_it_waits_within_the_callers_bound_and_checks_its_argument(
    sqlite_url: str,
) -> None:
    async with EventStore(sqlite_url) as store:
        await append(store, 1)
        async with tally(store) as projection:
            await projection.run()
            assert await projection.wait_until(0) == 0
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await projection.wait_until(1)
            with pytest.raises(ValueError, match="global_position"):
                await projection.wait_until(-1)
            with pytest.raises(TypeError, match="global_position"):
                await projection.wait_until("1")  # type: ignore[arg-type]
            # past the greatest position a store holds: it used to wait for ever
            with pytest.raises(ValueError, match="global_position must be an int from 0 to"):
                async with asyncio.timeout(2):
                    await projection.wait_until(2**63)
