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
