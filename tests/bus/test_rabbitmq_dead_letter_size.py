"""RabbitMQ: a poison message whose dead letter is over ``max_message_size`` ends.

The dead letter of an event is larger than the event (``deadletter.`` before its topic,
``dlreason``, ``dlattempts``, ``dlid`` and ``dlgroup`` in its metadata). An event within
that much of the broker's ``max_message_size`` was stored, but its dead letter could
never be: the consumer that gave up on it failed to publish the dead letter, requeued the
message, received it again at once and failed again, for ever (a poison loop that kept a
partition busy). Now the dead letter that cannot be stored is not sent: the message is
dropped (acknowledged) with an ERROR record of kind ``dead_letter_dropped`` naming the
event, its size and the limit, as NATS does.

On the real broker, on an exchange of the test's own (``rabbitmq_transports``), deleted
afterwards with its queues.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from pepperpy.event import Event
from pepperpy.event.transports import Subscription
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.conftest import unique_name
from tests.helpers import eventually, settle

pytestmark = pytest.mark.rabbitmq

LIMIT = 4096


async def test_a_dead_letter_over_the_limit_drops_the_message_instead_of_looping(
    rabbitmq_transports: Callable[..., RabbitMQTransport], caplog: pytest.LogCaptureFixture
) -> None:
    transport = rabbitmq_transports(max_message_size=LIMIT, max_deliveries=1)
    topic = unique_name("t") + ".big"
    dead: list[Event] = []
    tries: list[str] = []

    async def fail(event: Event) -> None:
        tries.append(event.id)
        raise RuntimeError("boom")

    async def keep(event: Event) -> None:
        dead.append(event)

    event = Event(topic, "")
    padding = LIMIT - len(event.to_json()) - 40  # the event fits; its dead letter cannot
    event = Event(topic, "x" * padding)
    assert LIMIT - 100 < len(event.to_json()) <= LIMIT
    caplog.set_level(logging.ERROR, "pepperpy.event.transports.rabbitmq")
    async with asyncio.timeout(60):
        await transport.start()
        await transport.subscribe(Subscription(topic, fail, "workers", "fail"))
        await transport.subscribe(Subscription("deadletter.#", keep, None, "keep"))
        await transport.publish(event)
        dropped = lambda: [  # noqa: E731
            r for r in caplog.records if vars(r).get("kind") == "dead_letter_dropped"
        ]
        await eventually(lambda: bool(dropped()), timeout=20)
        [record] = dropped()
        assert vars(record)["event_id"] == event.id
        assert vars(record)["group"] == "workers"
        assert vars(record)["limit"] == LIMIT
        assert vars(record)["size"] > LIMIT
        assert f"{LIMIT:,}" in record.getMessage()
        assert vars(record)["deliveries"] == 1
        # one record for the event: not also one saying it was dead-lettered
        assert not [r for r in caplog.records if vars(r).get("kind") == "broker_dead_letter"]
        queues = [c.queue_name for c in transport._consumers if c.group == "workers"]
        await settle()
        # delivered once (max_deliveries=1), then given up on once, never again
        assert tries == [event.id]
        assert len(dropped()) == 1
        assert dead == []
        await transport.close()  # what was not acknowledged returns to the queue
        assert queues
        assert await _ready(transport.url, queues) == 0


async def _ready(url: str, queues: list[str | None]) -> int:
    """The messages ready in ``queues`` (the group's partitions), read on a connection
    of the test's own."""
    import aio_pika

    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        ready = 0
        for name in queues:
            assert name is not None
            declared = await channel.declare_queue(name, passive=True)
            ready += declared.declaration_result.message_count or 0
        return ready
    finally:
        await connection.close()
