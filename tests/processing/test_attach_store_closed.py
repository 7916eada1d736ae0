"""A checkpointed store attachment ends quietly when its store is closed early.

An attachment ends when its store is closed, with or without a checkpoint, live or not
yet started. One case raised: an attachment resuming from a saved checkpoint, whose
store was closed while it loaded that checkpoint, subscribed again after it on the
closed store and stopped with ``ClosedError`` (logged as "processor stopped").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from pepperpy.event import Event, EventProcessor, EventStore

LOGGER = "pepperpy.event.processor"


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    value: str = request.getfixturevalue("postgres_url")
    return value


def ticks(first: int, count: int) -> list[Event]:
    return [Event("tick", {"n": n}) for n in range(first, first + count)]


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_store_closed_while_the_checkpoint_loads_ends_the_attachment(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, LOGGER)
    store = EventStore(store_url)
    try:
        await store.append("s", ticks(0, 3))
        processor = EventProcessor()
        seen: list[int] = []
        processor.handle("tick", lambda event: seen.append(event.data["n"]))
        first = processor.attach(store, checkpoint="c")
        await until(lambda: len(seen) == 3)
        await first.stop()  # the checkpoint holds position 2
        await store.append("s", ticks(3, 2))
        resumed = processor.attach(store, checkpoint="c")
        await store.close()  # before the attachment has loaded its checkpoint
        await asyncio.wait_for(resumed.wait(), 30)  # ended, not failed
        assert not resumed.running
        assert seen == [0, 1, 2]  # nothing before the checkpoint delivered again
        assert not [r for r in caplog.records if r.name == LOGGER]
    finally:
        await store.close()
