"""A ``RateLimitMiddleware`` whose ``rate`` is raised while an event waits for a token.

The waiter slept as long as the old rate said: throttled to one event in 100 s and
raised to 1,000/s, the event waiting went on waiting the 100 s.
"""

from __future__ import annotations

import asyncio

from pepperpy.event import Event, EventProcessor, RateLimitMiddleware
from tests.helpers import LoopThread

_WAIT = 5


def _limited(rate: float) -> tuple[RateLimitMiddleware, EventProcessor, list[str]]:
    limit = RateLimitMiddleware(rate, burst=1)
    processor = EventProcessor().use(limit)
    seen: list[str] = []
    processor.handle("job.*", lambda event: seen.append(event.type))
    return limit, processor, seen


async def _waiting(limit: RateLimitMiddleware) -> None:
    """Until an event is in the waiting line of ``limit`` (on any loop)."""
    while not any(line.waiting for line in limit._lines.values()):  # noqa: ASYNC110
        await asyncio.sleep(0.001)


async def test_raising_the_rate_wakes_the_event_waiting() -> None:
    limit, processor, seen = _limited(0.01)  # one event in 100 s
    await processor.process(Event("job.first", {}))  # the burst's token
    second = asyncio.ensure_future(processor.process(Event("job.second", {})))
    await asyncio.wait_for(_waiting(limit), _WAIT)
    limit.rate = 1000.0
    await asyncio.wait_for(second, _WAIT)  # waited the old rate's 100 s
    assert seen == ["job.first", "job.second"]


async def test_a_waiter_on_another_loop_is_woken_too() -> None:
    limit, processor, seen = _limited(0.01)
    await processor.process(Event("job.first", {}))
    thread = LoopThread()
    try:
        waiting = thread.submit(processor.process(Event("job.second", {})))
        await asyncio.wait_for(_waiting(limit), _WAIT)
        limit.rate = 1000.0  # from this loop's thread
        await asyncio.wait_for(asyncio.wrap_future(waiting), _WAIT)
    finally:
        thread.end()
    assert seen == ["job.first", "job.second"]
