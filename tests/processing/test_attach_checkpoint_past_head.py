"""A checkpointed store attachment refuses a checkpoint past the store's newest event
(the log lost events, or the checkpoint store is another store's): it resumed after it
and silently passed over the events appended since, up to its position."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from pepperpy.event import Event, EventProcessor, EventStore, MemoryCheckpointStore, ReplayError


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.01)


async def test_an_attachment_refuses_a_checkpoint_past_the_head() -> None:
    checkpoints = MemoryCheckpointStore()
    async with EventStore() as first, EventStore() as second:
        await first.append("s", [Event("tick", {"n": n}) for n in range(5)])
        await second.append("s", [Event("tick", {"n": n}) for n in range(2)])
        processor = EventProcessor()
        seen: list[int] = []
        processor.handle("tick", lambda event: seen.append(event.data["n"]))
        attached = processor.attach(first, checkpoint="c", checkpoints=checkpoints)
        await until(lambda: len(seen) == 5)
        await attached.stop()
        seen.clear()
        resumed = processor.attach(second, checkpoint="c", checkpoints=checkpoints)
        with pytest.raises(ReplayError, match="processor checkpoint 'c' is at global position 4"):
            await asyncio.wait_for(resumed.wait(), 30)
        assert seen == []
        assert await processor.reset_checkpoint(second, "c", checkpoints=checkpoints)
        again = processor.attach(second, checkpoint="c", checkpoints=checkpoints)
        await until(lambda: len(seen) == 2)
        await again.stop()
