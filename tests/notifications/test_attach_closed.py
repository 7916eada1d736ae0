"""Attaching to a closed manager or bus is refused and leaves nothing behind.

attach() used to keep the closed target in its list before the subscription failed: the
ClosedError came, but every later ``notifications.on(...)`` then failed too (it
subscribes on every attached target), and the system was unusable.
"""

from __future__ import annotations

import pytest

from pepperpy.event import ClosedError, Event, EventBus, EventManager, NotificationSystem


@pytest.mark.parametrize("kind", ["manager", "bus"])
async def test_a_closed_target_is_refused_and_the_system_stays_usable(kind: str) -> None:
    notifications = NotificationSystem()
    seen: list[str] = []

    @notifications.on("user.created")
    async def first(event: Event) -> None:
        seen.append(event.type)

    target: EventManager | EventBus = EventManager() if kind == "manager" else EventBus()
    await target.close()
    with pytest.raises(ClosedError, match=f"attach\\(\\): the {type(target).__name__} is closed"):
        notifications.attach(target)

    @notifications.on("user.deleted")  # used to raise ClosedError from the closed target
    async def second(event: Event) -> None:
        seen.append(event.type)

    live = EventManager()
    notifications.attach(live)
    await live.emit("user.deleted", {"id": 1})
    await notifications.emit("user.created", {"id": 2})
    assert seen == ["user.deleted", "user.created"]
    await notifications.close()
    await live.close()
