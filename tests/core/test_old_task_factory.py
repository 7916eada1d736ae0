"""A loop whose task factory takes ``(loop, coro)`` (asyncio's documented signature
before 3.11, still found in tracing code): with several handlers, a sync handler that
returns a coroutine had it started with ``create_task(coro, context=...)``, which such
a factory refuses: the handler was dead-lettered with "unexpected keyword argument
'context'" and its coroutine never awaited. It runs now, in the context its sync part
set, and that context does not leak into the emitter's."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Generator
from typing import Any

from pepperpy.event import Event, EventManager

step: contextvars.ContextVar[str] = contextvars.ContextVar("step", default="none")


def old_factory(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any]
) -> asyncio.Task[Any]:
    return asyncio.Task(coro, loop=loop)


async def test_a_sync_handler_returning_a_coroutine_under_an_old_task_factory() -> None:
    loop = asyncio.get_running_loop()
    factory = loop.get_task_factory()
    loop.set_task_factory(old_factory)
    try:
        manager = EventManager()
        seen: list[str] = []

        async def rest(event: Event) -> None:
            await asyncio.sleep(0)
            seen.append(step.get())

        def starts(event: Event) -> Coroutine[Any, Any, None]:
            step.set("sync part")
            return rest(event)

        manager.on("job.run", starts, priority=1)
        manager.on("job.run", lambda event: seen.append("other"))
        await manager.emit("job.run")
        assert list(manager.dead_letters) == []
        assert sorted(seen) == ["other", "sync part"]
        assert step.get() == "none"
    finally:
        loop.set_task_factory(factory)
