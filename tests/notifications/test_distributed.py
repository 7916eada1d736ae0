"""Notification handlers attached to a distributed bus (Redis Streams): processes running
the same code share each handler's events, so every event notifies once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pepperpy.event import Event, EventBus, MemoryChannel, NotificationSystem, RetryPolicy
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys, eventually, settle

pytestmark = pytest.mark.redis


@pytest.fixture
async def bus_url(redis_url: str) -> AsyncIterator[str]:
    namespace = unique_name("pepnotify")
    yield f"{redis_url}?namespace={namespace}&partitions=2&lease_ttl=2"
    await delete_redis_keys(redis_url, f"{namespace}:*")


def _worker(inbox: MemoryChannel) -> NotificationSystem:
    """What each process would run: the same handler code."""
    notifications = NotificationSystem()
    notifications.add_channel("email", inbox)

    @notifications.on("user.signup")
    async def welcome(event: Event) -> None:
        await notifications.notify(channels=["email"], template="welcome", **event.data)

    return notifications


@pytest.mark.parametrize(("group", "copies"), [("notifications", 1), (None, 2)])
async def test_grouped_handlers_notify_once_across_processes(
    bus_url: str, group: str | None, copies: int
) -> None:
    inboxes = [MemoryChannel(), MemoryChannel()]
    buses = [EventBus(transport=bus_url, retry_policy=RetryPolicy.NONE) for _ in inboxes]
    for inbox, bus in zip(inboxes, buses, strict=True):
        _worker(inbox).attach(bus, group=group)
    try:
        for bus in buses:
            await bus.start()
        for n in range(6):
            user = {"name": f"u{n}", "email": f"u{n}@example.com"}
            await buses[0].publish("user.signup", {"user": user}, key=f"u{n}")

        def delivered() -> list[str]:
            return sorted(str(m.recipient) for inbox in inboxes for m in inbox.outbox)

        await eventually(lambda: len(delivered()) >= 6 * copies, timeout=20)
        await settle(0.5)
        expected = sorted(f"u{n}@example.com" for n in range(6) for _ in range(copies))
        assert delivered() == expected
    finally:
        for bus in buses:
            await bus.close()


class _Shop:
    """One handler method, registered for two objects: one name, two handlers."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def confirm(self, event: Event) -> None:
        self.seen.append(event.id)


@pytest.mark.parametrize("transport", ["memory", "redis"])
async def test_handlers_sharing_a_name_each_get_every_event(bus_url: str, transport: str) -> None:
    """Two lambdas of one module, or one method of two objects, registered for one
    pattern are two handlers: they shared one consumer group, so each event reached one
    of them, and each handler saw half of the events."""
    url = bus_url if transport == "redis" else "memory://"
    bus = EventBus(transport=url, retry_policy=RetryPolicy.NONE)
    notifications = NotificationSystem()
    shops = [_Shop(), _Shop()]
    lambdas: list[list[str]] = [[], []]
    for shop in shops:
        notifications.on("order.created")(shop.confirm)
    notifications.on("order.created")(lambda event: lambdas[0].append(event.id))
    notifications.on("order.created")(lambda event: lambdas[1].append(event.id))
    notifications.attach(bus)
    try:
        await bus.start()
        ids = [await bus.publish("order.created", {"n": n}, key=f"o{n}") for n in range(6)]

        handlers = [shops[0].seen, shops[1].seen, *lambdas]
        await eventually(lambda: sum(map(len, handlers)) >= 24, timeout=20)
        await settle(0.3)
        expected = sorted(event.id for event in ids)
        assert [sorted(seen) for seen in handlers] == [expected] * 4
    finally:
        await bus.close()
        await notifications.close()
