"""What NotificationSystem.off waits for, and two off() calls for one registration at
once: as bus.unsubscribe and manager.off do (docs/notifications.md says so)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pepperpy.event import Event, EventBus, EventManager, NotificationSystem

Handler = Callable[[Event], Awaitable[None]]


def _blocking() -> tuple[asyncio.Event, asyncio.Event, list[str], Handler]:
    entered, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def handler(event: Event) -> None:
        entered.set()
        await release.wait()
        finished.append(event.data)

    return entered, release, finished, handler


async def test_off_waits_for_an_attached_bus_delivery_and_a_concurrent_off_returns_false() -> None:
    entered, release, finished, handler = _blocking()
    async with NotificationSystem() as notifications, EventBus() as bus:
        notifications.on("job.done", handler)
        notifications.attach(bus, group=None)
        publishing = asyncio.create_task(bus.publish("job.done", "by bus"))
        await entered.wait()
        # tasks start in creation order: the first removes the registration and waits
        first = asyncio.create_task(notifications.off("job.done", handler))
        second = asyncio.create_task(notifications.off("job.done", handler))
        # the second finds the registration gone: False without waiting for the removal
        # under way (as a second bus.unsubscribe does); the first call is the one to await
        assert await second is False
        assert not first.done() and finished == []
        release.set()
        assert await first is True
        assert finished == ["by bus"]  # the first off returned after the handler finished
        await publishing


async def test_a_concurrent_bus_unsubscribe_returns_false_the_same_way() -> None:
    async with EventBus() as bus:
        entered, release, finished, handler = _blocking()
        bus.subscribe("job.done", handler)
        publishing = asyncio.create_task(bus.publish("job.done", "by bus"))
        await entered.wait()
        first = asyncio.create_task(bus.unsubscribe("job.done", handler))
        second = asyncio.create_task(bus.unsubscribe("job.done", handler))
        assert await second is False
        assert not first.done() and finished == []
        release.set()
        assert await first is True
        assert finished == ["by bus"]
        await publishing


async def test_off_does_not_wait_for_a_handler_emit_is_running_as_manager_off() -> None:
    entered, release, finished, handler = _blocking()
    async with NotificationSystem() as notifications:
        notifications.on("job.done", handler)
        emitting = asyncio.create_task(notifications.emit("job.done", "by emit"))
        await entered.wait()
        assert await notifications.off("job.done", handler) is True
        assert finished == []  # returned with the handler still running
        release.set()
        await emitting
        assert finished == ["by emit"]

    manager = EventManager()  # the same for a manager's own off
    entered, release, finished, handler = _blocking()
    manager.on("job.done", handler)
    emitting = asyncio.create_task(manager.emit("job.done", "by manager"))
    await entered.wait()
    assert await manager.off("job.done", handler) is True
    assert finished == []
    release.set()
    await emitting
