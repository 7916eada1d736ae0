"""Bounds in one ``ZoneInfo`` around a daylight-saving fall-back: the wall clock repeats
an hour, ``fold`` tells the two apart, and the window is ordered by instant.

Python compares two datetimes of the same tzinfo by wall clock alone (offsets and
``fold`` ignored), so the check that ``start_time`` is not after ``end_time`` refused
a valid window and let a reversed one replay nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pepperpy.event import ConfigurationError, Event, EventReplay, EventStore

NEW_YORK = ZoneInfo("America/New_York")
# 2024-11-03: 01:00-01:59 EDT (05:00Z-05:59Z), then 01:00-01:59 again as EST (06:00Z-06:59Z)
FALL_BACK = datetime(2024, 11, 3, 5, 0, tzinfo=UTC)
EDT_0130 = datetime(2024, 11, 3, 1, 30, tzinfo=NEW_YORK)  # 05:30Z
EST_0110 = datetime(2024, 11, 3, 1, 10, fold=1, tzinfo=NEW_YORK)  # 06:10Z, forty minutes later
EST_0130 = datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NEW_YORK)  # 06:30Z


@pytest.fixture
async def replay(any_store_url: str) -> AsyncIterator[tuple[EventReplay, list[int]]]:
    """Events every ten minutes from 05:00Z to 06:50Z, by minutes after 05:00Z."""
    store = EventStore(any_store_url)
    await store.append(
        "clock.1",
        [
            Event("tick", {"minute": m}, timestamp=FALL_BACK + timedelta(minutes=m))
            for m in range(0, 120, 10)
        ],
    )
    replay = EventReplay(store)
    seen: list[int] = []
    replay.handle("tick", lambda event: seen.append(event.data["minute"]))
    try:
        yield replay, seen
    finally:
        await replay.close()
        await store.close()


async def test_a_window_across_the_repeated_hour_is_replayed(
    replay: tuple[EventReplay, list[int]],
) -> None:
    runner, seen = replay
    assert EDT_0130.astimezone(UTC) < EST_0110.astimezone(UTC)
    await runner.replay_all(EDT_0130, EST_0110)
    assert seen == [30, 40, 50, 60]
    seen.clear()
    await runner.replay_stream("clock.1", EDT_0130, EST_0110)
    assert seen == [30, 40, 50, 60]


@pytest.mark.parametrize(
    ("start", "end"),
    [(EST_0110, EDT_0130), (EST_0130, EDT_0130)],
    ids=["forty-minutes-back", "same-wall-clock-an-hour-back"],
)
async def test_a_start_after_its_end_by_instant_is_refused(
    replay: tuple[EventReplay, list[int]], start: datetime, end: datetime
) -> None:
    runner, seen = replay
    with pytest.raises(ConfigurationError, match="start_time .* is after end_time"):
        await runner.replay_all(start, end)
    with pytest.raises(ConfigurationError, match="start_time .* is after end_time"):
        await runner.replay_stream("clock.1", start, end)
    assert seen == []
