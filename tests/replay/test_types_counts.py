"""``types=`` selects what a replay reads: an event it leaves out is not counted.

``replay_all(types=...)`` has the store filter by type, so what it leaves out was never
read and is in no count; ``replay_stream(types=...)`` filtered in the run and counted
each such event as skipped. The same events gave two reports (replayed 2, skipped 0
against replayed 2, skipped 1). Now both count only what the filter selected: ``skipped``
is an event read but outside the time window or matched by no handler.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from pepperpy.event import Event, EventReplay, EventStore, ReplayProgress, ReplayReport

BASE = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[EventStore]:
    async with EventStore("memory://" if request.param == "memory" else sqlite_url) as events:
        await events.append(
            "a.1",
            [
                Event(kind, {"n": n}, timestamp=BASE + timedelta(hours=n))
                for n, kind in enumerate(["user.created", "order.placed", "order.paid"])
            ],
        )
        yield events


def counts(report: ReplayReport) -> tuple[int, int, int, int]:
    return report.replayed, report.skipped, report.failed, report.read


async def both(replay: EventReplay, **options: object) -> tuple[ReplayReport, ReplayReport]:
    whole = await replay.replay_all(streams="a.1", **options)  # type: ignore[arg-type]
    stream = await replay.replay_stream("a.1", **options)  # type: ignore[arg-type]
    return whole, stream


async def test_events_types_leaves_out_are_in_no_count_of_either_method(
    store: EventStore,
) -> None:
    async with EventReplay(store) as replay:
        seen: list[int] = []
        replay.handle("#", lambda event: seen.append(event.data["n"]))
        whole, stream = await both(replay, types="order.*")
        assert seen == [1, 2, 1, 2]
        assert counts(whole) == counts(stream) == (2, 0, 0, 2)
        last = (await store.get_stream("a.1"))[-1]
        assert (whole.last_position, stream.last_position) == (last.global_position, 2)


async def test_a_selected_event_no_handler_takes_is_skipped_by_both(store: EventStore) -> None:
    async with EventReplay(store) as replay:
        replay.handle("order.placed", lambda event: None)
        whole, stream = await both(replay, types=["order.*"])
        assert counts(whole) == counts(stream) == (1, 1, 0, 2)


async def test_a_selected_event_outside_the_window_is_skipped_by_both(store: EventStore) -> None:
    async with EventReplay(store) as replay:
        replay.handle("#", lambda event: None)
        whole, stream = await both(replay, types="order.*", start_time=BASE + timedelta(hours=2))
        assert counts(whole) == counts(stream) == (1, 1, 0, 2)
        # the last event is left out by types: the position is the last event read
        whole, stream = await both(replay, types="user.*")
        assert counts(whole) == counts(stream) == (1, 0, 0, 1)
        assert stream.last_position == 0


async def test_progress_of_a_stream_replay_with_types_counts_what_it_reads(
    store: EventStore,
) -> None:
    async with EventReplay(store) as replay:
        replay.handle("#", lambda event: None)
        seen: list[ReplayProgress] = []
        report = await replay.replay_stream(
            "a.1", types="order.*", progress=seen.append, progress_every=1
        )
        assert [(p.read, p.total) for p in seen] == [(1, None), (2, None)]
        assert report.read == 2
        # without types the stream's length is known in advance
        seen.clear()
        await replay.replay_stream("a.1", progress=seen.append, progress_every=3)
        assert [(p.read, p.total) for p in seen] == [(3, 3)]
