"""Projection.close() ends the projection's follow() under way.

It used to close the state store and leave the follower running: its next commit opened
the state store again, whose connections nothing closed, and it went on applying events
after ``async with Projection(...)`` had ended.
"""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import ClosedError, Event, EventStore, Projection


def counter(store: EventStore) -> Projection:
    projection = Projection("counter", store, initial=lambda: {"n": 0})
    projection.on("tick.*", lambda state, event: {"n": state["n"] + 1})
    return projection


async def test_close_ends_a_live_follow_after_its_commit(any_store_url: str) -> None:
    async with EventStore(any_store_url) as store:
        await store.append("clock.1", [Event("tick.tock") for _ in range(5)])
        projection = counter(store)
        follower = asyncio.ensure_future(projection.follow())
        async with asyncio.timeout(30):
            assert await projection.wait_until(4) == 4  # live
            await projection.close()
            assert await follower is None  # it returned, as when the store is closed
        await store.append("clock.1", [Event("tick.tock") for _ in range(3)])
        await asyncio.sleep(0.3)
        assert (projection.state, projection.position) == ({"n": 5}, 4)  # nothing after
        async with counter(store) as saved:
            assert await saved.load() == {"n": 5}
            assert saved.position == 4
        # the object can be used again: a run resumes from the saved state
        report = await projection.run()
        assert (report.replayed, projection.state) == (3, {"n": 8})
        await projection.close()


async def test_close_as_a_context_manager_ends_the_follower_started_inside(
    any_store_url: str,
) -> None:
    async with EventStore(any_store_url) as store:
        await store.append("clock.1", [Event("tick.tock") for _ in range(700)])
        async with counter(store) as projection:
            follower = asyncio.ensure_future(projection.follow())
            await asyncio.sleep(0)  # it has begun: loading, or catching up
        async with asyncio.timeout(30):
            assert await follower is None
        async with counter(store) as saved:
            state = await saved.load()
            # what was committed is consistent: one tick per event up to the position
            assert state["n"] == (0 if saved.position is None else saved.position + 1)


async def test_close_ends_a_wait_until_under_way(any_store_url: str) -> None:
    """It used to poll on, opening the state store that close() had just closed."""
    async with EventStore(any_store_url) as store:
        await store.append("clock.1", Event("tick.tock"))
        projection = counter(store)
        waiting = asyncio.ensure_future(projection.wait_until(0))  # nobody runs it
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await projection.close()
        async with asyncio.timeout(30):
            with pytest.raises(ClosedError, match="global position 0: the projection was closed"):
                await waiting
        await projection.close()
