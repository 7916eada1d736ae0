"""A checkpointed replay with an ``end_time`` leaves the events at or past the end to a
later run: the checkpoint does not pass over them.

The run reads on past the end (blocks of the log that meet the window, and
``replay_stream``'s whole stream), skipping such events; its checkpoint used to be saved
at the last event read, so a later run with a later end (a daily export up to midnight,
``pepperpy-event replay --to ... --checkpoint daily``) resumed after them and never
replayed them. Now the checkpoint records where they begin (``held``): a run with a later
end, or none, reads them, and passes over the events the earlier run handled; a run with
the same end reads nothing again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from pepperpy.event import Event, EventReplay, EventStore, ReplayStopped
from pepperpy.event.store._time_blocks import BLOCK

DAY1 = datetime(2024, 5, 1, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
DAY3 = DAY2 + timedelta(days=1)


@pytest.fixture
async def store(any_store_url: str) -> AsyncIterator[EventStore]:
    opened = EventStore(any_store_url)
    try:
        yield opened
    finally:
        await opened.close()


def tick(n: int, when: datetime) -> Event:
    return Event("tick", {"n": n}, timestamp=when)


def collector(replay: EventReplay) -> list[int]:
    seen: list[int] = []
    replay.handle("#", lambda event: seen.append(event.data["n"]))
    return seen


async def test_a_later_end_replays_what_the_earlier_end_left(store: EventStore) -> None:
    await store.append("s.1", [tick(h, DAY1 + timedelta(hours=h)) for h in range(48)])
    async with EventReplay(store) as replay:
        seen = collector(replay)
        first = await replay.replay_all(end_time=DAY2, checkpoint="daily")
        assert seen == list(range(24)) and first.replayed == 24
        again = await replay.replay_all(end_time=DAY2, checkpoint="daily")
        assert again.read == 0  # the same end: nothing new
        second = await replay.replay_all(end_time=DAY3, checkpoint="daily")
        assert (second.replayed, second.skipped) == (24, 0)
        assert seen == list(range(48))  # each once, none lost
        assert (await replay.replay_all(end_time=DAY3, checkpoint="daily")).read == 0


async def test_timestamps_out_of_order_around_the_end(store: EventStore) -> None:
    # producers' clocks differ: an event of day 1 lands after ones of day 2
    whens = [DAY1, DAY2, DAY1 + timedelta(hours=1), DAY2 + timedelta(hours=1), DAY1]
    await store.append("s.1", [tick(n, when) for n, when in enumerate(whens)])
    async with EventReplay(store) as replay:
        seen = collector(replay)
        await replay.replay_all(end_time=DAY2, checkpoint="c")
        assert seen == [0, 2, 4]
        await store.append("s.1", tick(5, DAY2 + timedelta(hours=2)))
        report = await replay.replay_all(checkpoint="c")  # no end: everything left
        assert seen == [0, 2, 4, 1, 3, 5]
        assert (report.replayed, report.skipped) == (3, 0)


async def test_the_ranges_a_window_does_not_read_are_not_passed(store: EventStore) -> None:
    # block 0 on day 1, block 1 on day 2, block 2 on day 1 again (appended late): a
    # window ending on day 2 reads blocks 0 and 2 only, and must not pass block 1
    await store.append("a.1", [tick(n, DAY1) for n in range(BLOCK)])
    await store.append("b.1", [tick(BLOCK + n, DAY2) for n in range(BLOCK)])
    await store.append("a.1", [tick(2 * BLOCK + n, DAY1) for n in range(10)])
    async with EventReplay(store) as replay:
        seen = collector(replay)
        first = await replay.replay_all(end_time=DAY2, checkpoint="c")
        assert first.replayed == BLOCK + 10
        assert first.read == BLOCK + 10  # block 1 was not read
        second = await replay.replay_all(end_time=DAY3, checkpoint="c")
        assert second.replayed == BLOCK
        assert sorted(seen) == list(range(2 * BLOCK + 10))  # each once


async def test_one_stream(store: EventStore) -> None:
    await store.append("s.1", [tick(h, DAY1 + timedelta(hours=6 * h)) for h in range(8)])
    async with EventReplay(store) as replay:
        seen = collector(replay)
        await replay.replay_stream("s.1", end_time=DAY2, checkpoint="c")
        assert seen == [0, 1, 2, 3]
        assert (await replay.replay_stream("s.1", end_time=DAY2, checkpoint="c")).read == 0
        await replay.replay_stream("s.1", checkpoint="c")
        assert seen == list(range(8))


async def test_a_widened_run_stopped_midway_loses_nothing(store: EventStore) -> None:
    await store.append("s.1", [tick(h, DAY1 + timedelta(hours=h)) for h in range(48)])
    async with EventReplay(store) as replay:
        seen: list[int] = []
        failing = {30}

        @replay.handle("tick")
        def note(event: Event) -> None:
            if event.data["n"] in failing:
                failing.clear()
                raise RuntimeError("once")
            seen.append(event.data["n"])

        await replay.replay_all(end_time=DAY2, checkpoint="c")
        with pytest.raises(ReplayStopped):
            await replay.replay_all(checkpoint="c", on_error="stop", checkpoint_every=2)
        await replay.replay_all(checkpoint="c")
        assert set(seen) == set(range(48))  # at least once: none lost
        assert seen[:24] == list(range(24))  # and the first day not again
