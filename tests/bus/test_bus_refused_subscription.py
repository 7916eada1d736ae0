"""A subscription the transport refuses at ``start()`` (a group whose settings differ
from the broker's) is removed from the bus.

It stayed registered: every later ``start()``/``publish()`` tried it again and was
refused again, ``delete_group()`` of its group refused ("this bus has a subscription
in it"), and a corrected subscription of the group never got past it. On RabbitMQ, whose
transport refuses to join a group made with another partition count.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from pepperpy.event import ConfigurationError, Event, EventBus
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq


async def _made_with_three_partitions(make: Callable[..., RabbitMQTransport]) -> None:
    first = EventBus(transport=make(partitions=3))
    first.subscribe("orders.*", lambda event: None, group="billing")
    await first.start()
    await first.close()  # the group stays on the broker, with three partitions


async def test_a_refused_group_subscription_is_removed(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
) -> None:
    await _made_with_three_partitions(rabbitmq_transports)
    got: list[int] = []

    async def billing(event: Event) -> None:
        got.append(event.data)

    bus = EventBus(transport=rabbitmq_transports(partitions=2))
    try:
        bus.subscribe("orders.*", billing, group="billing")
        with pytest.raises(ConfigurationError, match="another partition count") as raised:
            await bus.start()
        assert any("was removed from the bus" in note for note in raised.value.__notes__)
        health = bus.health()
        assert health.subscriptions == 0
        assert health.unregistered == 0
        assert await bus.unsubscribe("orders.*", billing, group="billing") is False

        await bus.start()  # nothing refused is left to try again
        await bus.delete_group("orders.*", "billing")  # refused: "group in use" before
        bus.subscribe("orders.*", billing, group="billing")
        await bus.start()  # the group made afresh, with two partitions
        await bus.publish("orders.placed", 5)
        await eventually(lambda: got == [5])
    finally:
        await bus.close()


async def test_a_refused_late_subscription_is_removed_and_logged(
    rabbitmq_transports: Callable[..., RabbitMQTransport], caplog: pytest.LogCaptureFixture
) -> None:
    """Subscribed on a running bus: registered in the background, which logs the refusal."""
    await _made_with_three_partitions(rabbitmq_transports)
    bus = EventBus(transport=rabbitmq_transports(partitions=2))
    try:
        await bus.start()
        with caplog.at_level(logging.ERROR, logger="pepperpy.event.bus"):
            bus.subscribe("orders.*", lambda event: None, group="billing")
            registering = bus._registering
            assert registering is not None
            await asyncio.wait_for(registering, 30)
        assert "was refused and removed" in caplog.text
        assert bus.health().unregistered == 0
        await bus.publish("orders.placed", 1)  # raised the refusal again before
        await bus.delete_group("orders.*", "billing")
    finally:
        await bus.close()
