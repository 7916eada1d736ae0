"""The store conformance suite, continued: the head of the log and reading it backwards.

:class:`HeadConformance` is a base of :class:`~tests.store.conformance.StoreConformance`,
so every backend runs it; it uses that class's ``store`` and ``make_store`` fixtures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import NO_STREAM, ClosedError, Event, EventStore, PatternError
from pepperpy.event.store import MemoryBackend

MakeStore = Callable[[], EventStore]


def _batch(count: int, type: str = "thing.happened", **data: Any) -> list[dict[str, Any]]:
    return [{"type": type, "data": {"n": n, **data}} for n in range(count)]


async def _positions(reader: Any) -> list[int | None]:
    """The global positions a reader gives, through ``async for`` (pages of 500)."""
    return [event.global_position async for event in reader]


class HeadConformance:
    # -- head() -----------------------------------------------------------------------

    async def test_an_empty_store_has_no_head_and_reads_nothing_backwards(
        self, store: EventStore
    ) -> None:
        assert await store.head() is None
        assert await store.read_all(backwards=True) == []
        assert await store.read_all(0, backwards=True) == []
        assert await _positions(store.read_all(backwards=True, limit=5)) == []

    async def test_the_head_is_the_newest_events_global_position(self, store: EventStore) -> None:
        first = await store.append("a.1", {"type": "t.x"})
        assert await store.head() == first.global_position == 0
        batch = await store.append("b.1", _batch(3))
        assert await store.head() == batch.global_position == 3
        await store.append("a.1", {"type": "t.y"})
        assert await store.head() == 4
        newest = await store.read_all(backwards=True, limit=1)
        assert [(e.global_position, e.type) for e in newest] == [(4, "t.y")]

    async def test_the_head_counts_deleted_events_and_never_moves_back(
        self, store: EventStore
    ) -> None:
        """Decided (docs/store.md): the head is the newest event written, hidden or not,
        so a delete leaves it where it is and subscribing past it skips nothing."""
        await store.append("kept.1", _batch(2))
        await store.append("doomed.1", _batch(3))
        assert await store.head() == 4
        await store.delete_stream("doomed.1")
        assert await store.head() == 4
        newest = await store.read_all(backwards=True, limit=1)  # the newest one shown
        assert [(e.stream, e.global_position) for e in newest] == [("kept.1", 1)]
        await store.append("doomed.1", _batch(1, again=True), expected_version=NO_STREAM)
        assert await store.head() == 5
        assert await _positions(store.read_all(backwards=True)) == [5, 1, 0]

    async def test_subscribing_past_the_head_follows_only_new_events(
        self, store: EventStore
    ) -> None:
        async def follow_from_now_on() -> list[tuple[int | None, str]]:
            head = await store.head()
            subscription = store.subscribe(0 if head is None else head + 1)
            await store.append("s.1", [{"type": "new.one"}, {"type": "new.two"}])
            async with subscription:
                seen = [await asyncio.wait_for(anext(subscription), 10) for _ in range(2)]
            return [(e.global_position, e.type) for e in seen]

        assert await follow_from_now_on() == [(0, "new.one"), (1, "new.two")]  # empty store
        await store.append("s.1", _batch(3))
        assert await follow_from_now_on() == [(5, "new.one"), (6, "new.two")]

    async def test_the_head_never_passes_an_event_a_reader_cannot_see_yet(
        self, store: EventStore, make_store: MakeStore
    ) -> None:
        """While writers append, every position at or below each head() is there to read,
        without a gap, and the head never goes back; on SQL backends through a store of
        its own (other connections)."""
        shared = not isinstance(store.backend, MemoryBackend)
        reader = make_store() if shared else store
        await store.append("warm.1", {"type": "warm.up"})

        async def write(number: int) -> None:
            for n in range(30):
                await store.append(f"w.{number}", _batch(1 + n % 3))

        async def check(last: int) -> int:
            head = await reader.head()
            assert head is not None and head >= last
            upto = await _positions(reader.read_all(head, backwards=True))
            assert upto == list(range(head, -1, -1))
            return head

        writers = asyncio.gather(*(write(number) for number in range(4)))
        head = 0
        try:
            while not writers.done():
                head = await check(head)
                await asyncio.sleep(0)
        finally:
            await writers
        assert await check(head) == 4 * (10 + 20 + 30)

    async def test_a_closed_store_refuses_head_and_backwards_reads(
        self, make_store: MakeStore
    ) -> None:
        store = make_store()
        await store.append("s.1", {"type": "t.x"})
        reader = store.read_all(backwards=True)
        await store.close()
        with pytest.raises(ClosedError):
            await store.head()
        with pytest.raises(ClosedError):
            store.read_all(backwards=True)
        with pytest.raises(ClosedError):
            await reader

    # -- read_all(backwards=True) -------------------------------------------------------

    async def test_backwards_mirrors_forwards_from_an_inclusive_upper_bound(
        self, store: EventStore
    ) -> None:
        await store.append("user.1", {"type": "user.created"})
        await store.append("order.1", _batch(3, type="order.placed"))
        await store.append("user.1", {"type": "user.renamed"})
        forwards = [e.global_position for e in await store.read_all()]
        assert forwards == [0, 1, 2, 3, 4]

        async def backwards(*args: Any, **kwargs: Any) -> list[int | None]:
            listed = [e.global_position for e in await store.read_all(*args, **kwargs)]
            assert await _positions(store.read_all(*args, **kwargs)) == listed
            return listed

        assert await backwards(backwards=True) == [4, 3, 2, 1, 0]
        assert await backwards(None, backwards=True) == [4, 3, 2, 1, 0]
        assert await backwards(2, backwards=True) == [2, 1, 0]  # inclusive
        assert await backwards(0, backwards=True) == [0]
        assert await backwards(3, backwards=True, limit=2) == [3, 2]
        assert await backwards(99, backwards=True, limit=2) == [4, 3]  # past the head
        assert await backwards(2**63 - 1, backwards=True, limit=1) == [4]
        assert await backwards(backwards=True, limit=0) == []
        assert await backwards(backwards=False) == forwards  # None forwards: the first
        events = await store.read_all(backwards=True)
        assert [e.type for e in events][:2] == ["user.renamed", "order.placed"]
        assert [e.id for e in events] == [e.id for e in reversed(await store.read_all())]

    @pytest.mark.parametrize(
        ("position", "error"),
        [
            (-1, ValueError),
            (2**63, ValueError),
            (1.5, TypeError),
            ("3", TypeError),
            (True, TypeError),
        ],
    )
    async def test_backwards_refuses_a_bad_position(
        self, store: EventStore, position: Any, error: type[Exception]
    ) -> None:
        with pytest.raises(error, match="from_position") as caught:
            store.read_all(position, backwards=True)
        assert type(caught.value) is error

    async def test_backwards_refuses_a_bad_limit_or_pattern(self, store: EventStore) -> None:
        with pytest.raises(ValueError, match="limit"):
            store.read_all(backwards=True, limit=-1)
        with pytest.raises(PatternError):
            store.read_all(backwards=True, streams="us*rs")
        with pytest.raises(TypeError, match="types"):
            store.read_all(backwards=True, types=[])

    async def test_backwards_pages_across_page_boundaries_with_filters(
        self, store: EventStore
    ) -> None:
        """``async for`` reads 500 rows a page: signals sit on both sides of the page
        boundaries, among noise of other streams and types."""
        await store.append("signal.1", {"type": "signal.a", "data": {"n": 0}})  # 0
        await store.append("noise.1", _batch(499))  # 1..499
        await store.append("signal.2", {"type": "signal.b", "data": {"n": 1}})  # 500
        await store.append("signal.1", {"type": "signal.a", "data": {"n": 2}})  # 501
        await store.append("noise.1", _batch(498))  # 502..999
        await store.append("signal.2", {"type": "signal.b", "data": {"n": 3}})  # 1000
        await store.append("noise.1", _batch(250))  # 1001..1250
        await store.append("noise.2", {"type": "signal.a", "data": {"n": 4}})  # 1251
        forwards = await store.read_all(streams="signal.*")
        assert [e.global_position for e in forwards] == [0, 500, 501, 1000]

        async def newest_first(**kwargs: Any) -> list[int | None]:
            listed = [e.global_position for e in await store.read_all(backwards=True, **kwargs)]
            assert await _positions(store.read_all(backwards=True, **kwargs)) == listed
            return listed

        assert await newest_first(streams="signal.*") == [1000, 501, 500, 0]
        assert await newest_first(types="signal.a") == [1251, 501, 0]
        assert await newest_first(types="signal.*", streams=["signal.2", "noise.#"]) == [
            1251,
            1000,
            500,
        ]
        assert await newest_first(streams="signal.*", limit=3) == [1000, 501, 500]
        assert await newest_first(streams="signal.*", from_position=999) == [501, 500, 0]
        assert await newest_first(streams="signal.*", from_position=500, limit=1) == [500]
        assert await newest_first(types="nothing.*") == []
        every = await _positions(store.read_all(backwards=True))
        assert every == list(range(1251, -1, -1))

    async def test_backwards_pages_past_the_hidden_events_of_deleted_streams(
        self, store: EventStore
    ) -> None:
        await store.append("kept.1", {"type": "first"})
        await store.append("doomed.1", _batch(1200))
        await store.append("kept.1", {"type": "middle"})
        await store.append("doomed.2", _batch(600))
        await store.delete_stream("doomed.1")
        await store.delete_stream("doomed.2")
        await store.append("kept.1", {"type": "last"})
        assert await store.head() == 1802
        assert [e.type async for e in store.read_all(backwards=True)] == ["last", "middle", "first"]
        assert [e.type for e in await store.read_all(backwards=True, limit=2)] == [
            "last",
            "middle",
        ]
        assert [e.type for e in await store.read_all(1801, backwards=True)] == ["middle", "first"]
        assert [e.type for e in await store.read_all(1800, backwards=True, limit=1)] == ["middle"]

    async def test_a_backwards_reader_made_before_appends_starts_at_the_head_when_read(
        self, store: EventStore
    ) -> None:
        """Like a forward reader, it reads when awaited: the newest events then."""
        await store.append("s.1", _batch(2))
        reader = store.read_all(backwards=True, limit=1)
        await store.append("s.1", _batch(1, late=True))
        assert [e.data.get("late") for e in await reader] == [True]

    async def test_backwards_events_decode_as_forwards_ones_do(self, store: EventStore) -> None:
        event = Event("user.created", {"name": "Ada"}, metadata={"who": "x"}, source="/s")
        await store.append("user.1", event)
        (forwards,) = await store.read_all()
        (backwards,) = await store.read_all(backwards=True)
        assert backwards == forwards
        assert (backwards.id, backwards.data, backwards.stream) == (
            event.id,
            {"name": "Ada"},
            "user.1",
        )
