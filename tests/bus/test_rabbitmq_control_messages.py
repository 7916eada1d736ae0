"""RabbitMQ: a control message of a later version is acknowledged unhandled, logged once.

Pings showed what a new kind of control message does to the members of the version
before it: each one was "not a CloudEvents JSON document", an ERROR per message on every
older member, all through a rolling upgrade. This version takes an empty message with a
``pepperpy-`` header it does not know for a control message of a later version: it is
acknowledged, no handler sees it, and one INFO per queue says so. A message with a body
that is not an event is still the ERROR it was.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiormq
import pytest

from pepperpy.event import Event, EventBus
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq


async def test_a_later_versions_control_message(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
    amqp_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "pepperpy.event.transports.rabbitmq")
    transport = rabbitmq_transports(partitions=2)
    bus = EventBus(transport=transport)
    got: dict[str, list[object]] = {"alone": [], "group": []}

    async def alone(event: Event) -> None:
        got["alone"].append(event.data)

    async def grouped(event: Event) -> None:
        got["group"].append(event.data)

    bus.subscribe("orders.*", alone)
    bus.subscribe("orders.*", grouped, group="workers")
    await bus.start()
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel()
        control = aiormq.spec.Basic.Properties(headers={"pepperpy-handoff": 1})
        for _ in range(3):  # to the ungrouped queue, and to the group's partition 0
            await channel.basic_publish(
                b"", exchange=transport.exchange_name, routing_key="orders.x", properties=control
            )
        await channel.basic_publish(  # not an event, not ours: the ERROR it always was
            b"junk", exchange=transport.exchange_name, routing_key="orders.x"
        )
        await bus.publish("orders.created", 1)
        await eventually(lambda: got == {"alone": [1], "group": [1]})
        await asyncio.sleep(0.3)
        assert got == {"alone": [1], "group": [1]}  # no handler saw a control message
        notes = [r for r in caplog.records if "control message of a later" in r.getMessage()]
        assert len(notes) == 2  # once per queue, not per message
        assert all(r.levelno == logging.INFO for r in notes)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 2  # the junk, on each queue
        assert all("not a CloudEvents JSON document" in r.getMessage() for r in errors)
        # acknowledged: nothing waits in the queues
        (group,) = transport._groups.values()
        for queue in [group.queue_names[0], *transport._private_queues]:
            declared = await channel.queue_declare(queue, passive=True)
            assert declared.message_count == 0
    finally:
        await connection.close()
        await bus.close()
