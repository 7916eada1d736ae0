"""RabbitMQ: an event over the broker's ``max_message_size`` is refused before it is sent.

Before: ``publish()`` took every broker's limit for 128 MiB (the default of RabbitMQ 3.8
to 3.13; 4.0 made it 16 MiB) and checked it only after the broker had closed the channel
over a message; a limit an operator lowered (or RabbitMQ 4's) met a publish sent twice,
each closing the channel, and a vague error. Now the limit is the transport's
``max_message_size`` (keyword or URL), by default the one of the broker's version, read
from the connection's server properties, and an event over it is refused before
anything is sent, its error naming both sizes; the channel stays usable.

On the real broker, on an exchange of the test's own (``rabbitmq_transports``), deleted
afterwards with its queues.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import ConfigurationError, Event, EventBus, TransportError
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from pepperpy.event.transports.rabbitmq._config import broker_message_limit
from pepperpy.event.transports.rabbitmq._publish import message_limit
from tests.helpers import eventually, settle

pytest.importorskip("aio_pika")

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("properties", "limit"),
    [
        ({"product": "RabbitMQ", "version": "3.8.0"}, 128 * MiB),
        ({"product": "RabbitMQ", "version": "3.13.7"}, 128 * MiB),
        ({"product": "RabbitMQ", "version": "4.0.0"}, 16 * MiB),
        ({"product": "RabbitMQ", "version": b"4.1.2"}, 16 * MiB),
        ({"product": "RabbitMQ", "version": "10.0.0"}, 16 * MiB),
        ({"product": "RabbitMQ"}, 16 * MiB),  # no version: the smaller
        ({"product": "LavinMQ", "version": "2.0.0"}, 16 * MiB),
        ({}, 16 * MiB),
    ],
)
def test_the_default_limit_follows_the_brokers_version(
    properties: dict[str, Any], limit: int
) -> None:
    assert broker_message_limit(properties)[0] == limit


def test_the_option_is_taken_by_keyword_and_in_the_url() -> None:
    base = "amqp://guest:guest@127.0.0.1:5672/"
    assert RabbitMQTransport(base).max_message_size is None
    assert RabbitMQTransport(base + "?max_message_size=1048576").max_message_size == MiB
    # a keyword wins over the URL
    given = RabbitMQTransport(base + "?max_message_size=1048576", max_message_size=2 * MiB)
    assert given.max_message_size == 2 * MiB
    assert RabbitMQTransport(base, max_message_size=512 * MiB).max_message_size == 512 * MiB


@pytest.mark.parametrize(
    ("query", "keywords", "error", "message"),
    [
        ("", {"max_message_size": 0}, ConfigurationError, "max_message_size must be an int >= 1"),
        ("", {"max_message_size": 512 * MiB + 1}, ConfigurationError, "at most 536,870,912"),
        ("", {"max_message_size": "16M"}, TypeError, "max_message_size must be an int"),
        ("", {"max_message_size": True}, TypeError, "max_message_size must be an int"),
        ("", {"max_message_size": 1.5}, TypeError, "max_message_size must be an int"),
        (
            "?max_message_size=16M",
            {},
            ConfigurationError,
            "bad max_message_size='16M' in the RabbitMQ URL: max_message_size must be a whole"
            " number in digits 0-9",
        ),
        ("?max_message_size=-1", {}, ConfigurationError, "max_message_size must be an int >= 1"),
    ],
)
def test_a_bad_max_message_size_is_refused_naming_it(
    query: str, keywords: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        RabbitMQTransport("amqp://guest:guest@127.0.0.1:5672/" + query, **keywords)


@pytest.mark.rabbitmq
async def test_the_default_is_the_running_brokers(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
) -> None:
    transport = rabbitmq_transports()
    await transport.start()
    assert transport._publisher is not None
    underlay = await transport._publisher.get_underlay_channel()
    version = underlay.connection.server_properties["version"]
    assert isinstance(version, str)
    expected = 128 * MiB if int(version.split(".")[0]) < 4 else 16 * MiB
    limit, source = message_limit(transport, underlay)
    assert (limit, source) == (expected, f"the default of RabbitMQ {version}")


async def _counted(
    make: Callable[..., RabbitMQTransport], **options: Any
) -> tuple[EventBus, EventBus, list[int]]:
    """A publishing bus, and a second one whose group queue holds what the broker stored."""
    seen: list[int] = []
    consumer = EventBus(transport=make())
    consumer.subscribe("size.*", group="count")(lambda event: seen.append(len(event.data)))
    await consumer.start()
    publisher = EventBus(transport=make(**options))
    await publisher.start()
    return publisher, consumer, seen


@pytest.mark.rabbitmq
async def test_an_event_over_max_message_size_is_refused_before_anything_is_sent(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
) -> None:
    publisher, consumer, seen = await _counted(rabbitmq_transports, max_message_size=64 * 1024)
    async with asyncio.timeout(60), publisher, consumer:
        big = Event("size.big", "x" * (64 * 1024))
        size = len(big.to_json())
        with pytest.raises(TransportError) as caught:
            await publisher.transport.publish(big)
        assert caught.value.stored is False
        message = str(caught.value)
        assert f"its message is {size:,} bytes" in message
        assert "max_message_size of 65,536 bytes (the transport's max_message_size" in message
        assert message.endswith("; it was not stored")
        # the channel is still usable: the next publish is confirmed and delivered
        await publisher.publish("size.small", "y" * 100)
        await eventually(lambda: seen == [100], timeout=30)
        await settle(0.3)
        assert seen == [100]  # the refused event never reached the broker


@pytest.mark.rabbitmq
async def test_the_brokers_own_refusal_is_explained_and_the_channel_reopened(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
) -> None:
    """A broker whose limit is below the transport's (an operator lowered it and the
    transport was not told; here the transport is told 512 MiB, the broker keeps its
    own): it closes the channel, the error says why, and the next publish works."""
    publisher, consumer, seen = await _counted(rabbitmq_transports, max_message_size=512 * MiB)
    async with asyncio.timeout(90), publisher, consumer:
        assert publisher.transport._publisher is not None
        underlay = await publisher.transport._publisher.get_underlay_channel()
        broker_limit = broker_message_limit(underlay.connection.server_properties)[0]
        big = Event("size.big", "x" * broker_limit)
        with pytest.raises(TransportError) as caught:
            await publisher.transport.publish(big)
        del big
        assert caught.value.stored is False
        message = str(caught.value)
        assert "as over its max_message_size, which is less than the 536,870,912 bytes" in message
        assert "give the transport the broker's max_message_size" in message
        await publisher.publish("size.small", "y" * 100)
        await eventually(lambda: seen == [100], timeout=30)
        await settle(0.3)
        assert seen == [100]


@pytest.mark.rabbitmq
async def test_by_default_an_event_over_the_brokers_default_is_refused_before_sending(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
) -> None:
    publisher, consumer, seen = await _counted(rabbitmq_transports)
    async with asyncio.timeout(60), publisher, consumer:
        assert publisher.transport._publisher is not None
        underlay = await publisher.transport._publisher.get_underlay_channel()
        version = underlay.connection.server_properties["version"]
        limit = broker_message_limit(underlay.connection.server_properties)[0]
        big = Event("size.big", "x" * limit)  # its message is a little larger
        with pytest.raises(TransportError) as caught:
            await publisher.transport.publish(big)
        del big
        assert caught.value.stored is False
        assert (
            f"over the broker's max_message_size of {limit:,} bytes (the default of RabbitMQ "
            f"{version})"
        ) in str(caught.value)
        await publisher.publish("size.small", "y" * 100)
        await eventually(lambda: seen == [100], timeout=30)
        await settle(0.3)
        assert seen == [100]
