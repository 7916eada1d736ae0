"""A sync handler that raises a CancelledError of its own (it read the result of a
future someone else cancelled) has failed, as the docs say of a handler's own
cancellation "in both paths": retried, dead-lettered, and the emit returns. With one
matching handler it was; with several, the error escaped ``_dispatch_many``: the emit
raised CancelledError although nothing cancelled it, the handlers after it never ran,
those already started were left running unawaited, and no dead letter was kept."""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import Event, EventManager


def reads_cancelled(event: Event) -> None:
    future = asyncio.get_running_loop().create_future()
    future.cancel()
    future.result()  # raises CancelledError, in a sync call


@pytest.mark.parametrize("sync_first", [True, False])
@pytest.mark.parametrize("buffer_size", [None, 4])
async def test_sync_handler_own_cancellation_is_a_failure(
    sync_first: bool, buffer_size: int | None
) -> None:
    manager = EventManager(buffer_size=buffer_size)
    finished: list[str] = []
    release = asyncio.Event()

    async def other(event: Event) -> None:
        await release.wait()
        finished.append("other")

    def after(event: Event) -> None:
        finished.append("after")

    if sync_first:
        manager.on("job.run", reads_cancelled)
        manager.on("job.run", other)
    else:
        manager.on("job.run", other)
        manager.on("job.run", reads_cancelled)
    manager.on("job.run", after)

    emit = asyncio.ensure_future(manager.emit("job.run"))
    await asyncio.sleep(0)  # let the emit start its handlers
    release.set()
    await emit  # returns: nothing cancelled it

    assert sorted(finished) == ["after", "other"]
    assert len(manager.dead_letters) == 1
    letter = manager.dead_letters[0]
    assert letter.handler is reads_cancelled
    assert isinstance(letter.exception, asyncio.CancelledError)


async def test_one_sync_handler_own_cancellation_is_a_failure_too() -> None:
    manager = EventManager()
    manager.on("job.run", reads_cancelled)
    await manager.emit("job.run")
    assert [letter.handler for letter in manager.dead_letters] == [reads_cancelled]
