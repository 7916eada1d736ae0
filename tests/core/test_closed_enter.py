"""``async with`` on a closed object raises ClosedError at once, as on a closed EventBus.

Before, a closed EventManager, EventStore or NotificationSystem was entered silently and the block
failed only at its first use (or, doing nothing but registering, ran without a word).
"""

from __future__ import annotations

import pytest

from pepperpy.event import ClosedError, EventBus, EventManager, EventStore, NotificationSystem


async def test_a_closed_manager_refuses_async_with() -> None:
    manager = EventManager()
    async with manager:
        pass
    with pytest.raises(ClosedError, match="the EventManager is closed"):
        async with manager:
            pytest.fail("entered a closed manager")


async def test_a_closed_notification_system_refuses_async_with() -> None:
    system = NotificationSystem()
    await system.close()
    with pytest.raises(ClosedError, match="the NotificationSystem is closed"):
        async with system:
            pytest.fail("entered a closed system")


async def test_a_closed_event_store_refuses_async_with() -> None:
    store = EventStore("memory://")
    async with store:
        await store.append("order-1", {"type": "order.placed", "data": {}})
    with pytest.raises(ClosedError, match="the event store is closed"):
        async with store:
            pytest.fail("entered a closed store")


async def test_a_closed_bus_refuses_async_with_alike() -> None:
    bus = EventBus(transport="memory://")
    async with bus:
        pass
    with pytest.raises(ClosedError):
        async with bus:
            pytest.fail("entered a closed bus")


async def test_an_open_manager_is_entered_as_before() -> None:
    manager = EventManager()
    async with manager as entered:
        assert entered is manager
        seen: list[str] = []
        manager.on("x", lambda event: seen.append(event.type))
        await manager.emit("x")
        assert seen == ["x"]
