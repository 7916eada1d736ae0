"""What ends a replay besides its handlers (docs/replay.md): a cancellation during a
pacing pause, a raising progress callback, an event the store cannot read. Each saves
the checkpoint at the last event handled, so the next run resumes at the first one not
handled; and two failing handlers make one failed event and two failures."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from pepperpy.event import EncryptionError, Event, EventReplay, EventStore, ReplayProgress

T0 = datetime(2024, 1, 1, tzinfo=UTC)


async def test_cancelled_during_a_year_long_pause_it_stops_and_resumes_at_the_paused_event() -> (
    None
):
    store = EventStore()
    await store.append(
        "tick.1",
        [
            Event("tick", {"n": 0}, timestamp=T0),
            Event("tick", {"n": 1}, timestamp=T0 + timedelta(days=365)),
            Event("tick", {"n": 2}, timestamp=T0 - timedelta(days=1)),  # out of order
        ],
    )
    replay = EventReplay(store)
    seen: list[int] = []
    first = asyncio.Event()

    def note(event: Event) -> None:
        seen.append(event.data["n"])
        first.set()

    replay.handle("tick", note)
    task = asyncio.create_task(replay.replay_stream("tick.1", speed=1.0, checkpoint="c"))
    await first.wait()
    for _ in range(3):  # let it reach the pause
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task  # at once: the test would time out waiting a year
    assert seen == [0]
    saved = await replay.checkpoints.load("replay:c")
    assert saved is not None and saved.position == 0
    report = await replay.replay_stream("tick.1", checkpoint="c")
    assert (seen, report.replayed) == ([0, 1, 2], 2)
    await replay.close()


async def test_a_raising_progress_callback_ends_the_replay_after_saving_the_checkpoint() -> None:
    store = EventStore()
    await store.append("tick.1", [Event("tick", {"n": n}) for n in range(5)])
    replay = EventReplay(store)
    seen: list[int] = []
    replay.handle("tick", lambda event: seen.append(event.data["n"]))

    async def progress(snapshot: ReplayProgress) -> None:
        raise LookupError(f"progress bar gone at {snapshot.read}")

    with pytest.raises(LookupError, match="gone at 2"):
        await replay.replay_all(progress=progress, progress_every=2, checkpoint="p")
    assert seen == [0, 1]
    seen.clear()
    report = await replay.replay_all(checkpoint="p")
    assert (seen, report.read) == ([2, 3, 4], 3)
    await replay.close()


async def test_an_event_failing_in_two_handlers_is_one_failed_and_two_failures() -> None:
    store = EventStore()
    await store.append("tick.1", [Event("tick", {"n": n}) for n in range(3)])
    replay = EventReplay(store)
    after: list[int] = []

    def bad(event: Event) -> None:
        if event.data["n"] == 1:
            raise ValueError("bad")

    replay.handle("#", bad)
    replay.handle("tick", bad)
    replay.handle("tick", lambda event: after.append(event.data["n"]))
    report = await replay.replay_stream("tick.1")
    assert (report.replayed, report.failed, report.skipped, report.read) == (2, 1, 0, 3)
    assert [failure.event.data["n"] for failure in report.failures] == [1, 1]
    assert after == [0, 1, 2]  # the handler after the failing ones still got it


@pytest.mark.parametrize("on_shredded", ["redact", "error"])
async def test_a_shredded_stream_is_replayed_as_none_or_ends_the_replay(on_shredded: str) -> None:
    pytest.importorskip("cryptography")
    from pepperpy.event.security import KeyRing, StreamEncryption

    store = EventStore(encryption=StreamEncryption(KeyRing.generate(), on_shredded=on_shredded))
    await store.append("kept.1", Event("tick", {"n": 0}))
    await store.append("gone.1", Event("tick", {"n": 1}))
    await store.append("kept.1", Event("tick", {"n": 2}))
    await store.shred_stream("gone.1")
    replay = EventReplay(store)
    seen: list[object] = []
    replay.handle("tick", lambda event: seen.append(event.data))
    if on_shredded == "redact":
        report = await replay.replay_all()
        assert (seen, report.replayed) == ([{"n": 0}, None, {"n": 2}], 3)
    else:
        with pytest.raises(EncryptionError, match="shredded"):
            await replay.replay_all(checkpoint="s")
        assert await replay.checkpoints.load("replay:s") is None  # nothing handled
    await replay.close()
    await store.close()
