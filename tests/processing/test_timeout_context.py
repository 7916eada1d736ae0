"""TimeoutMiddleware's watchdog timer keeps nothing of the events it watches.

A timer keeps the context it was armed in until it fires, and the watchdog re-arms
itself from its own callback, in that same context: the context of the event that
first armed it (the processor's record of that call, with the failed handlers'
tracebacks, and every context variable the application had set, a request or a
tenant) stayed alive for as long as events kept coming.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref

from pepperpy.event import Event, EventProcessor, TimeoutMiddleware

request: contextvars.ContextVar[object] = contextvars.ContextVar("request")


class Request:
    """What an application keeps in a context variable for the length of a call."""


async def test_the_first_events_context_is_not_kept_by_the_watchdog() -> None:
    processor = EventProcessor().use(TimeoutMiddleware(30))
    processor.handle("t.*", lambda event: None)

    async def call() -> weakref.ref[Request]:
        current = Request()
        request.set(current)  # in this task's context only
        await processor.process(Event("t.x", {}))
        return weakref.ref(current)

    kept = await asyncio.create_task(call())
    for n in range(5):  # more events, while the first deadline's timer still waits
        await processor.process(Event("t.x", {"n": n}))
        await asyncio.sleep(0)  # a turn of the loop: the finished task is let go
    gc.collect()
    assert kept() is None
