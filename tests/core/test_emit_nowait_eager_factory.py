"""``emit_nowait`` on a loop with ``asyncio.eager_task_factory`` (CPython 3.12+): a
delivery whose handlers never suspend is over before ``emit_nowait`` returns, and the
future it returns is done. Its buffer slot was given back only on a later loop
iteration (a done-callback), and awaiting a done future does not suspend: so
``await manager.emit_nowait(...)`` in a loop met BufferFullError with nothing in
flight, and ``in_flight`` counted events long handled."""

from __future__ import annotations

import asyncio
import sys

import pytest

from pepperpy.event import Event, EventManager

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="asyncio.eager_task_factory: CPython 3.12+"
)


async def test_a_delivery_done_at_once_gives_its_slot_back_at_once() -> None:
    loop = asyncio.get_running_loop()
    factory = loop.get_task_factory()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
    try:
        manager = EventManager(buffer_size=1)
        seen: list[Event] = []
        manager.on("job.run", seen.append)

        @manager.on("job.ran")
        async def quick(event: Event) -> None:
            seen.append(event)

        for kind in ("job.run", "job.ran") * 3:
            future = manager.emit_nowait(kind)
            assert future.done()
            assert manager.in_flight == 0
            await future
        await manager.drain()
        assert len(seen) == 6
    finally:
        loop.set_task_factory(factory)


async def test_a_delivery_that_suspends_still_holds_its_slot() -> None:
    loop = asyncio.get_running_loop()
    factory = loop.get_task_factory()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
    try:
        manager = EventManager(buffer_size=1)
        gate = asyncio.Event()

        @manager.on("job.run")
        async def slow(event: Event) -> None:
            await gate.wait()

        future = manager.emit_nowait("job.run")
        assert not future.done()
        assert manager.in_flight == 1
        gate.set()
        await future
        await manager.drain()
        assert manager.in_flight == 0
    finally:
        loop.set_task_factory(factory)
