"""``replay_all`` with a time window seeks: it reads the blocks of the log whose
timestamps can fall in the window (``StoreBackend.time_ranges``), not the whole log, and
replays the same events a full scan would, whatever the order of the timestamps.

Blocks are ``BLOCK`` positions wide, so the stores here hold a few thousand events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from pepperpy.event import Event, EventReplay, EventStore, ReplayStopped
from pepperpy.event.store import MemoryBackend, StoreBackend
from pepperpy.event.store._time_blocks import BLOCK
from pepperpy.event.store.base import LogPage

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
async def store(any_store_url: str) -> AsyncIterator[EventStore]:
    opened = EventStore(any_store_url)
    try:
        yield opened
    finally:
        await opened.close()


async def fill(store: EventStore, count: int, first: int = 0, stream: str = "tick.1") -> None:
    """``count`` events whose timestamps are ``T0 + n`` seconds, n = first, first + 1..."""
    for start in range(first, first + count, 500):
        batch = range(start, min(start + 500, first + count))
        await store.append(
            stream, [{"type": "tick", "data": {"n": n}, "timestamp": at(n)} for n in batch]
        )


def collector(replay: EventReplay) -> list[int]:
    seen: list[int] = []

    @replay.handle("#")
    def note(event: Event) -> None:
        seen.append(event.data["n"])

    return seen


async def in_window(store: EventStore, start: datetime | None, end: datetime | None) -> list[int]:
    """What a full scan of the log finds in the window, in log order."""
    return [
        event.data["n"]
        async for event in store.read_all()
        if (start is None or event.timestamp >= start) and (end is None or event.timestamp < end)
    ]


async def test_a_window_reads_the_blocks_that_can_hold_it_only(store: EventStore) -> None:
    await fill(store, 4 * BLOCK)
    replay = EventReplay(store)
    seen = collector(replay)
    report = await replay.replay_all(at(BLOCK + 100), at(BLOCK + 110))
    assert seen == list(range(BLOCK + 100, BLOCK + 110))
    assert report.replayed == 10
    # one block read, not four: events never read are neither replayed nor skipped
    assert report.read <= BLOCK
    assert report.skipped == report.read - 10
    assert report.last_position is not None and report.last_position < 2 * BLOCK


async def test_bounds_start_inclusive_end_exclusive(store: EventStore) -> None:
    await fill(store, 2 * BLOCK)
    replay = EventReplay(store)
    seen = collector(replay)
    await replay.replay_all(at(BLOCK - 1), at(BLOCK + 1))  # the edge of two blocks
    assert seen == [BLOCK - 1, BLOCK]
    seen.clear()
    await replay.replay_all(at(BLOCK), at(BLOCK + 1))
    assert seen == [BLOCK]


async def test_an_old_timestamp_appended_late_is_replayed(store: EventStore) -> None:
    await fill(store, 3 * BLOCK)
    await store.append("late.1", {"type": "tick", "data": {"n": -1}, "timestamp": at(10)})
    await fill(store, BLOCK, first=3 * BLOCK + 1)
    replay = EventReplay(store)
    seen = collector(replay)
    report = await replay.replay_all(at(5), at(20))
    assert seen == [*range(5, 20), -1] == await in_window(store, at(5), at(20))
    assert report.read <= 2 * BLOCK  # its block and the first, not the two between


async def test_empty_windows_and_windows_past_the_log_read_nothing(store: EventStore) -> None:
    await fill(store, BLOCK + 10)
    replay = EventReplay(store)
    seen = collector(replay)
    for start, end in [(at(5), at(5)), (at(10 * BLOCK), None), (None, at(-1))]:
        report = await replay.replay_all(start, end)
        assert (report.read, report.last_position) == (0, None)
    past_head = await replay.replay_all(at(0), None, start_pos=5 * BLOCK)
    assert past_head.read == 0
    assert seen == []


async def test_filters_and_start_pos_with_a_window(store: EventStore) -> None:
    await fill(store, BLOCK, stream="tick.a")
    await fill(store, BLOCK, first=BLOCK, stream="tock.b")
    await fill(store, BLOCK, first=2 * BLOCK, stream="tick.c")
    replay = EventReplay(store)
    seen = collector(replay)
    await replay.replay_all(at(BLOCK - 3), at(2 * BLOCK + 3), streams="tick.*")
    assert seen == [BLOCK - 3, BLOCK - 2, BLOCK - 1, 2 * BLOCK, 2 * BLOCK + 1, 2 * BLOCK + 2]
    seen.clear()
    await replay.replay_all(at(0), at(BLOCK + 5), start_pos=BLOCK - 2)
    assert seen == list(range(BLOCK - 2, BLOCK + 5))


async def test_a_checkpointed_window_resumes_with_the_same_events(store: EventStore) -> None:
    await fill(store, 3 * BLOCK)
    window = (at(BLOCK + 10), at(2 * BLOCK + 10))
    expected = await in_window(store, *window)
    replay = EventReplay(store)
    seen: list[int] = []
    failing = {BLOCK + 500}

    @replay.handle("tick")
    def note(event: Event) -> None:
        if event.data["n"] in failing:
            failing.clear()
            raise RuntimeError("once")
        seen.append(event.data["n"])

    with pytest.raises(ReplayStopped):
        await replay.replay_all(*window, checkpoint="w", on_error="stop", checkpoint_every=7)
    assert seen == list(range(BLOCK + 10, BLOCK + 500))
    await replay.replay_all(*window, checkpoint="w")
    assert seen == expected  # resumed at the failed event, nothing lost or repeated
    again = await replay.replay_all(*window, checkpoint="w")
    assert again.read == 0  # nothing new: the blocks after the checkpoint cannot hold any
    await store.append("late.1", {"type": "tick", "data": {"n": -1}, "timestamp": window[0]})
    late = await replay.replay_all(*window, checkpoint="w")
    assert (late.replayed, late.read, seen[-1]) == (1, 1, -1)
    await replay.close()


class _Counting(MemoryBackend):
    """A memory backend that counts the rows its log reads return."""

    def __init__(self) -> None:
        super().__init__()
        self.rows = 0

    async def read_all(self, from_position: int, limit: int) -> LogPage:
        page = await super().read_all(from_position, limit)
        self.rows += len(page.rows)
        return page


class _Unsummarized(_Counting):
    """As a backend written before time_ranges: no summary."""

    async def time_ranges(
        self, start: int, end: int, from_position: int
    ) -> list[tuple[int, int | None]] | None:
        return await StoreBackend.time_ranges(self, start, end, from_position)


async def test_the_backend_reads_far_fewer_rows_than_the_log_holds() -> None:
    backend = _Counting()
    store = EventStore(backend)
    await fill(store, 8 * BLOCK)
    replay = EventReplay(store)
    seen = collector(replay)
    await replay.replay_all(at(5 * BLOCK + 1), at(5 * BLOCK + 3))
    assert seen == [5 * BLOCK + 1, 5 * BLOCK + 2]
    assert backend.rows <= BLOCK + 500  # one block, and at most a page past it
    await store.close()


async def test_a_backend_without_a_summary_is_read_whole_with_the_same_events() -> None:
    backend = _Unsummarized()
    store = EventStore(backend)
    await fill(store, 2 * BLOCK)
    await store.append("late.1", {"type": "tick", "data": {"n": -1}, "timestamp": at(3)})
    replay = EventReplay(store)
    seen = collector(replay)
    report = await replay.replay_all(at(2), at(4))
    assert seen == [2, 3, -1]
    assert report.read == 2 * BLOCK + 1  # the window is a filter there
    await store.close()
