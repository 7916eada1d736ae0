"""Projections over a memory store: objects of one name share state and position.

Each ``Projection`` over a memory event store used to open a memory checkpoint store of
its own, so a second object of the same name (a reader doing ``load()`` or
``wait_until()`` while another task follows) saw nothing of the first's commits and
waited forever, and two runners of one name were never kept apart by the
compare-and-set. Attachments of an ``EventProcessor`` already shared one per event store.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pepperpy.event import ConcurrencyError, Event, EventStore, Projection


def counter(store: EventStore) -> Projection:
    projection = Projection("counter", store, initial=dict)

    @projection.on("n.added")
    def added(state: dict[str, Any], event: Event) -> None:
        state["n"] = state.get("n", 0) + 1

    return projection


async def test_a_second_object_loads_what_the_first_committed() -> None:
    async with EventStore("memory://") as store:
        for _ in range(3):
            await store.append("n.1", Event("n.added", {}))
        first = counter(store)
        await first.run()
        second = counter(store)
        assert await second.load() == {"n": 3}
        assert second.position == first.position == 2
        report = await second.run()
        assert report.replayed == 0  # nothing applied twice
        assert second.state == {"n": 3}


async def test_wait_until_on_another_object_sees_the_followers_commits() -> None:
    async with EventStore("memory://") as store:
        follower, reader = counter(store), counter(store)
        following = asyncio.create_task(follower.follow())
        try:
            written = await store.append("n.1", Event("n.added", {}))
            position = written.global_position
            async with asyncio.timeout(30):
                assert await reader.wait_until(position) >= position
            assert await reader.load() == {"n": 1}
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)


async def test_two_runners_of_one_name_are_kept_apart() -> None:
    async with EventStore("memory://") as store:
        await store.append("n.1", Event("n.added", {}))
        first, second = counter(store), counter(store)
        await first.load()
        await second.load()
        await first.run()
        with pytest.raises(ConcurrencyError):
            await second.run()  # its commit would have written over the first's
        assert second.state == {"n": 1}  # took the winner's state from the shared store
        assert second.position == first.position


async def test_another_memory_store_shares_nothing() -> None:
    async with EventStore("memory://") as one, EventStore("memory://") as other:
        await one.append("n.1", Event("n.added", {}))
        await counter(one).run()
        elsewhere = counter(other)
        assert await elsewhere.load() == {}
        assert elsewhere.position is None
