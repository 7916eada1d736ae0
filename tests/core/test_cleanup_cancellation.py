"""Emitting from the cleanup of a cancelled task works as anywhere else.

A task keeps counting a cancellation it was told of (``Task.cancelling()`` stays 1) while
it cleans up after it: in ``finally:`` or ``except CancelledError:``, where a program
emits a last "stopped" event. ``EventManager`` took that count for a cancellation of the
emit itself: a retry whose own await was cancelled (a future someone else cancelled),
and with ``buffer_size`` also a first try, made the emit raise ``CancelledError`` instead
of dead-lettering the handler. Now only a cancellation that comes during the emit (or,
for the unbuffered fast path, during its retries) counts; one that does still cancels it.
"""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import Event, EventManager, RetryPolicy
from tests.helpers import cancel_again, in_cleanup


@pytest.mark.parametrize("where", ["finally", "except"])
@pytest.mark.parametrize("buffer_size", [None, 8])
@pytest.mark.parametrize("handlers", [1, 2])
async def test_a_retry_whose_own_await_is_cancelled_in_cleanup_is_dead_lettered(
    where: str, buffer_size: int | None, handlers: int
) -> None:
    # the first try raises, the retry awaits a future someone else cancelled: that try
    # failed, and the handler is dead-lettered, as outside cleanup code
    manager = EventManager(
        retry_policy=RetryPolicy.fixed(max_attempts=2, base_delay=0), buffer_size=buffer_size
    )
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    gone.cancel()
    tries: list[int] = []

    async def flaky(event: Event) -> None:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("first try fails")
        await gone

    async def fine(event: Event) -> None:
        await asyncio.sleep(0)

    manager.on("t.x", flaky)
    if handlers == 2:
        manager.on("t.x", fine)
    emitted = await in_cleanup(where, lambda: manager.emit("t.x"))
    assert isinstance(emitted, Event), emitted
    assert len(tries) == 2
    [letter] = manager.dead_letters
    assert letter.handler is flaky and letter.attempts == 2
    assert isinstance(letter.exception, asyncio.CancelledError)


@pytest.mark.parametrize("where", ["finally", "except"])
async def test_a_buffered_emits_handler_whose_own_await_is_cancelled_in_cleanup_failed(
    where: str,
) -> None:
    manager = EventManager(buffer_size=8)
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    gone.cancel()

    async def waits_on_gone(event: Event) -> None:
        await gone

    manager.on("t.x", waits_on_gone)
    emitted = await in_cleanup(where, lambda: manager.emit("t.x"))
    assert isinstance(emitted, Event), emitted
    [letter] = manager.dead_letters
    assert letter.handler is waits_on_gone
    assert isinstance(letter.exception, asyncio.CancelledError)


@pytest.mark.parametrize("buffer_size", [None, 8])
async def test_an_emit_in_cleanup_cancelled_again_during_a_retry_is_cancelled(
    buffer_size: int | None,
) -> None:
    manager = EventManager(
        retry_policy=RetryPolicy.fixed(max_attempts=3, base_delay=0), buffer_size=buffer_size
    )
    retrying = asyncio.Event()
    tries: list[int] = []

    async def flaky(event: Event) -> None:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("first try fails")
        retrying.set()
        await asyncio.Event().wait()

    manager.on("t.x", flaky)
    error = await in_cleanup(
        "finally", lambda: manager.emit("t.x"), meanwhile=cancel_again(retrying)
    )
    assert isinstance(error, asyncio.CancelledError)
    assert len(tries) == 2, "the cancelled retry is not retried again"
    assert not manager.dead_letters, "cancelling the emit is not a handler failure"


@pytest.mark.parametrize("buffer_size", [None, 8])
async def test_an_emit_in_cleanup_cancelled_again_during_its_handler_is_cancelled(
    buffer_size: int | None,
) -> None:
    manager = EventManager(
        retry_policy=RetryPolicy.fixed(max_attempts=3, base_delay=0), buffer_size=buffer_size
    )
    started = asyncio.Event()
    tries: list[int] = []

    async def slow(event: Event) -> None:
        tries.append(1)
        started.set()
        await asyncio.Event().wait()

    manager.on("t.x", slow)
    error = await in_cleanup(
        "finally", lambda: manager.emit("t.x"), meanwhile=cancel_again(started)
    )
    assert isinstance(error, asyncio.CancelledError)
    assert tries == [1]
    assert not manager.dead_letters
