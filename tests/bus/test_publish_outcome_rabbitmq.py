"""RabbitMQ: a failed publish says whether its event may be stored (``TransportError.stored``).

On the real broker through the fault proxy, each test on an exchange of its own (the
``rabbitmq_through_proxy`` fixture of tests/bus/conftest.py) with a queue of the test's
own bound to it, so that what the broker routed can be counted; both deleted afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aio_pika
import pytest

from pepperpy.event import EventBus, TransportError
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.bus.faultproxy import FaultProxy, finishes
from tests.conftest import unique_name
from tests.faultproxy import Link
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq

#: an AMQP method frame's class and method ids for Basic.Ack (a publisher confirm)
BASIC_ACK = b"\x00\x3c\x00\x50"


class Counted:
    """A queue of the test's own bound to every topic of ``exchange``: what it holds is
    what the broker stored."""

    def __init__(self, url: str, exchange: str) -> None:
        self.url = url
        self.exchange = exchange
        self.name = unique_name("pep.outcome")

    async def declare(self) -> None:
        async with await aio_pika.connect(self.url) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(self.name, durable=True)
            await queue.bind(self.exchange, routing_key="#")

    async def topics(self) -> list[str]:
        got: list[str] = []
        async with await aio_pika.connect(self.url) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(self.name, passive=True)
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                got.append(str(message.routing_key))
        return got

    async def delete(self) -> None:
        async with await aio_pika.connect(self.url) as connection:
            channel = await connection.channel()
            await channel.queue_delete(self.name)


@pytest.fixture
async def made(
    amqp_url: str, rabbitmq_through_proxy: Callable[..., RabbitMQTransport]
) -> AsyncIterator[tuple[RabbitMQTransport, Counted]]:
    transport = rabbitmq_through_proxy(connect_timeout=1.0)
    await transport.start()
    counted = Counted(amqp_url, transport.exchange_name)
    await counted.declare()
    yield transport, counted
    await finishes(counted.delete(), 15)


async def test_a_publish_that_never_found_a_connection_was_not_stored(
    proxy: FaultProxy, made: tuple[RabbitMQTransport, Counted]
) -> None:
    """The broker was away for the whole publish: ``stored`` is False (it said nothing
    about the outcome before), and the event never turns up."""
    transport, counted = made
    async with EventBus(transport=transport) as bus:
        await bus.publish("outcome.before", {"n": 0})
        proxy.refuse()
        proxy.drop()
        await eventually(lambda: not transport._connected())
        with pytest.raises(TransportError) as raised:
            await finishes(bus.publish("outcome.lost", {"n": 1}), 30)
        assert raised.value.stored is False
        assert "it was not stored" in str(raised.value)
        assert "unknown" not in str(raised.value)
        proxy.heal()
        await finishes(bus.publish("outcome.after", {"n": 2}), 30)  # reconnected
    assert await counted.topics() == ["outcome.before", "outcome.after"]


async def test_a_publish_whose_confirms_were_lost_may_be_stored(
    proxy: FaultProxy, made: tuple[RabbitMQTransport, Counted]
) -> None:
    """Both attempts reached the broker, neither confirm came back (the connection broke
    as each arrived): ``stored`` is None and the message says why publishing again is no
    remedy. The broker has the event, twice: the retry after the reconnect is a new
    message to it."""
    transport, counted = made

    def lose_confirms(link: Link, data: bytes) -> str | None:
        return "drop" if BASIC_ACK in data else None

    async with EventBus(transport=transport) as bus:
        proxy.on_server = lose_confirms
        with pytest.raises(TransportError) as raised:
            await finishes(bus.publish("outcome.unconfirmed", {"n": 1}), 30)
        proxy.on_server = None
    assert raised.value.stored is None
    assert "whether it was stored is unknown" in str(raised.value)
    assert "publishing it again may deliver it twice" in str(raised.value)
    assert await counted.topics() == ["outcome.unconfirmed"] * 2
