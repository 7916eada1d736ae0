"""A group (or a key) given as an enum member is the plain str it holds.

``subscribe(pattern, group=Groups.BILLING)`` kept the member. A ``(str, Enum)`` member
formats as ``Groups.BILLING``, so the name the group got on the broker (the Redis
consumer group ``"<group>:<pattern>"``, the subscription name NATS and RabbitMQ use for
its durable consumer or queue) was not the one a process subscribing with ``"billing"``
(or with a ``StrEnum`` member) got: two groups, each receiving every event, where the
processes were meant to share the work. ``delete_group`` with a member deleted a group
nobody used. The group is now kept as the plain str it holds, everywhere.
"""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, EventProcessor, RetryPolicy
from pepperpy.event.transports import Subscription
from pepperpy.event.transports.memory import MemoryTransport


class Groups(str, Enum):  # noqa: UP042 - the pre-StrEnum idiom, still common
    BILLING = "billing"


class Modern(StrEnum):
    BILLING = "billing"


class Recording(MemoryTransport):
    """The memory transport, keeping what the bus asks of it (what a broker is told)."""

    def __init__(self) -> None:
        super().__init__()
        self.subscribed: list[Subscription] = []
        self.deleted: list[Subscription] = []

    async def subscribe(self, subscription: Subscription) -> None:
        self.subscribed.append(subscription)
        await super().subscribe(subscription)

    async def delete_group(self, subscription: Subscription) -> None:
        self.deleted.append(subscription)
        await super().delete_group(subscription)


@pytest.mark.parametrize("member", [Groups.BILLING, Modern.BILLING], ids=["str-Enum", "StrEnum"])
async def test_a_member_group_is_the_group_of_its_str(member: Any) -> None:
    transport = Recording()
    handled: list[str] = []
    async with EventBus(transport=transport, retry_policy=RetryPolicy.NONE) as bus:
        bus.subscribe("orders.*", lambda event: handled.append("member"), group=member)
        bus.subscribe("orders.*", lambda event: handled.append("plain"), group="billing")
        processor = EventProcessor()
        processor.handle("orders.*", lambda event: handled.append("processor"))
        processor.attach(bus, "orders.*", group=member)
        await bus.start()
        first, second, third = transport.subscribed
        assert [type(sub.group) for sub in transport.subscribed] == [str, str, str]
        assert first.group == second.group == third.group == "billing"
        assert first.name == second.name == third.name  # one group on a broker
        for number in range(6):
            await bus.publish("orders.placed", {"number": number})
        assert len(handled) == 6  # shared, not each member getting every event

    async with EventBus(transport=(deleting := Recording())) as bus:
        await bus.delete_group("orders.*", member)
        (deleted,) = deleting.deleted
        assert type(deleted.group) is str and deleted.group == "billing"
        assert deleted.name == first.name


async def test_unsubscribe_with_a_member_names_the_plain_group() -> None:
    async with EventBus(retry_policy=RetryPolicy.NONE) as bus:
        seen: list[Event] = []
        bus.subscribe("orders.*", seen.append, group="billing")
        assert await bus.unsubscribe("orders.*", seen.append, group=Groups.BILLING)
        await bus.publish("orders.placed", {})
        assert seen == []


@pytest.mark.parametrize("member", [Groups.BILLING, Modern.BILLING], ids=["str-Enum", "StrEnum"])
async def test_a_member_key_travels_as_its_str(member: Any) -> None:
    """A key given as a member stayed one in the event's metadata: not a str, so
    ``to_cloudevent()`` left it out of the ``partitionkey`` extension (a consumer in
    another language finds the key there) and packed it into ``pepperpymetadata``."""
    async with EventBus(retry_policy=RetryPolicy.NONE) as bus:
        seen: list[Event] = []
        bus.subscribe("orders.*", seen.append)
        event = await bus.publish("orders.placed", {}, key=member)
        (batched,) = await bus.publish_many("orders.placed", [{}], key=member)
        (keyed,) = await bus.publish_many("orders.placed", [{}], key=lambda message: member)
        for published in (event, batched, keyed):
            assert type(published.metadata["partitionkey"]) is str
            cloudevent = published.to_cloudevent()
            assert cloudevent["partitionkey"] == "billing"
            assert "pepperpymetadata" not in cloudevent
        assert [each.metadata["partitionkey"] for each in seen] == ["billing"] * 3
