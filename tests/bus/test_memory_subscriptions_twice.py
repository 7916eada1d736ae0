"""docs/bus.md, "subscribe": every ungrouped subscription gets the event, one per call.

A handler subscribed twice, or to two overlapping patterns, gets an event once per
subscription; in one group it gets it once; ``unsubscribe`` removes every subscription
of the handler to that pattern in that group (checked on Redis, NATS and RabbitMQ too
by hand: they keep one queue or consumer per ungrouped subscription).
"""

from __future__ import annotations

from pepperpy.event import Event, EventBus, RetryPolicy


async def test_an_event_reaches_each_subscription_once_and_a_group_once() -> None:
    bus = EventBus(retry_policy=RetryPolicy.NONE)
    seen: list[str] = []

    def handler(event: Event) -> None:
        seen.append(event.type)

    bus.subscribe("orders.*", handler)
    bus.subscribe("orders.*", handler)
    bus.subscribe("orders.#", handler)
    bus.subscribe("orders.*", handler, group="billing")
    bus.subscribe("orders.*", handler, group="billing")
    async with bus:
        await bus.publish("orders.placed", 1)
        assert seen == ["orders.placed"] * 4  # three subscriptions and one group
        assert await bus.unsubscribe("orders.*", handler)  # both ungrouped ones
        assert not await bus.unsubscribe("orders.*", handler)
        seen.clear()
        await bus.publish("orders.placed", 2)
        assert seen == ["orders.placed"] * 2  # orders.# and the group
        assert await bus.unsubscribe("orders.*", handler, group="billing")
        seen.clear()
        await bus.publish("orders.placed", 3)
        assert seen == ["orders.placed"]
