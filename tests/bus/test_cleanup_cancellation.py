"""Publishing from the cleanup of a cancelled task, on the bus, works as anywhere else.

A task keeps counting a cancellation it was told of (``Task.cancelling()`` stays 1) while
it cleans up after it: in ``finally:`` or ``except CancelledError:``, where a program
publishes a last "stopped" event. Two checks took that count for a cancellation of the
call itself. On ``memory://`` the publisher waits for its deliveries (``outcome``): a
delivery cancelled on its own came out of ``publish`` as ``CancelledError`` there instead
of being logged. The bus's delivery (``_cancelled_by_caller``) took a handler's own
``CancelledError`` (it awaited a future someone else cancelled) for a shutdown when it
ran in such a task (a transport delivering in its publisher's task), so the event was
neither retried nor dead-lettered and the publish raised. Now only a cancellation that
comes during the call counts; one that does still propagates.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.base import Subscription, Transport
from tests.helpers import cancel_again, in_cleanup


class InlineTransport(Transport):
    """Delivers in the publisher's task (the contract allows it); patterns are exact topics."""

    distributed = False

    def __init__(self) -> None:
        self.subs: list[Subscription] = []

    async def publish(self, event: Event, *, key: str | None = None) -> None:
        for sub in list(self.subs):
            if sub.pattern == event.type:
                await sub.deliver(event)

    async def subscribe(self, subscription: Subscription) -> None:
        self.subs.append(subscription)

    async def unsubscribe(self, subscription: Subscription) -> None:
        self.subs.remove(subscription)

    async def close(self) -> None:
        self.subs.clear()


@pytest.mark.parametrize("where", ["finally", "except"])
async def test_a_memory_publish_in_cleanup_logs_a_delivery_cancelled_on_its_own(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    # the handler cancels its own delivery task: outside cleanup code the publish logs
    # that delivery's failure and returns; in cleanup it raised CancelledError
    bus = EventBus(transport="memory://", retry_policy=RetryPolicy.NONE)
    handled: list[str] = []

    async def cancels_itself(event: Event) -> None:
        handled.append(event.type)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)

    bus.subscribe("t.x")(cancels_itself)
    try:
        with caplog.at_level(logging.ERROR, logger="pepperpy.event.transports.memory"):
            published = await in_cleanup(where, lambda: bus.publish("t.x", {"n": 1}))
        assert isinstance(published, Event), published
        assert handled == ["t.x"]
        assert any("delivery of t.x" in r.getMessage() for r in caplog.records), caplog.text
    finally:
        await bus.close()


async def test_a_memory_publish_in_cleanup_still_ends_when_cancelled_again() -> None:
    # a cancellation of the publisher while it waits for the handler is the caller's:
    # it propagates, and cancels the delivery
    bus = EventBus(transport="memory://", retry_policy=RetryPolicy.NONE)
    started = asyncio.Event()
    stopped: list[str] = []

    async def slow(event: Event) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.append(event.type)
            raise

    bus.subscribe("t.x")(slow)
    try:
        # cancelled again, while the cleanup's publish waits
        error = await in_cleanup(
            "finally", lambda: bus.publish("t.x"), meanwhile=cancel_again(started)
        )
        assert isinstance(error, asyncio.CancelledError)
        assert stopped == ["t.x"]
    finally:
        await bus.close()


@pytest.mark.parametrize("where", ["finally", "except"])
async def test_a_handlers_own_cancelled_await_in_a_cleanup_delivery_is_dead_lettered(
    where: str,
) -> None:
    # a transport delivering in its publisher's task: the handler awaited a future
    # someone else cancelled, a failure of the handler (dead-lettered) as outside
    # cleanup code; the delivery took it for a shutdown and the publish raised
    bus = EventBus(transport=InlineTransport(), retry_policy=RetryPolicy.NONE)
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    gone.cancel()
    tries: list[int] = []

    async def waits_on_gone(event: Event) -> None:
        tries.append(1)
        await gone

    bus.subscribe("t.x")(waits_on_gone)
    try:
        published = await in_cleanup(where, lambda: bus.publish("t.x"))
        assert isinstance(published, Event), published
        assert len(tries) == 1
        [letter] = bus.dead_letters
        assert letter.handler is waits_on_gone and letter.attempts == 1
        assert isinstance(letter.exception, asyncio.CancelledError)
    finally:
        await bus.close()


async def test_a_cleanup_delivery_cancelled_again_is_not_a_handler_failure() -> None:
    # in the same inline delivery, a new cancellation of the publisher's task propagates:
    # no retry, no dead letter
    bus = EventBus(
        transport=InlineTransport(), retry_policy=RetryPolicy.fixed(max_attempts=3, base_delay=0)
    )
    started = asyncio.Event()
    tries: list[int] = []

    async def slow(event: Event) -> None:
        tries.append(1)
        started.set()
        await asyncio.Event().wait()

    bus.subscribe("t.x")(slow)
    try:
        error = await in_cleanup(
            "finally", lambda: bus.publish("t.x"), meanwhile=cancel_again(started)
        )
        assert isinstance(error, asyncio.CancelledError)
        assert tries == [1]
        assert not bus.dead_letters
    finally:
        await bus.close()
