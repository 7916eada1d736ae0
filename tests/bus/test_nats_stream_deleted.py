"""NATS: a stream deleted under a running bus is made again, with its consumers.

An operator's ``nats stream rm``, another program's ``delete_topology()``: the running
bus's connection stays up, so nothing restored the stream (that happened only after a
reconnect). Every later publish retried until ``publish_timeout`` and raised
``TransportError`` saying ``NoRespondersError()``, until the process was restarted, while
``health()`` said all was well. Now a publish that nothing answers recreates the stream
and the consumers, waits for them, and goes through: the group gets the event
(docs/transport-nats.md, "Restoring streams and consumers").

On the real server, in a stream of the test's own, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, TransportError
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.faultproxy import finishes
from tests.helpers import eventually

pytestmark = pytest.mark.nats

LOGGER = "pepperpy.event.transports.nats"


@pytest.mark.parametrize("retention", ["interest", "limits"])
async def test_a_publish_after_the_stream_was_deleted_makes_it_again_and_is_delivered(
    nats_url: str,
    nats_namespace: dict[str, str],
    nats_jetstream: Any,
    caplog: pytest.LogCaptureFixture,
    retention: str,
) -> None:
    """With interest retention the consumers must be back before the event is stored:
    an event stored while no consumer exists is dropped at once."""
    caplog.set_level(logging.WARNING, LOGGER)
    grouped: list[Any] = []
    everyone: list[Any] = []
    bus = EventBus(
        transport=NatsTransport(
            nats_url, partitions=2, retention=retention, publish_timeout=10, **nats_namespace
        )
    )
    bus.subscribe("orders.*", group="billing")(lambda event: grouped.append(event.data))

    @bus.subscribe("orders.*")
    def audit(event: Event) -> None:
        everyone.append(event.data)

    async with bus:
        await bus.publish("orders.placed", 1)
        await bus.publish("orders.placed", 2, key="customer-7")
        await eventually(lambda: sorted(grouped) == [1, 2] and sorted(everyone) == [1, 2])
        await nats_jetstream.delete_stream(nats_namespace["stream"])
        await bus.publish("orders.placed", 3)
        await bus.publish("orders.placed", 4, key="customer-7")
        await eventually(lambda: sorted(grouped) == [1, 2, 3, 4])
        await eventually(lambda: sorted(everyone) == [1, 2, 3, 4])
        info = await nats_jetstream.stream_info(nats_namespace["stream"])
        assert info.config.subjects == [f"{nats_namespace['prefix']}.>"]
    (warning,) = [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and "nothing answers" in r.getMessage()
    ]
    assert f"JetStream stream {nats_namespace['stream']!r}" in warning


async def test_a_stream_that_cannot_be_made_again_is_named_in_the_publish_error(
    nats_url: str, nats_namespace: dict[str, str], nats_jetstream: Any
) -> None:
    """The stream was replaced by one of the same name over other subjects: nothing
    takes the bus's subjects, and the stream cannot be made again. The publish says so
    (at once, and on the next publish too), where it said ``NoRespondersError()`` after
    ``publish_timeout``."""
    from nats.js.api import StreamConfig

    bus = EventBus(transport=NatsTransport(nats_url, partitions=1, **nats_namespace))
    async with bus:
        await bus.publish("orders.placed", 1)
        await nats_jetstream.delete_stream(nats_namespace["stream"])
        other = f"{nats_namespace['prefix']}_other.>"
        await nats_jetstream.add_stream(
            StreamConfig(name=nats_namespace["stream"], subjects=[other])
        )
        for _ in range(2):
            with pytest.raises(TransportError) as refused:
                await finishes(bus.publish("orders.placed", 2), 15)
            message = str(refused.value)
            assert "no JetStream stream takes it" in message
            assert f"could not make stream {nats_namespace['stream']!r} again" in message
            assert f"exists but covers [{other!r}]" in message
            assert refused.value.stored is False


async def _consumer_count(js: Any, stream: str) -> int:
    from nats.js.errors import NotFoundError

    try:
        return len(await js.consumers_info(stream))
    except NotFoundError:
        return 0


async def _restored(js: Any, stream: str, *, consumers: int) -> None:
    """Wait until ``stream`` has that many consumers again (polls every 0.1 s)."""
    while await _consumer_count(js, stream) != consumers:
        await asyncio.sleep(0.1)


def _subscriber(
    nats_url: str, namespace: dict[str, str], retention: str
) -> tuple[EventBus, list[Any], list[Any]]:
    """A bus that only consumes: a group (3 consumers: unkeyed, 2 key lanes) and an
    ungrouped subscriber (1), looking at its stream every 0.5 s (ping_interval)."""
    grouped: list[Any] = []
    everyone: list[Any] = []
    transport = NatsTransport(
        nats_url, partitions=2, retention=retention, ping_interval=0.5, **namespace
    )
    bus = EventBus(transport=transport)
    bus.subscribe("orders.*", group="billing")(lambda event: grouped.append(event.data))
    bus.subscribe("orders.*")(lambda event: everyone.append(event.data))
    return bus, grouped, everyone


@pytest.mark.parametrize("retention", ["interest", "limits"])
async def test_a_process_that_only_consumes_makes_a_deleted_stream_again(
    nats_url: str,
    nats_namespace: dict[str, str],
    nats_jetstream: Any,
    caplog: pytest.LogCaptureFixture,
    retention: str,
) -> None:
    """Nothing publishes in the consuming process, so no publish noticed: its
    subscriptions received nothing until its next reconnect. It now looks every
    ping_interval, makes the stream and its consumers again, and says so once; what
    another bus publishes afterwards reaches it."""
    caplog.set_level(logging.WARNING, LOGGER)
    stream = nats_namespace["stream"]
    subscriber, grouped, everyone = _subscriber(nats_url, nats_namespace, retention)
    publisher = EventBus(
        transport=NatsTransport(nats_url, partitions=2, retention=retention, **nats_namespace)
    )
    async with subscriber, publisher:
        await publisher.publish("orders.placed", 1)
        await publisher.publish("orders.placed", 2, key="customer-7")
        await eventually(lambda: sorted(grouped) == [1, 2] and sorted(everyone) == [1, 2])
        await nats_jetstream.delete_stream(stream)

        await finishes(_restored(nats_jetstream, stream, consumers=4), 20)
        await publisher.publish("orders.placed", 3)
        await publisher.publish("orders.placed", 4, key="customer-7")
        await eventually(lambda: sorted(grouped) == [1, 2, 3, 4], timeout=15)
        await eventually(lambda: sorted(everyone) == [1, 2, 3, 4], timeout=15)
        assert subscriber.health().outage is None
    said = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    (warning,) = [text for text in said if "receive nothing" in text]
    assert f"JetStream stream {stream!r} is gone" in warning


async def test_a_stream_made_again_by_a_publisher_gets_the_consumers_back(
    nats_url: str, nats_namespace: dict[str, str], nats_jetstream: Any
) -> None:
    """Another process's publish made the stream again first, without the consumers of
    the process that only consumes: the stream is there, but not the one they were on.
    They come back, from the last event they received, so with limits retention the
    event that made the stream again reaches them too."""
    subscriber, grouped, everyone = _subscriber(nats_url, nats_namespace, "limits")
    publisher = EventBus(
        transport=NatsTransport(nats_url, partitions=2, retention="limits", **nats_namespace)
    )
    async with subscriber, publisher:
        await publisher.publish("orders.placed", 1)
        await eventually(lambda: grouped == [1] and everyone == [1])
        await nats_jetstream.delete_stream(nats_namespace["stream"])
        await publisher.publish("orders.placed", 2)  # makes the stream again
        await publisher.publish("orders.placed", 3, key="customer-7")
        await eventually(lambda: sorted(grouped) == [1, 2, 3], timeout=15)
        await eventually(lambda: sorted(everyone) == [1, 2, 3], timeout=15)


async def test_health_says_while_the_stream_cannot_be_made_again(
    nats_url: str, nats_namespace: dict[str, str], nats_jetstream: Any
) -> None:
    """A stream of that name over other subjects took its place: the subscriptions
    receive nothing, and health() says why (it said all was well)."""
    from nats.js.api import StreamConfig

    subscriber, _, _ = _subscriber(nats_url, nats_namespace, "limits")
    stream = nats_namespace["stream"]
    async with subscriber:
        assert subscriber.health().ready
        await nats_jetstream.delete_stream(stream)
        other = f"{nats_namespace['prefix']}_other.>"
        await nats_jetstream.add_stream(StreamConfig(name=stream, subjects=[other]))

        def unrestorable() -> bool:
            message = subscriber.health().outage_message
            return message is not None and "cannot be made again" in message

        await eventually(unrestorable, timeout=15)
        health = subscriber.health()
        assert not health.ready
        assert health.outage_reason == "consumer failed"
        assert health.outage_message is not None
        assert health.outage_message.startswith(f"JetStream stream {stream!r} ")
        assert f"exists but covers [{other!r}]" in health.outage_message
