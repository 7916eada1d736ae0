"""Finding the end of the global log without reading all of it."""

from __future__ import annotations

import pytest

from pepperpy.event import Event, EventStore
from pepperpy.event.cli._tail import head_position, last_events


async def test_empty_store() -> None:
    store = EventStore()
    assert await head_position(store) is None
    assert await last_events(store, 5, None, None) == ([], 0)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000])
async def test_head_and_last_events(size: int) -> None:
    store = EventStore()
    await store.append("log.1", [Event("line", {"n": n}) for n in range(size)])
    assert await head_position(store) == size - 1
    last, following = await last_events(store, 3, None, None)
    assert [e.data["n"] for e in last] == list(range(size))[-3:]
    assert following == size
    assert await last_events(store, 0, None, None) == ([], size)


async def test_filters_reach_far_back() -> None:
    store = EventStore()
    await store.append("rare.1", Event("rare", {"n": 0}))
    await store.append("common.1", [Event("common", {"n": n}) for n in range(500)])
    await store.append("rare.2", Event("rare", {"n": 1}))
    await store.append("common.1", [Event("common", {"n": n}) for n in range(300)])
    last, following = await last_events(store, 2, ["rare.*"], None)
    assert [e.data["n"] for e in last] == [0, 1]
    assert following == 802
    only, _ = await last_events(store, 5, None, ["nothing.*"])
    assert only == []


async def test_gaps_from_deleted_streams(sqlite_url: str) -> None:
    async with EventStore(sqlite_url) as store:
        for name in ("a.1", "b.1", "c.1"):
            await store.append(name, [Event("e", {"s": name}) for _ in range(5)])
        await store.delete_stream("c.1")
        await store.delete_stream("a.1")
        assert await head_position(store) == 9  # c's 10..14 are hidden
        last, following = await last_events(store, 7, None, None)
        assert [e.global_position for e in last] == [5, 6, 7, 8, 9]
        assert following == 10
