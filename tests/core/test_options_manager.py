"""EventManager.on's options, and registering on a closed manager.

``once="yes"`` and ``priority=True`` were taken (``True`` as priority 1, ``"yes"`` as a
once-handler); ``on()`` after ``close()`` was taken silently, for a handler no emit could
ever reach (emit raises ClosedError): a closed bus refuses ``subscribe`` the same way.
"""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import ClosedError, EventBus, EventManager, NotificationSystem


@pytest.mark.parametrize("once", ["yes", 1, 0, None], ids=repr)
def test_once_must_be_a_bool(once: Any) -> None:
    manager = EventManager()
    with pytest.raises(TypeError, match=rf"^once must be a bool, got {once!r}$"):
        manager.on("a", lambda event: None, once=once)
    with pytest.raises(TypeError, match="once must be a bool"):
        manager.on("a", once=once)  # the decorator form: refused before it is applied
    assert manager.handlers("a") == []


@pytest.mark.parametrize("priority", [True, False, 1.5, "1", None], ids=repr)
def test_priority_must_be_an_int_not_a_bool(priority: Any) -> None:
    manager = EventManager()
    with pytest.raises(TypeError, match=rf"^priority must be an int, got {priority!r}$"):
        manager.on("a", lambda event: None, priority=priority)
    with pytest.raises(TypeError, match="priority must be an int"):
        manager.once("a", priority=priority)
    assert manager.handlers("a") == []


async def test_on_after_close_is_refused_as_a_closed_bus_refuses_subscribe() -> None:
    manager = EventManager()
    manager.on("a", lambda event: None)
    await manager.close()
    for register in (
        lambda: manager.on("a", lambda event: None),
        lambda: manager.on("b"),
        lambda: manager.once("a", lambda event: None),
    ):
        with pytest.raises(ClosedError, match="the EventManager is closed"):
            register()
    with pytest.raises(ClosedError):
        await manager.emit("a")
    bus = EventBus()
    await bus.close()
    with pytest.raises(ClosedError):
        bus.subscribe("a")


async def test_a_decorator_taken_before_close_is_refused_when_applied_after() -> None:
    manager = EventManager()
    decorate = manager.on("a")
    await manager.close()
    with pytest.raises(ClosedError):
        decorate(lambda event: None)
    assert manager.handlers("a") == []


async def test_attaching_notifications_to_a_closed_manager_is_refused() -> None:
    manager = EventManager()
    await manager.close()
    async with NotificationSystem() as notifications:
        notifications.on("a", lambda event: None)
        with pytest.raises(ClosedError):
            notifications.attach(manager)


async def test_valid_options_and_an_open_manager_still_register() -> None:
    manager = EventManager()
    calls: list[str] = []
    manager.on("a", lambda event: calls.append("low"), priority=-1)
    manager.on("a", lambda event: calls.append("high"), priority=5, once=True)
    manager.on("a", lambda event: calls.append("plain"), once=False)
    await manager.emit("a")
    assert calls[0] == "high" and sorted(calls) == ["high", "low", "plain"]
    await manager.close()
