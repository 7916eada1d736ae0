"""A replay that ends with an exception keeps it, even when its last checkpoint save fails.

The save in ``execute``'s ``finally`` used to raise in place of what was propagating: a
replay cancelled during a handler, whose checkpoint another runner had moved meanwhile,
ended with ConcurrencyError, so ``task.cancel()`` left a task that was not cancelled and
``asyncio.timeout`` raised no TimeoutError. The save's failure is now logged and noted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from pepperpy.event import ConcurrencyError, Event, EventReplay, EventStore, ReplayStopped

EVENTS = 50
BLOCKED_AT = 25


class Runners:
    """Two replays sharing one checkpoint table (as two processes on one database).

    ``first`` blocks on the event at global position ``BLOCKED_AT`` (``reached`` is set
    then) until ``gate`` opens, or fails there with ``failure`` if one is given.
    """

    def __init__(self, store: EventStore, failure: Exception | None = None) -> None:
        self.first, self.second = EventReplay(store), EventReplay(store)
        self.second._checkpoints = self.first.checkpoints
        self.reached, self.gate = asyncio.Event(), asyncio.Event()
        self.failure = failure

        async def blocks(event: Event) -> None:
            if event.global_position == BLOCKED_AT:
                self.reached.set()
                await self.gate.wait()
                if self.failure is not None:
                    raise self.failure

        self.first.handle("o.placed", blocks)
        self.second.handle("o.placed", lambda event: None)

    async def move_the_checkpoint(self) -> None:
        """Wait for ``first`` to block, then let ``second`` save past it."""
        await self.reached.wait()
        await self.second.replay_all(checkpoint="c")


@pytest.fixture
async def store() -> AsyncIterator[EventStore]:
    async with EventStore() as events:
        await events.append("o.1", [Event("o.placed") for _ in range(EVENTS)])
        yield events


def failed_saves(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "saving checkpoint 'c'" in r.getMessage()]


async def test_a_cancelled_replay_raises_cancelled_error_when_its_last_save_fails(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    runners = Runners(store)
    task = asyncio.create_task(runners.first.replay_all(checkpoint="c", checkpoint_every=10))
    async with asyncio.timeout(10):
        await runners.move_the_checkpoint()
        task.cancel()
        with pytest.raises(asyncio.CancelledError) as raised:
            await task
    assert task.cancelled()
    [record] = failed_saves(caplog)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and isinstance(record.exc_info[1], ConcurrencyError)
    assert any("saving checkpoint 'c' at position 24 failed too" in n for n in _notes(raised))
    saved = await runners.first.checkpoints.load("replay:c")
    assert saved is not None and saved.position == EVENTS - 1  # the other runner's, kept


async def test_a_replay_under_asyncio_timeout_raises_timeout_error_when_its_last_save_fails(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    runners = Runners(store)

    async def replay_with_deadline() -> None:
        async with asyncio.timeout(30) as deadline:
            replay = asyncio.ensure_future(
                runners.first.replay_all(checkpoint="c", checkpoint_every=10)
            )
            await runners.move_the_checkpoint()
            deadline.reschedule(asyncio.get_running_loop().time())  # expires now
            await replay

    async with asyncio.timeout(10):
        with pytest.raises(TimeoutError):
            await replay_with_deadline()
    assert len(failed_saves(caplog)) == 1


async def test_a_stopped_replay_raises_replay_stopped_when_its_last_save_fails(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    runners = Runners(store, failure=RuntimeError("handler broke"))
    task = asyncio.create_task(
        runners.first.replay_all(checkpoint="c", checkpoint_every=10, on_error="stop")
    )
    async with asyncio.timeout(10):
        await runners.move_the_checkpoint()
        runners.gate.set()
        with pytest.raises(ReplayStopped) as raised:
            await task
    assert any("failed too: ConcurrencyError" in note for note in _notes(raised))
    assert len(failed_saves(caplog)) == 1


async def test_a_replay_that_ends_normally_still_raises_its_failed_save(
    store: EventStore,
) -> None:
    runners = Runners(store)
    task = asyncio.create_task(runners.first.replay_all(checkpoint="c", checkpoint_every=1000))
    async with asyncio.timeout(10):
        await runners.move_the_checkpoint()
        runners.gate.set()
        with pytest.raises(ConcurrencyError):
            await task


def _notes(raised: pytest.ExceptionInfo[BaseException]) -> list[str]:
    return list(getattr(raised.value, "__notes__", []))
