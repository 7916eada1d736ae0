"""A lone ``once`` handler on the default (unbuffered) manager is called inline.

The fast path of emit() sent a lone ``once`` listener to the several-handlers path: it ran
in a Task of its own, so its context-variable writes were lost and ``current_task()`` was
not the emitter's, unlike the same handler on a buffered manager (docs/manager.md: "one
handler: emit calls it inline").
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest

from pepperpy.event import Event, EventManager

marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="emitter")


@pytest.mark.parametrize("buffer_size", [None, 10], ids=["unbuffered", "buffered"])
@pytest.mark.parametrize("is_async", [True, False], ids=["async", "sync"])
async def test_a_lone_once_handler_runs_inline_in_the_emitters_task(
    buffer_size: int | None, is_async: bool
) -> None:
    manager = EventManager(buffer_size=buffer_size)
    emitter = asyncio.current_task()
    seen: list[Any] = []

    def record(event: Event) -> None:
        seen.append(asyncio.current_task() is emitter)
        marker.set("handler")

    async def handler(event: Event) -> None:
        record(event)

    manager.once("job.done", handler if is_async else record)
    marker.set("emitter")
    await manager.emit("job.done")
    assert seen == [True]
    assert marker.get() == "handler"
    await manager.emit("job.done")
    assert seen == [True], "once: not run again"
    assert manager.handlers("job.done") == []


async def test_a_lone_once_handler_runs_once_under_concurrent_emits() -> None:
    manager = EventManager()
    calls: list[int] = []

    @manager.once("boot")
    async def first_boot(event: Event) -> None:
        calls.append(event.data)
        await asyncio.sleep(0.01)

    await asyncio.gather(*(manager.emit("boot", n) for n in range(5)))
    await manager.emit("boot", 99)
    assert calls == [0]
