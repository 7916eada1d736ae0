"""EventReplay.close() stops the replays under way, each with its checkpoint saved.

It used to close the checkpoint store and leave them running: the next save opened the
checkpoint store again, whose connections nothing closed, and the replay went on after
``async with EventReplay(...)`` had ended.
"""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import ClosedError, Event, EventReplay, EventStore, SQLiteCheckpointStore
from pepperpy.event.security import AccessControl


async def test_close_stops_a_replay_which_resumes_from_its_checkpoint(any_store_url: str) -> None:
    async with EventStore(any_store_url) as store:
        await store.append("clock.1", [Event("tick.tock", {"n": n}) for n in range(200)])
        seen: list[int] = []
        started = asyncio.Event()

        async def tick(event: Event) -> None:
            seen.append(event.data["n"])
            started.set()
            await asyncio.sleep(0.005)

        async with EventReplay(store) as replay:
            replay.handle("tick.*", tick)
            running = asyncio.ensure_future(replay.replay_all(checkpoint="ticks"))
            async with asyncio.timeout(30):
                await started.wait()
        # the block's close() has returned: the replay has stopped, and handles no more
        assert running.done()
        with pytest.raises(ClosedError, match="closed during this replay, before the event"):
            running.result()
        handled = len(seen)
        assert 0 < handled < 200 and seen == list(range(handled))
        await asyncio.sleep(0.1)
        assert len(seen) == handled

        async with EventReplay(store) as again:  # resumes after the last event handled
            again.handle("tick.*", tick)
            async with asyncio.timeout(60):
                report = await again.replay_all(checkpoint="ticks")
        assert report.replayed == 200 - handled
        assert seen == list(range(200))  # none twice, none skipped


async def test_close_from_a_handler_stops_the_replay_at_the_next_event(sqlite_url: str) -> None:
    async with EventStore(sqlite_url) as store:
        await store.append("clock.1", [Event("tick.tock", {"n": n}) for n in range(5)])
        seen: list[int] = []
        replay = EventReplay(store)

        async def tick(event: Event) -> None:
            seen.append(event.data["n"])
            if event.data["n"] == 1:
                await replay.close()  # does not wait for the replay it is called from

        replay.handle("tick.*", tick)
        async with asyncio.timeout(30):
            with pytest.raises(ClosedError, match="before the event at stream position 2"):
                await replay.replay_stream("clock.1", checkpoint="ticks")
        assert seen == [0, 1]
        async with asyncio.timeout(30):
            report = await replay.replay_stream("clock.1", checkpoint="ticks")
        assert (report.replayed, seen) == (3, [0, 1, 2, 3, 4])
        await replay.close()


async def test_close_waits_for_a_reset_under_way(sqlite_url: str) -> None:
    """With access= on the store, reset() loads the checkpoint (its scope decides what
    resetting needs) before deleting it: a close() between the two let the delete open
    the checkpoint store close() had just closed (a connection nothing closed). close()
    now waits for the reset, which deletes before the store is closed."""
    acl = AccessControl(default="allow")
    async with EventStore(sqlite_url, access=acl) as store:
        await store.append("clock.1", Event("tick.tock"))
        replay = EventReplay(store)
        replay.handle("tick.*", lambda event: None)
        await replay.replay_stream("clock.1", checkpoint="ticks")
        checkpoints = replay.checkpoints
        assert isinstance(checkpoints, SQLiteCheckpointStore)
        resetting = asyncio.ensure_future(replay.reset("ticks"))
        await asyncio.sleep(0)  # one step: the reset's load is under way, in a thread
        async with asyncio.timeout(30):
            await replay.close()
            done_at_close = resetting.done()
            assert await resetting is True
        # close() returned after the reset; the checkpoint store stays closed
        assert (done_at_close, checkpoints._db) == (True, None)
        async with EventReplay(store) as again:
            assert await again.checkpoints.load("replay:ticks") is None
