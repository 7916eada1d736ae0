"""RabbitMQ: a processor attachment in a group stopped while a ``RetryMiddleware``
waits between tries leaves its event unacknowledged, and the group's next member gets it
(tests/processing/test_bus_stop_during_retry_wait.py has memory:// and Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from pepperpy.event import Event, EventBus, EventProcessor, RetryMiddleware, RetryPolicy
from pepperpy.event.transports.rabbitmq import RabbitMQTransport

pytestmark = pytest.mark.rabbitmq


async def test_rabbitmq_group_gets_the_event_again_after_the_stop(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
) -> None:
    tried: list[int] = []
    got: list[int] = []
    first_try, arrived = asyncio.Event(), asyncio.Event()
    failing = EventProcessor().use(
        RetryMiddleware(RetryPolicy.fixed(max_attempts=5, base_delay=3600.0))
    )

    @failing.handle("order.*")
    async def charge(event: Event) -> None:
        tried.append(event.data)
        first_try.set()
        raise ConnectionError("payment gateway down")

    recording = EventProcessor()

    @recording.handle("order.*")
    async def record(event: Event) -> None:
        got.append(event.data)
        arrived.set()

    first = EventBus(transport=rabbitmq_transports(partitions=1))
    second = EventBus(transport=rabbitmq_transports(partitions=1))
    try:
        leaving = failing.attach(first, "order.*", group="billing")
        await first.start()
        await first.publish("order.placed", 7)
        await asyncio.wait_for(first_try.wait(), 30)

        await asyncio.wait_for(leaving.stop(), 10)  # waited the hour out before

        assert list(first.dead_letters) == []
        recording.attach(second, "order.*", group="billing")
        await second.start()
        await asyncio.wait_for(arrived.wait(), 30)  # requeued, not acknowledged
        assert got == [7]
        assert tried == [7]
    finally:
        await first.close()
        await second.close()
