"""EventReplay: handlers, time windows, pacing, progress, checkpoints and failures."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from typing import Any

import pytest

from pepperpy.event import (
    NO_STREAM,
    ConfigurationError,
    Event,
    EventReplay,
    EventStore,
    Projection,
    ReplayError,
    ReplayProgress,
    ReplayReport,
    ReplayStopped,
    RetryPolicy,
)
from tests.test_seconds_options import BAD, WRONG_TYPE

T0 = datetime(2023, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def fill(store: EventStore, stream: str, times: list[float], kind: str = "user.seen") -> None:
    await store.append(
        stream,
        [Event(kind, {"n": i, "user_id": stream}, timestamp=at(s)) for i, s in enumerate(times)],
    )


async def test_seed_snippet_runs_as_written() -> None:
    store = EventStore()
    await store.append("user.123", {"type": "user.created", "data": {"user_id": "123"}})
    await store.append("user.123", {"type": "user.renamed", "data": {"user_id": "123"}})
    await store.append("user.123", {"type": "order.placed", "data": {"user_id": "123"}})
    states: dict[str, list[str]] = {}

    async def update_user_state(user_id: str, event: Event) -> None:
        states.setdefault(user_id, []).append(event.type)

    # -- the seed's snippet, verbatim --
    replay = EventReplay(store)

    @replay.handle("user.*")
    async def rebuild_user_state(event):  # type: ignore[no-untyped-def]
        user_id = event.data["user_id"]
        await update_user_state(user_id, event)

    report = await replay.replay_stream("user.123", start_time="2023-01-01T00:00:00Z")
    # --
    assert states == {"123": ["user.created", "user.renamed"]}
    assert isinstance(report, ReplayReport)
    assert (report.replayed, report.skipped, report.failed) == (2, 1, 0)
    assert report.last_position == 2


async def test_the_report_says_how_long_the_replay_took() -> None:
    store = EventStore()
    await fill(store, "user.1", [0, 1, 2])
    replay = EventReplay(store)

    @replay.handle("#")
    async def slow(event: Event) -> None:
        await asyncio.sleep(0.05)

    # lower bounds only: three handlers of 50 ms, and a busy machine adds more
    assert (await replay.replay_stream("user.1")).duration >= 0.12
    assert (await replay.replay_all()).duration >= 0.12


async def test_time_window_start_inclusive_end_exclusive() -> None:
    store = EventStore()
    await fill(store, "user.1", [0, 10, 20, 30, 40])
    replay = EventReplay(store)
    seen: list[int] = []
    replay.handle("#", lambda e: seen.append(e.data["n"]))
    report = await replay.replay_stream("user.1", start_time=at(10), end_time=at(30))
    assert seen == [1, 2]
    assert (report.replayed, report.skipped) == (2, 3)
    seen.clear()
    # ISO strings with any offset name the same instant
    await replay.replay_stream(
        "user.1", start_time="2023-01-01T02:00:20+02:00", end_time="2023-01-01T00:00:40Z"
    )
    assert seen == [2, 3]
    seen.clear()
    await replay.replay_stream("user.1", end_time=at(10))
    assert seen == [0]
    seen.clear()
    await replay.replay_stream("user.1", start_time=at(40), end_time=at(40))
    assert seen == []


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (datetime(2023, 1, 1), None),
        (None, datetime(2023, 1, 1)),
        ("2023-01-01T00:00:00", None),
        ("2023-01-01", None),
        ("yesterday", None),
        ("2023-01-02T00:00:00Z", "2023-01-01T00:00:00Z"),
    ],
)
async def test_bad_times_raise_value_error(start: Any, end: Any) -> None:
    store = EventStore()
    await fill(store, "user.1", [0])
    replay = EventReplay(store)
    replay.handle("#", lambda e: None)
    with pytest.raises(ValueError):
        await replay.replay_stream("user.1", start_time=start, end_time=end)
    with pytest.raises(ValueError):
        await replay.replay_all(start_time=start, end_time=end)


async def test_naive_message_says_what_to_do() -> None:
    replay = EventReplay(EventStore())
    with pytest.raises(ValueError, match="naive"):
        await replay.replay_all(start_time=datetime(2023, 1, 1))
    with pytest.raises(TypeError):
        await replay.replay_all(start_time=12345)  # type: ignore[arg-type]


async def test_aware_non_utc_datetime_is_accepted() -> None:
    store = EventStore()
    await fill(store, "user.1", [0, 3600])
    replay = EventReplay(store)
    seen: list[int] = []
    replay.handle("#", lambda e: seen.append(e.data["n"]))
    plus_one = timezone(timedelta(hours=1))
    await replay.replay_stream("user.1", start_time=datetime(2023, 1, 1, 1, 30, tzinfo=plus_one))
    assert seen == [1]


async def test_handlers_sync_and_async_in_registration_order_with_patterns() -> None:
    store = EventStore()
    await store.append("order.1", [Event("order.placed", {}), Event("order.paid", {})])
    await store.append("user.1", Event("user.created", {}))
    replay = EventReplay(store)
    calls: list[str] = []

    @replay.handle("order.#")
    async def first(event: Event) -> None:
        await asyncio.sleep(0)
        calls.append(f"first:{event.type}")

    @replay.handle("*.paid")
    def second(event: Event) -> None:
        calls.append(f"second:{event.type}")

    assert replay.handlers("order.paid") == [first, second]
    report = await replay.replay_all()
    assert calls == ["first:order.placed", "first:order.paid", "second:order.paid"]
    assert (report.replayed, report.skipped, report.failed) == (2, 1, 0)
    assert report.last_position is not None


async def test_replay_all_filters_streams_and_types() -> None:
    store = EventStore()
    await store.append("user.1", [Event("user.created", {}), Event("user.renamed", {})])
    await store.append("user.2", Event("user.created", {}))
    await store.append("order.1", Event("order.placed", {}))
    replay = EventReplay(store)
    seen: list[tuple[str | None, str]] = []
    replay.handle("#", lambda e: seen.append((e.stream, e.type)))
    await replay.replay_all(streams="user.*", types=["*.created"])
    assert seen == [("user.1", "user.created"), ("user.2", "user.created")]
    seen.clear()
    await replay.replay_stream("user.1", types="user.renamed")
    assert seen == [("user.1", "user.renamed")]
    seen.clear()
    await replay.replay_stream("user.1", start_pos=1)
    assert seen == [("user.1", "user.renamed")]


async def test_an_empty_list_of_streams_or_types_is_refused_as_the_store_refuses_it() -> None:
    """``types=[]`` replayed every event in replay_all and a projection and none in
    replay_stream (``read_all(types=[])`` is a TypeError): a filter list built at run time
    that came out empty sent the whole log through the handlers."""
    store = EventStore()
    await store.append("user.1", Event("user.created", {}))
    replay = EventReplay(store)
    seen: list[Event] = []
    replay.handle("#", seen.append)
    for empty in ([], ()):
        with pytest.raises(TypeError, match="types must be a pattern .* non-empty list"):
            await replay.replay_all(types=empty)
        with pytest.raises(TypeError, match="streams must be a pattern .* non-empty list"):
            await replay.replay_all(streams=empty)
        with pytest.raises(TypeError, match="types must be a pattern .* non-empty list"):
            await replay.replay_stream("user.1", types=empty)
        with pytest.raises(TypeError, match="types must be a pattern .* non-empty list"):
            Projection("p", store, types=empty)
        with pytest.raises(TypeError, match="streams must be a pattern .* non-empty list"):
            Projection("p", store, streams=empty)
        with pytest.raises(TypeError, match="types must be a pattern .* non-empty list"):
            await store.read_all(types=empty)
    assert seen == []


async def test_missing_stream_replays_nothing() -> None:
    replay = EventReplay(EventStore())
    replay.handle("#", lambda e: None)
    report = await replay.replay_stream("nobody.here")
    assert (report.read, report.last_position) == (0, None)


async def test_pacing_keeps_original_gaps_scaled_by_speed() -> None:
    store = EventStore()
    await fill(store, "user.1", [0, 0.05, 0.10, 0.15])
    replay = EventReplay(store)
    seen: list[tuple[int, float]] = []
    replay.handle("#", lambda e: seen.append((e.data["n"], time.monotonic())))

    began = time.monotonic()
    await replay.replay_stream("user.1", speed=1.0)
    assert [n for n, _ in seen] == [0, 1, 2, 3]
    assert time.monotonic() - began >= 0.14
    gaps = [b - a for (_, a), (_, b) in zip(seen, seen[1:], strict=False)]
    assert all(gap >= 0.035 for gap in gaps), gaps

    seen.clear()
    began = time.monotonic()
    await replay.replay_stream("user.1", speed=3.0)
    assert time.monotonic() - began >= 0.045
    assert [n for n, _ in seen] == [0, 1, 2, 3]


async def test_no_speed_means_as_fast_as_possible() -> None:
    store = EventStore()
    await fill(store, "user.1", [0, 3600, 7200])  # hours apart
    replay = EventReplay(store)
    replay.handle("#", lambda e: None)
    report = await asyncio.wait_for(replay.replay_stream("user.1"), timeout=5)
    assert report.replayed == 3


@pytest.mark.parametrize(
    ("speed", "error"),
    [
        (0, ConfigurationError),
        (-1.0, ConfigurationError),
        (float("nan"), ConfigurationError),
        # no number: a wrong type (docs/errors.md)
        ("fast", TypeError),
        (True, TypeError),
        (False, TypeError),
    ],
)
async def test_bad_speed_is_refused(speed: Any, error: type[Exception]) -> None:
    replay = EventReplay(EventStore())
    with pytest.raises(error) as caught:
        await replay.replay_all(speed=speed)
    # True was taken as a speed of 1 (an int to Python)
    assert str(caught.value) == f"speed must be a number > 0 or None, got {speed!r}"


@pytest.mark.parametrize("max_gap", [b for b in [*BAD, *WRONG_TYPE] if b is not None], ids=repr)
async def test_a_bad_max_gap_is_refused_as_seconds_are(max_gap: Any) -> None:
    replay = EventReplay(EventStore())
    number = not isinstance(max_gap, bool) and isinstance(max_gap, int | float)
    with pytest.raises(ConfigurationError if number else TypeError) as caught:
        await replay.replay_all(speed=1.0, max_gap=max_gap)
    # True was taken as a one-second cap, and 10**400 raised OverflowError
    assert str(caught.value) == f"max_gap must be a finite number of seconds >= 0, got {max_gap!r}"


async def test_progress_callback_sync_and_async() -> None:
    store = EventStore()
    await fill(store, "user.1", [0, 1, 2, 3, 4])
    replay = EventReplay(store)
    replay.handle("#", lambda e: None)
    updates: list[ReplayProgress] = []
    await replay.replay_stream("user.1", progress=updates.append, progress_every=2)
    assert [u.read for u in updates] == [2, 4, 5]
    assert [u.position for u in updates] == [1, 3, 4]
    assert all(u.total == 5 for u in updates)

    async_updates: list[int] = []

    async def on_progress(progress: ReplayProgress) -> None:
        await asyncio.sleep(0)
        async_updates.append(progress.replayed)

    await replay.replay_all(progress=on_progress, progress_every=5)
    assert async_updates == [5]


@pytest.mark.parametrize("start_pos", [0, 500, 1000, 1001])
async def test_progress_total_counts_only_visible_events_after_a_restart(start_pos: int) -> None:
    # A restarted stream continues its positions after the deleted incarnation's hidden
    # events: 1,000 hidden (0-999), then 1000-1001 visible. The total is what a replay
    # can read, not the last position plus one.
    store = EventStore()
    await store.append("acct.1", [{"type": "a.x"} for _ in range(1000)])
    await store.delete_stream("acct.1")
    await store.append("acct.1", [{"type": "a.z"}, {"type": "a.z"}], expected_version=NO_STREAM)
    replay = EventReplay(store)
    replay.handle("#", lambda e: None)
    updates: list[ReplayProgress] = []
    report = await replay.replay_stream("acct.1", start_pos=start_pos, progress=updates.append)
    assert report.read == (2 if start_pos <= 1000 else 1)
    assert updates and all(u.total == report.read for u in updates)


async def test_progress_total_of_a_deleted_stream_is_zero() -> None:
    store = EventStore()
    await store.append("acct.1", [{"type": "a.x"} for _ in range(3)])
    await store.delete_stream("acct.1")
    replay = EventReplay(store)
    replay.handle("#", lambda e: None)
    updates: list[ReplayProgress] = []
    report = await replay.replay_stream("acct.1", progress=updates.append)
    assert report.read == 0
    assert all(u.total == 0 for u in updates)


async def test_progress_reports_the_end_even_when_nothing_was_read() -> None:
    store = EventStore()
    await fill(store, "user.1", [0, 1, 2])
    replay = EventReplay(store)
    replay.handle("#", lambda e: None)
    updates: list[ReplayProgress] = []
    report = await replay.replay_stream("user.1", start_pos=10, progress=updates.append)
    assert report.read == 0
    assert [(u.read, u.position) for u in updates] == [(0, None)]  # one final call
    updates.clear()
    await replay.replay_all(progress=updates.append, progress_every=3)
    assert [u.read for u in updates] == [3]  # the last periodic call is the final one


async def test_checkpoint_resumes_after_last_processed_event() -> None:
    store = EventStore()
    await fill(store, "user.1", [0, 1, 2])
    replay = EventReplay(store)
    seen: list[int] = []
    replay.handle("#", lambda e: seen.append(e.data["n"]))
    first = await replay.replay_all(checkpoint="audit")
    assert seen == [0, 1, 2] and first.checkpoint == "audit"
    await store.append("user.1", Event("user.seen", {"n": 3, "user_id": "x"}))
    second = await replay.replay_all(checkpoint="audit")
    assert seen == [0, 1, 2, 3]
    assert second.replayed == 1 and second.last_position == first.last_position + 1  # type: ignore[operator]
    third = await replay.replay_all(checkpoint="audit")
    assert third.read == 0
    # a checkpoint belongs to one kind of replay
    with pytest.raises(ReplayError, match="belongs"):
        await replay.replay_stream("user.1", checkpoint="audit")
    assert await replay.reset("audit") is True
    seen.clear()
    await replay.replay_all(checkpoint="audit")
    assert seen == [0, 1, 2, 3]


async def test_stream_checkpoint_and_start_pos_combine() -> None:
    store = EventStore()
    await fill(store, "user.1", [0, 1, 2, 3])
    replay = EventReplay(store)
    seen: list[int] = []
    replay.handle("#", lambda e: seen.append(e.data["n"]))
    await replay.replay_stream("user.1", start_pos=2, checkpoint="s")
    assert seen == [2, 3]
    await store.append("user.1", Event("user.seen", {"n": 4}))
    await replay.replay_stream("user.1", checkpoint="s")
    assert seen == [2, 3, 4]


async def test_checkpoint_saved_when_cancelled() -> None:
    store = EventStore()
    await fill(store, "user.1", list(range(10)))
    replay = EventReplay(store)
    seen: list[int] = []
    release = asyncio.Event()

    async def slow(event: Event) -> None:
        seen.append(event.data["n"])
        if event.data["n"] == 3:
            await release.wait()

    replay.handle("#", slow)
    task = asyncio.create_task(replay.replay_all(checkpoint="c", checkpoint_every=1000))
    while len(seen) < 4:
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    seen.clear()
    release.set()
    await replay.replay_all(checkpoint="c")
    assert seen == [3, 4, 5, 6, 7, 8, 9]  # the interrupted event is seen again


async def test_failures_continue_by_default_and_are_reported() -> None:
    store = EventStore()
    await fill(store, "user.1", [0, 1, 2, 3])
    replay = EventReplay(store)
    ok: list[int] = []

    @replay.handle("#")
    def flaky(event: Event) -> None:
        if event.data["n"] % 2:
            raise RuntimeError(f"bad {event.data['n']}")
        ok.append(event.data["n"])

    report = await replay.replay_stream("user.1")
    assert ok == [0, 2]
    assert (report.replayed, report.failed, report.skipped) == (2, 2, 0)
    assert [str(f.exception) for f in report.failures] == ["bad 1", "bad 3"]
    assert report.failures[0].handler is flaky and report.failures[0].attempts == 1
    assert report.failures[0].event.data["n"] == 1


async def test_the_report_keeps_the_first_100_failures_and_counts_them_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL, logger="pepperpy.event.replay")  # 150 error records
    store = EventStore()
    await fill(store, "user.1", [0] * 150)
    replay = EventReplay(store)

    @replay.handle("#")
    def broken(event: Event) -> None:
        raise RuntimeError(f"bad {event.data['n']}")

    report = await replay.replay_stream("user.1")
    assert (report.replayed, report.failed) == (0, 150)
    assert [f.event.data["n"] for f in report.failures] == list(range(100))


async def test_one_failing_handler_does_not_stop_the_others() -> None:
    store = EventStore()
    await fill(store, "user.1", [0])
    replay = EventReplay(store)
    calls: list[str] = []

    @replay.handle("#")
    def broken(event: Event) -> None:
        raise ValueError("nope")

    replay.handle("#", lambda e: calls.append("after"))
    report = await replay.replay_stream("user.1")
    assert calls == ["after"] and report.failed == 1 and report.replayed == 0


async def test_stop_policy_raises_and_resumes_at_the_failed_event() -> None:
    store = EventStore()
    await fill(store, "user.1", [0, 1, 2, 3])
    replay = EventReplay(store)
    seen: list[int] = []
    broken = {2}

    @replay.handle("#")
    async def handler(event: Event) -> None:
        if event.data["n"] in broken:
            raise RuntimeError("boom")
        seen.append(event.data["n"])

    with pytest.raises(ReplayStopped) as caught:
        await replay.replay_stream("user.1", on_error="stop", checkpoint="s")
    assert isinstance(caught.value, ReplayError)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert caught.value.report.replayed == 2 and caught.value.report.failed == 1
    assert caught.value.report.last_position == 1
    assert seen == [0, 1]
    broken.clear()
    report = await replay.replay_stream("user.1", on_error="stop", checkpoint="s")
    assert seen == [0, 1, 2, 3] and report.replayed == 2


async def test_retry_policy_retries_a_failing_handler() -> None:
    store = EventStore()
    await fill(store, "user.1", [0])
    replay = EventReplay(store)
    attempts: list[int] = []

    @replay.handle("#")
    def twice(event: Event) -> None:
        attempts.append(1)
        if len(attempts) < 2:
            raise RuntimeError("transient")

    policy = RetryPolicy.fixed(max_attempts=3, base_delay=0.0)
    report = await replay.replay_stream("user.1", retry_policy=policy)
    assert len(attempts) == 2 and report.replayed == 1 and report.failed == 0


async def test_bad_options_are_refused() -> None:
    replay = EventReplay(EventStore())
    with pytest.raises(ValueError):
        await replay.replay_all(on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await replay.replay_all(start_pos=-1)
    # past the largest position a store holds: named start_pos (it said from_position)
    for replay_some in (replay.replay_all, partial(replay.replay_stream, "user.1")):
        with pytest.raises(ConfigurationError, match=r"^start_pos must be an int from 0 to "):
            await replay_some(start_pos=2**63)
    with pytest.raises(ValueError):
        await replay.replay_all(checkpoint="")
    with pytest.raises(ValueError):
        replay.handle("a..b", lambda e: None)


async def test_long_stream_reads_in_pages() -> None:
    store = EventStore()
    await store.append("big.one", [Event("big.item", {"n": i}) for i in range(2500)])
    replay = EventReplay(store)
    total = 0

    def count(event: Event) -> None:
        nonlocal total
        total += event.data["n"]

    replay.handle("big.item", count)
    report = await replay.replay_stream("big.one")
    assert report.replayed == 2500 and total == sum(range(2500))


async def test_max_gap_cuts_long_pauses_short() -> None:
    store = EventStore()
    await fill(store, "user.1", [0, 0.05, 3600, 3600.05])  # an hour of silence in the middle
    replay = EventReplay(store)
    seen: list[float] = []
    replay.handle("#", lambda e: seen.append(time.monotonic()))
    began = time.monotonic()
    await asyncio.wait_for(replay.replay_stream("user.1", speed=1.0, max_gap=0.1), timeout=10)
    assert len(seen) == 4
    gaps = [b - a for a, b in zip(seen, seen[1:], strict=False)]
    assert gaps[0] >= 0.035 and gaps[1] >= 0.085 and gaps[2] >= 0.035, gaps
    assert time.monotonic() - began < 5
    with pytest.raises(ValueError, match="max_gap"):
        await replay.replay_stream("user.1", speed=1.0, max_gap=-1)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"progress": 5}, TypeError, "progress must be a callable"),
        ({"progress_every": "10"}, TypeError, "progress_every must be an int"),
        ({"progress_every": 0}, ConfigurationError, "progress_every must be an int"),
        ({"checkpoint_every": 0}, ConfigurationError, "checkpoint_every must be an int"),
    ],
)
async def test_bad_options_are_refused_before_any_handler_runs(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    # progress=5 used to run every handler, then fail at the end inside the replay
    store = EventStore()
    await store.append("a.1", [{"type": "t.x"} for _ in range(3)])
    replay = EventReplay(store)
    handled: list[int | None] = []
    replay.handle("#", lambda event: handled.append(event.position))
    with pytest.raises(error, match=message):
        await replay.replay_stream("a.1", **options)
    assert handled == []
