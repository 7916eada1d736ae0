"""Processing from the cleanup of a cancelled task works as anywhere else.

A task keeps counting a cancellation it was told of (``Task.cancelling()`` stays 1) while
it cleans up after it: in ``finally:`` or ``except CancelledError:``. ``TimeoutMiddleware``
records that count when a call begins and compares with it, so its own expiry there is
still a ``TimeoutError`` (dead-lettered by ``DeadLetterMiddleware``, or retried), and a
new cancellation of the task still wins over it. These tests keep it so.
"""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import (
    DeadLetterMiddleware,
    Event,
    EventProcessor,
    RetryMiddleware,
    RetryPolicy,
    TimeoutMiddleware,
)
from tests.helpers import cancel_again, in_cleanup


@pytest.mark.parametrize("where", ["finally", "except"])
async def test_a_timeout_in_cleanup_is_a_timeout_and_is_dead_lettered(where: str) -> None:
    dead = DeadLetterMiddleware()
    processor = EventProcessor().use(dead, TimeoutMiddleware(0.05))

    @processor.handle("slow")
    async def slow(event: Event) -> None:
        await asyncio.Event().wait()

    assert await in_cleanup(where, lambda: processor.process(Event("slow"))) is None
    [letter] = dead.dead_letters
    assert letter.handler is slow
    assert isinstance(letter.exception, TimeoutError)


async def test_a_timeout_in_cleanup_is_retried_like_anywhere_else() -> None:
    policy = RetryPolicy.fixed(max_attempts=2, base_delay=0, retry_on=(TimeoutError,))
    processor = EventProcessor().use(RetryMiddleware(policy), TimeoutMiddleware(0.05))
    tries: list[int] = []

    @processor.handle("slow")
    async def slow(event: Event) -> None:
        tries.append(1)
        if len(tries) == 1:
            await asyncio.Event().wait()

    assert await in_cleanup("finally", lambda: processor.process(Event("slow"))) is None
    assert len(tries) == 2


async def test_processing_in_cleanup_cancelled_again_is_cancelled_not_timed_out() -> None:
    dead = DeadLetterMiddleware()
    processor = EventProcessor().use(dead, TimeoutMiddleware(30))
    started = asyncio.Event()

    @processor.handle("slow")
    async def slow(event: Event) -> None:
        started.set()
        await asyncio.Event().wait()

    error = await in_cleanup(
        "finally", lambda: processor.process(Event("slow")), meanwhile=cancel_again(started)
    )
    assert isinstance(error, asyncio.CancelledError)
    assert not dead.dead_letters
