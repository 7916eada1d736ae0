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
