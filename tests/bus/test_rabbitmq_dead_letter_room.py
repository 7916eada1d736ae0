"""RabbitMQ: every topic it takes can be dead-lettered.

AMQP routing and binding keys hold 255 bytes, and a failing event is republished as
``deadletter.<topic>``, 11 bytes longer. A topic of 245 to 255 bytes was published, its
dead letter was refused by the same limit, and the original was acknowledged all the
same: the event was gone (audit 14, finding 1). Topics are now refused beyond 244 bytes
at publish, before anything is sent (``stored=False``), and patterns that match only
such topics at subscribe. A topic that is itself a dead letter keeps the whole 255 bytes:
dead letters are never dead-lettered again.

On the real broker, on an exchange of the test's own (``rabbitmq_transports``), deleted
afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from pepperpy.event import Event, EventBus, PatternError, RetryPolicy, TransportError
from pepperpy.event.transports import Subscription
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.helpers import eventually, settle

pytestmark = pytest.mark.rabbitmq


def topic(size: int) -> str:
    """A topic of ``size`` bytes under ``a.``."""
    return "a." + "x" * (size - 2)


@pytest.mark.parametrize("size", [245, 250, 255, 300])
async def test_a_topic_whose_dead_letter_cannot_be_routed_is_refused_unsent(
    rabbitmq_transports: Callable[..., RabbitMQTransport], size: int
) -> None:
    bus = EventBus(transport=rabbitmq_transports(), retry_policy=RetryPolicy.NONE)
    got: list[Event] = []
    bus.subscribe("#")(got.append)
    async with asyncio.timeout(30), bus:
        with pytest.raises(TransportError, match="at most 244") as caught:
            await bus.publish(topic(size), 1)
        assert caught.value.stored is False  # refused before anything was sent
        assert "deadletter." in str(caught.value)
        await bus.publish("a.b", 2)  # the bus goes on
        await eventually(lambda: [e.data for e in got] == [2])
        await settle()
        assert [e.data for e in got] == [2]


async def test_the_longest_topic_taken_is_dead_lettered_when_its_handler_fails(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
) -> None:
    bus = EventBus(transport=rabbitmq_transports(), retry_policy=RetryPolicy.NONE)
    dead: list[Event] = []
    longest = topic(244)

    @bus.subscribe("a.*", group="w")
    def fail(event: Event) -> None:
        raise RuntimeError("boom")

    bus.subscribe("deadletter.a.*", group="dl")(dead.append)
    async with asyncio.timeout(30), bus:
        event = await bus.publish(longest, {"important": 1})
        await eventually(lambda: len(dead) == 1)
    assert dead[0].type == "deadletter." + longest
    assert len(dead[0].type.encode()) == 255
    assert dead[0].metadata["dlid"] == event.id


async def test_a_dead_letter_topic_may_take_the_whole_routing_key(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
) -> None:
    bus = EventBus(transport=rabbitmq_transports())
    got: list[Event] = []
    long_dead = "deadletter." + topic(244)  # 255 bytes, published to re-drive, say
    bus.subscribe("deadletter.a.*")(got.append)
    async with asyncio.timeout(30), bus:
        await bus.publish(long_dead, 1)
        await eventually(lambda: [e.type for e in got] == [long_dead])
        with pytest.raises(TransportError, match="255-byte") as caught:
            await bus.publish(long_dead + "x", 2)
        assert caught.value.stored is False


async def test_a_pattern_matching_only_refused_topics_is_refused_at_subscribe(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
) -> None:
    bus = EventBus(transport=rabbitmq_transports())
    with pytest.raises(PatternError, match="at most 244") as caught:
        bus.subscribe(topic(245))(lambda event: None)
    assert caught.value.position == 244
    # patterns that can match a dead letter's topic keep the whole binding key
    for pattern in ("deadletter." + topic(244), "*." + "x" * 253, "#." + "x" * 253):
        bus.subscribe(pattern)(lambda event: None)
    with pytest.raises(PatternError, match="255-byte"):
        bus.subscribe("*." + "x" * 254)(lambda event: None)
    async with asyncio.timeout(30), bus:  # the broker binds them
        await bus.publish("a.b", 1)


async def test_the_transport_refuses_such_a_pattern_itself(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
) -> None:
    transport = rabbitmq_transports()
    async with asyncio.timeout(30):
        await transport.start()
        with pytest.raises(TransportError, match="at most 244"):
            await transport.subscribe(Subscription(topic(250), _ignore, None, "long"))
        with pytest.raises(TransportError, match="at most 244") as caught:
            await transport.publish(Event(topic(250), 1))
        assert caught.value.stored is False


async def _ignore(event: Event) -> None:
    return None
