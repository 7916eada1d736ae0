"""drain() and close() called by a handler of an event emit_nowait scheduled.

A handler of ``app.stopping`` that closes the manager (pyee and blinker users shut
down on an event) waited, in drain(), for every scheduled delivery to finish: its own
among them, which could not finish before the handler returned. The program hung.
"""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import ClosedError, Event, EventManager


@pytest.mark.parametrize("others", [0, 2], ids=["lone-handler", "beside-others"])
async def test_close_from_a_handler_of_a_scheduled_event_returns(others: int) -> None:
    manager = EventManager()
    closed: list[str] = []

    @manager.on("app.stopping")
    async def stop(event: Event) -> None:
        await manager.close()
        closed.append("closed")

    for _ in range(others):  # several handlers: each runs in a Task of its own
        manager.on("app.stopping", lambda event: None)

    manager.emit_nowait("app.stopping")
    await asyncio.wait_for(manager.drain(), 5)
    assert closed == ["closed"]
    with pytest.raises(ClosedError):
        await manager.emit("app.started")


async def test_drain_from_a_handler_still_waits_for_the_other_scheduled_events() -> None:
    manager = EventManager()
    order: list[str] = []

    @manager.on("cache.flush")
    async def flush(event: Event) -> None:
        await asyncio.sleep(0.05)
        order.append(f"flushed {event.data}")

    @manager.on("app.stopping")
    async def stop(event: Event) -> None:
        manager.emit_nowait("cache.flush", 2)  # scheduled by the handler itself
        await manager.drain()
        order.append("drained")

    manager.emit_nowait("cache.flush", 1)
    manager.emit_nowait("app.stopping")
    await asyncio.wait_for(manager.drain(), 5)
    assert order == ["flushed 1", "flushed 2", "drained"]


async def test_a_drain_outside_any_delivery_waits_for_all_of_them() -> None:
    manager = EventManager()
    release = asyncio.Event()
    handled: list[int] = []

    @manager.on("job.run")
    async def run(event: Event) -> None:
        await release.wait()
        handled.append(event.data)

    manager.emit_nowait("job.run", 1)
    manager.emit_nowait("job.run", 2)
    drain = asyncio.create_task(manager.drain())
    await asyncio.sleep(0.01)
    assert not drain.done()
    release.set()
    await asyncio.wait_for(drain, 5)
    assert sorted(handled) == [1, 2]


@pytest.mark.parametrize("how", ["drain", "close"])
async def test_handlers_of_two_scheduled_events_that_drain_both_return(how: str) -> None:
    """Each drain waited for the other event, whose handler was waiting in its own drain:
    both hung forever (``app.stopping`` emitted twice, or two flushes that drain)."""
    manager = EventManager()
    finished: list[int] = []

    @manager.on("app.stopping")
    async def stop(event: Event) -> None:
        await (manager.close() if how == "close" else manager.drain())
        finished.append(event.data)

    for n in range(3):
        manager.emit_nowait("app.stopping", n)
    await asyncio.wait_for(manager.drain(), 5)
    assert sorted(finished) == [0, 1, 2]
    assert manager._stuck == {}


async def test_drains_in_handlers_still_wait_for_a_scheduled_event_doing_work() -> None:
    manager = EventManager()
    release = asyncio.Event()
    order: list[str] = []

    @manager.on("cache.flush")
    async def flush(event: Event) -> None:
        await release.wait()
        order.append("flushed")

    @manager.on("app.stopping")
    async def stop(event: Event) -> None:
        await manager.drain()
        order.append(f"drained {event.data}")

    manager.emit_nowait("cache.flush")
    manager.emit_nowait("app.stopping", 1)
    manager.emit_nowait("app.stopping", 2)
    for _ in range(20):  # both stopping handlers reach drain() and wait there
        await asyncio.sleep(0)
    assert order == []
    release.set()
    await asyncio.wait_for(manager.drain(), 5)
    assert order[0] == "flushed"
    assert sorted(order[1:]) == ["drained 1", "drained 2"]
