"""RabbitMQ: a message the decoder fails on, however it fails, never stops consumption.

Each test publishes to an exchange of its own and deletes what it declared afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import EventBus
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.bus.conftest import TRAP
from tests.conftest import unique_name
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def transport(amqp_url: str) -> AsyncIterator[RabbitMQTransport]:
    made = RabbitMQTransport(amqp_url, exchange=unique_name("pep.bad"), partitions=1, prefetch=1)
    yield made
    await made.close()
    await made.delete_topology()


@pytest.mark.usefixtures("decoder_that_breaks")
async def test_any_decoding_failure_drops_the_message_and_consumption_goes_on(
    amqp_url: str, transport: RabbitMQTransport, caplog: pytest.LogCaptureFixture
) -> None:
    import aio_pika

    caplog.set_level(logging.ERROR, logger="pepperpy.event.transports.rabbitmq")
    bus = EventBus(transport=transport)
    got: list[Any] = []
    bus.subscribe("jobs.*", group="workers")(lambda event: got.append(event.data))
    async with bus:
        async with await aio_pika.connect(amqp_url) as connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(transport.exchange_name)
            for _ in range(3):  # one prefetch slot: any of them left unsettled stops all
                await exchange.publish(aio_pika.Message(TRAP), routing_key="jobs.bad")
        await bus.publish("jobs.good", 1)
        await eventually(lambda: got == [1])
    dropped = [r for r in caplog.records if "not a CloudEvents JSON document" in r.getMessage()]
    assert len(dropped) == 3
    assert all(r.exc_info is not None for r in dropped)  # unexpected: logged with where
