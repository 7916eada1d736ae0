"""RabbitMQ: close() lets the publishes under way get their confirms.

close() closed the publisher channel while publishes waited for the broker's confirm:
each failed with "the connection was lost before the broker confirmed it; whether it was
stored is unknown" (``stored=None``), though nothing was lost and the broker had stored
a few (audit 14, finding 2). close() now waits for them (at most ``connect_timeout``)
before it closes the connection, and refuses later ones with :class:`ClosedError`.

On the real broker, on an exchange of the test's own (``rabbitmq_transports``), deleted
afterwards; a group of a second bus counts what the broker stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from pepperpy.event import ClosedError, Event, EventBus
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq

COUNT = 300


async def test_publishes_under_way_when_close_begins_are_all_confirmed(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
) -> None:
    seen: set[int] = set()
    consumer = EventBus(transport=rabbitmq_transports())
    consumer.subscribe("race.*", group="count")(lambda event: seen.add(event.data))
    publisher_transport = rabbitmq_transports()
    publisher = EventBus(transport=publisher_transport)
    async with asyncio.timeout(60), consumer:
        await publisher.start()
        tasks = [asyncio.create_task(publisher.publish("race.x", i)) for i in range(COUNT)]
        for _ in range(3):  # each is under way: sent, or waiting for its turn to be
            await asyncio.sleep(0)
        await publisher.close()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        failed = [result for result in results if isinstance(result, BaseException)]
        assert failed == []
        await eventually(lambda: len(seen) == COUNT, timeout=30)
    assert seen == set(range(COUNT))


async def test_a_publish_that_begins_while_close_waits_for_confirms_is_refused(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
) -> None:
    transport = rabbitmq_transports()
    async with asyncio.timeout(60):
        await transport.start()
        tasks = [asyncio.create_task(transport.publish(Event("race.x", i))) for i in range(COUNT)]
        await asyncio.sleep(0)  # each is under way
        closing = asyncio.create_task(transport.close())
        await eventually(lambda: transport._publishes_refused)
        with pytest.raises(ClosedError):
            await transport.publish(Event("race.late", 1))
        await closing
        assert [r for r in await asyncio.gather(*tasks, return_exceptions=True) if r] == []
        with pytest.raises(ClosedError):
            await transport.publish(Event("race.later", 1))
