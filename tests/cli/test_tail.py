"""``tail``'s backlog: the last events from the store's head, read backwards."""

from __future__ import annotations

import pytest

from pepperpy.event import Event, EventStore
from pepperpy.event.cli._tail import last_events
from pepperpy.event.store import MemoryBackend
from pepperpy.event.store.base import LogPage


class CountingBackend(MemoryBackend):
    """Counts the calls made to it and the rows its log scans went over."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.scanned = 0

    async def read_all(self, from_position: int, limit: int) -> LogPage:
        self.calls.append("read_all")
        page = await super().read_all(from_position, limit)
        self.scanned += page.next_position - from_position
        return page

    async def read_all_backwards(self, from_position: int, limit: int) -> LogPage:
        self.calls.append("read_all_backwards")
        page = await super().read_all_backwards(from_position, limit)
        self.scanned += min(from_position, len(self._log) - 1) - page.next_position
        return page

    async def head(self) -> int | None:
        self.calls.append("head")
        return await super().head()


async def test_empty_store() -> None:
    store = EventStore()
    assert await last_events(store, 5, None, None) == ([], 0)
    assert await last_events(store, 0, None, None) == ([], 0)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000])
async def test_last_events_and_where_to_follow_from(size: int) -> None:
    store = EventStore()
    await store.append("log.1", [Event("line", {"n": n}) for n in range(size)])
    last, following = await last_events(store, 3, None, None)
    assert [e.data["n"] for e in last] == list(range(size))[-3:]
    assert following == size
    assert await last_events(store, 0, None, None) == ([], size)


async def test_the_backlog_is_one_head_and_one_backwards_read_of_n_rows() -> None:
    """It used to find the head by galloping and bisecting with one-row forward reads
    (22 reads for 1,000 events), then read windows forwards from there."""
    backend = CountingBackend()
    store = EventStore(backend)
    await store.append("log.1", [Event("line", {"n": n}) for n in range(1000)])
    last, following = await last_events(store, 5, None, None)
    assert [e.data["n"] for e in last] == [995, 996, 997, 998, 999]
    assert following == 1000
    assert backend.calls == ["head", "read_all_backwards"]
    assert backend.scanned == 5


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


async def test_events_appended_after_the_backlog_are_followed(sqlite_url: str) -> None:
    async with EventStore(sqlite_url) as store:
        await store.append("a.1", [Event("old", {"n": n}) for n in range(3)])
        last, following = await last_events(store, 2, None, None)
        await store.append("a.1", Event("new", {"n": 3}))
        subscription = store.subscribe(following)
        async with subscription:
            new = await anext(subscription)
    assert [e.data["n"] for e in last] == [1, 2]
    assert (new.type, new.data["n"]) == ("new", 3)


async def test_gaps_from_deleted_streams(sqlite_url: str) -> None:
    async with EventStore(sqlite_url) as store:
        for name in ("a.1", "b.1", "c.1"):
            await store.append(name, [Event("e", {"s": name}) for _ in range(5)])
        await store.delete_stream("c.1")
        await store.delete_stream("a.1")
        assert await store.head() == 14  # c's 10..14 are hidden, and still count
        last, following = await last_events(store, 7, None, None)
        assert [e.global_position for e in last] == [5, 6, 7, 8, 9]
        assert following == 15


async def test_only_hidden_events_leave_an_empty_backlog(sqlite_url: str) -> None:
    async with EventStore(sqlite_url) as store:
        await store.append("gone.1", [Event("e", {}) for _ in range(3)])
        await store.delete_stream("gone.1")
        assert await last_events(store, 5, None, None) == ([], 3)
