"""``NotificationSystem.on`` with an enum member as the event type: kept as the plain str
it holds, so the registration's name (its consumer group on an attached bus) is the same
on every Python version and for ``(str, Enum)`` and ``StrEnum`` members alike."""

from __future__ import annotations

from enum import Enum, StrEnum

import pytest

from pepperpy.event import Event, EventManager, NotificationSystem


class Mixed(str, Enum):  # noqa: UP042 (the older form, still common)
    CREATED = "user.created"


class Strict(StrEnum):
    CREATED = "user.created"


@pytest.mark.parametrize("member", [Mixed.CREATED, Strict.CREATED])
async def test_an_enum_event_type_is_registered_as_its_str(member: str) -> None:
    notifications = NotificationSystem()
    seen: list[str] = []

    @notifications.on(member)
    async def welcome(event: Event) -> None:
        seen.append(event.type)

    (registration,) = notifications._subscriptions.registrations
    assert type(registration.pattern) is str
    assert registration.name.endswith("welcome|user.created")
    manager = EventManager()
    notifications.attach(manager)
    await manager.emit("user.created", {})
    assert seen == ["user.created"]
    await notifications.close()
