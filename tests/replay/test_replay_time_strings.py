"""ISO-8601 strings as replay bounds: what RFC 3339 allows is taken, fractions finer than
a microsecond keep the window exact, and text no date-time holds is refused.

Event timestamps are whole microseconds, so a bound of ``.1234567`` must let in an event
of ``.123457`` and keep out one of ``.123456`` (which is before it), at either edge.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pepperpy.event import ConfigurationError, Event, EventReplay, EventStore

T0 = datetime(2024, 1, 1, tzinfo=UTC)
Run = Callable[[EventReplay, Any, Any], Awaitable[Any]]


async def _all(replay: EventReplay, start: Any, end: Any) -> Any:
    return await replay.replay_all(start, end)


async def _stream(replay: EventReplay, start: Any, end: Any) -> Any:
    return await replay.replay_stream("clock.1", start, end)


RUNS = [pytest.param(_all, id="replay_all"), pytest.param(_stream, id="replay_stream")]


async def replayed(run: Run, micros: list[int], start: Any, end: Any) -> list[int]:
    """Which of the events at ``T0 + micros`` microseconds the window replays."""
    store = EventStore()
    await store.append(
        "clock.1",
        [Event("tick", {"us": us}, timestamp=T0 + timedelta(microseconds=us)) for us in micros],
    )
    replay = EventReplay(store)
    seen: list[int] = []
    replay.handle("tick", lambda event: seen.append(event.data["us"]))
    await run(replay, start, end)
    await store.close()
    return seen


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2024-01-01t00:00:00.000002z", "2024-01-01t00:00:00.000004z"),
        ("2024-01-01T00:00:00.000002z", "2024-01-01t00:00:00.000004Z"),
        ("20240101t000000.000002z", "2024-w01-1t00:00:00.000004z"),
    ],
)
async def test_lowercase_t_and_z_are_taken_as_rfc_3339_allows(
    run: Run, start: str, end: str
) -> None:
    assert await replayed(run, [1, 2, 3, 4], start, end) == [2, 3]


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("digits", ["0000021", "00000201", "000002000000001"])
async def test_a_start_finer_than_a_microsecond_keeps_out_the_microsecond_before_it(
    run: Run, digits: str
) -> None:
    start = f"2024-01-01T00:00:00.{digits}Z"
    assert await replayed(run, [1, 2, 3, 4], start, None) == [3, 4]


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("digits", ["0000021", "000002999", "0000020001"])
async def test_an_end_finer_than_a_microsecond_lets_in_the_microsecond_before_it(
    run: Run, digits: str
) -> None:
    end = f"2024-01-01T00:00:00.{digits}+00:00"
    assert await replayed(run, [1, 2, 3, 4], None, end) == [1, 2]


@pytest.mark.parametrize("run", RUNS)
async def test_nanoseconds_of_zeros_and_every_offset_spelling_mean_the_same_instant(
    run: Run,
) -> None:
    for start, end in [
        ("2024-01-01T00:00:00.000002000Z", "2024-01-01T00:00:00.000003000Z"),
        ("2024-01-01T05:30:00.000002+05:30", "2024-01-01T05:30:00.000003+0530"),
        ("2023-12-31T23:00:00,000002-01:00", "2024-01-01T00:00:00.000003-00:00"),
    ]:
        assert await replayed(run, [1, 2, 3, 4], start, end) == [2], (start, end)


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize(
    "text",
    [
        "2024-01-01T00:00:00\x00Z",
        "2024-01-01T00:00:00\tZ",
        "2024-01-01T00:00:00Z\x00",
        "9999-12-31T23:59:59.9999999Z",
    ],
)
async def test_text_no_date_time_holds_is_refused_naming_the_bound(run: Run, text: str) -> None:
    with pytest.raises(ConfigurationError, match="start_time"):
        await replayed(run, [1], text, None)
    with pytest.raises(ConfigurationError, match="end_time"):
        await replayed(run, [1], None, text)
