"""An event whose metadata carries a ``partitionkey`` is published with that key.

``publish(topic, event)`` without ``key=`` routed an event by no key even when it
carried one (an event forwarded from another bus, a dead letter's original re-driven,
``headers={"partitionkey": ...}``), while consumers read the key from the metadata: on
RabbitMQ the events of one key went to random partition queues and a group ran them at
once, out of order, on ``memory://`` concurrent publishes of them overlapped too, while
NATS kept them in order. Now the carried key is the key, on every transport, for
``publish`` and ``publish_many`` alike (``key=`` still wins).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import Event, EventBus
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.helpers import eventually

COUNT = 8


class Lane:
    """A group handler recording the order it got events in, and whether two ran at once."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.running = 0
        self.overlapped = False

    async def __call__(self, event: Event) -> None:
        self.running += 1
        self.overlapped = self.overlapped or self.running > 1
        await asyncio.sleep(0.02)
        self.seen.append(event.data)
        self.running -= 1


def carrying(n: int) -> Event:
    return Event(type="orders.placed", data=n, metadata={"partitionkey": "customer-7"})


async def publish_each(bus: EventBus) -> list[Event]:
    """One publish per event; concurrent on memory:// (its deliveries overlap unless keyed),
    one after the other on a broker (concurrent publishes keep no order there)."""
    calls = [bus.publish("orders.placed", carrying(n)) for n in range(COUNT)]
    return await in_turn(bus, calls)


async def publish_batch(bus: EventBus) -> list[Event]:
    return await bus.publish_many("orders.placed", [carrying(n) for n in range(COUNT)])


async def publish_headers(bus: EventBus) -> list[Event]:
    headers = {"partitionkey": "customer-7"}
    calls = [bus.publish("orders.placed", n, headers=headers) for n in range(COUNT)]
    return await in_turn(bus, calls)


async def in_turn(bus: EventBus, calls: list[Any]) -> list[Event]:
    if bus.transport.__class__.__name__ == "MemoryTransport":
        return list(await asyncio.gather(*calls))
    return [await call for call in calls]


WAYS = [publish_each, publish_batch, publish_headers]


@pytest.mark.parametrize("publish", WAYS, ids=lambda way: way.__name__)
async def test_memory_keeps_the_carried_keys_order(
    publish: Callable[[EventBus], Any],
) -> None:
    lane = Lane()
    async with EventBus() as bus:
        bus.subscribe("orders.*", lane, group="billing")
        events = await publish(bus)
    assert [event.metadata["partitionkey"] for event in events] == ["customer-7"] * COUNT
    assert not lane.overlapped
    assert lane.seen == list(range(COUNT))


@pytest.mark.rabbitmq
@pytest.mark.parametrize("publish", WAYS, ids=lambda way: way.__name__)
async def test_rabbitmq_keeps_the_carried_keys_order(
    rabbitmq_transports: Callable[..., RabbitMQTransport], publish: Callable[[EventBus], Any]
) -> None:
    lane = Lane()
    bus = EventBus(transport=rabbitmq_transports())
    bus.subscribe("orders.*", lane, group="billing")
    async with bus:
        await publish(bus)
        await eventually(lambda: len(lane.seen) == COUNT, timeout=30)
    assert not lane.overlapped
    assert lane.seen == list(range(COUNT))


async def test_key_wins_over_the_carried_one() -> None:
    keys: list[Any] = []
    async with EventBus() as bus:
        bus.subscribe("orders.*", lambda event: keys.append(event.metadata["partitionkey"]))
        await bus.publish("orders.placed", carrying(1), key="customer-8")
        await bus.publish_many("orders.placed", [carrying(2)], key="customer-9")
    assert keys == ["customer-8", "customer-9"]
