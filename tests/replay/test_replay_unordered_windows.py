"""Time windows over a log whose timestamps do not follow its positions.

Producers set ``timestamp=``: late events carry old times, clocks run ahead, offsets
differ. ``replay_all`` seeks by a per-block summary of the timestamps, ``replay_stream``
filters: both must give exactly what a full scan of the log finds in
``[start_time, end_time)``, in log order, on every backend, with bounds given as
datetimes of any timezone or as ISO strings, at and between equal timestamps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from pepperpy.event import Event, EventReplay, EventStore
from pepperpy.event.store._time_blocks import BLOCK

T0 = datetime(2024, 1, 1, tzinfo=UTC)
INDIA = timezone(timedelta(hours=5, minutes=30))
NEWFOUNDLAND = ZoneInfo("America/St_Johns")  # -03:30, -02:30 in summer
COUNT = 3 * BLOCK + 40


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stamp(n: int) -> datetime:
    """Event n's timestamp: mostly n seconds, but every 97th is 2000 s in the past, every
    89th 5000 s in the future, every 50th the same instant (600 s) and every 7th written
    in another offset (the same instant)."""
    if n % 97 == 0:
        moment = at(n - 2000)
    elif n % 89 == 0:
        moment = at(n + 5000)
    elif n % 50 == 0:
        moment = at(600)
    else:
        moment = at(n)
    return moment.astimezone(INDIA) if n % 7 == 0 else moment


@pytest.fixture
async def store(any_store_url: str) -> AsyncIterator[EventStore]:
    opened = EventStore(any_store_url)
    try:
        for first in range(0, COUNT, 400):
            batch = range(first, min(first + 400, COUNT))
            await opened.append(
                f"tick.{first // 400 % 3}",
                [Event("tick", {"n": n}, timestamp=stamp(n)) for n in batch],
            )
        yield opened
    finally:
        await opened.close()


def expected(start: datetime | None, end: datetime | None, stream: str | None = None) -> list[int]:
    found = []
    for n in range(COUNT):
        if stream is not None and f"tick.{n // 400 % 3}" != stream:
            continue
        moment = stamp(n)
        if (start is None or moment >= start) and (end is None or moment < end):
            found.append(n)
    return found


WINDOWS = [
    (at(600), at(601)),  # the shared instant, inclusive at the start
    (at(599), at(600)),  # ... and exclusive at the end
    (at(600), at(600)),  # start == end: empty
    (at(-2000), at(-1900)),  # only late events with old timestamps
    (at(5000), None),  # the clock-ahead ones (and nothing else)
    (None, at(-1000)),
    (at(BLOCK - 3), at(BLOCK + 3)),
    (at(2 * BLOCK + 5000 - 10), at(3 * BLOCK + 5000)),
    (None, None),
]


async def test_replay_all_finds_what_a_full_scan_finds(store: EventStore) -> None:
    replay = EventReplay(store)
    seen: list[int] = []
    replay.handle("tick", lambda event: seen.append(event.data["n"]))
    for start, end in WINDOWS:
        seen.clear()
        report = await replay.replay_all(start, end)
        assert seen == expected(start, end), (start, end)
        assert report.replayed == len(seen)
        assert report.read == report.replayed + report.skipped + report.failed
        # the same window in other clothes: another timezone, an ISO string
        for bounds in [
            tuple(None if b is None else b.astimezone(NEWFOUNDLAND) for b in (start, end)),
            tuple(None if b is None else b.astimezone(INDIA).isoformat() for b in (start, end)),
        ]:
            seen.clear()
            await replay.replay_all(*bounds)
            assert seen == expected(start, end), bounds


async def test_replay_stream_filters_and_start_pos_agree_with_a_full_scan(
    store: EventStore,
) -> None:
    replay = EventReplay(store)
    seen: list[int] = []
    replay.handle("tick", lambda event: seen.append(event.data["n"]))
    for start, end in WINDOWS:
        seen.clear()
        report = await replay.replay_stream("tick.1", start, end)
        assert seen == expected(start, end, "tick.1"), (start, end)
        assert report.replayed == len(seen)
        seen.clear()
        await replay.replay_all(start, end, streams="tick.1")
        assert seen == expected(start, end, "tick.1"), (start, end)
        seen.clear()
        await replay.replay_all(start, end, start_pos=BLOCK + 1)
        assert seen == [n for n in expected(start, end) if n >= BLOCK + 1], (start, end)
