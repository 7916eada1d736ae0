"""``EventManager.close()`` cancelled while it drains (``asyncio.timeout`` around it at
shutdown, with a handler stuck) left the manager open: it went on accepting emits and
handlers after the caller had given up closing it, and those were cancelled without
being handled when the loop ended. It closes now; the delivery in progress still runs
to its end, and ``drain()`` still waits for it."""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import ClosedError, Event, EventManager


@pytest.mark.parametrize("buffer_size", [None, 2])
async def test_close_cancelled_while_draining_still_closes(buffer_size: int | None) -> None:
    manager = EventManager(buffer_size=buffer_size)
    started = asyncio.Event()
    release = asyncio.Event()
    finished: list[Event] = []

    @manager.on("job.run")
    async def stuck(event: Event) -> None:
        started.set()
        await release.wait()
        finished.append(event)

    scheduled = manager.emit_nowait("job.run")
    await started.wait()
    closing = asyncio.ensure_future(manager.close())
    await asyncio.sleep(0)  # let close() start waiting in drain()
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing

    # in this order: on the old code, the emit was accepted and waited for ``release``
    with pytest.raises(ClosedError):
        manager.on("job.run", print)
    with pytest.raises(ClosedError):
        manager.emit_nowait("job.run")
    with pytest.raises(ClosedError):
        await manager.emit("job.run")

    release.set()
    await manager.drain()
    assert finished == [await scheduled]
    await manager.close()  # again: harmless
