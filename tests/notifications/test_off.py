"""NotificationSystem.off undoes on (from emit and from every attached manager and bus),
handlers() lists what emit runs, and off_error undoes on_error."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

from pepperpy.event import (
    DeadLetter,
    Event,
    EventBus,
    EventManager,
    NotificationDeadLetter,
    NotificationSystem,
    PatternError,
)
from tests.helpers import eventually, settle

Letter = NotificationDeadLetter | DeadLetter


async def test_off_removes_a_handler_from_emit_and_says_whether_it_did() -> None:
    async with NotificationSystem() as notifications:
        seen: list[tuple[str, Any]] = []

        def welcome(event: Event) -> None:
            seen.append(("welcome", event.data))

        async def audit(event: Event) -> None:
            seen.append(("audit", event.data))

        notifications.on("user.signup", welcome)
        notifications.on("user.*", audit)
        notifications.on("user.*", welcome)
        # the functions registered, not the wrappers that run them
        assert notifications.handlers("user.signup") == [welcome, audit, welcome]

        assert await notifications.off("user.*", welcome) is True  # that pattern only
        assert await notifications.off("user.*", welcome) is False
        assert await notifications.off("order.*", audit) is False  # never registered there
        assert notifications.handlers("user.signup") == [welcome, audit]
        await notifications.emit("user.signup", 1)
        assert sorted(seen) == [("audit", 1), ("welcome", 1)]

        assert await notifications.off("user.signup", welcome) is True
        assert await notifications.off("user.*", audit) is True
        assert notifications.handlers("user.signup") == []
        seen.clear()
        await notifications.emit("user.signup", 2)
        assert seen == []


async def test_off_removes_the_handler_from_attached_managers_and_buses() -> None:
    async with NotificationSystem() as notifications:
        seen: list[Any] = []
        reached: list[Any] = []  # a bus subscriber of its own: what the bus delivered

        async def welcome(event: Event) -> None:
            seen.append(event.data)

        notifications.on("user.signup", welcome)
        manager = EventManager()
        notifications.attach(manager)
        async with EventBus() as bus:
            bus.subscribe("user.signup", lambda event: reached.append(event.data))
            notifications.attach(bus)
            await bus.publish("user.signup", "by bus")
            await manager.emit("user.signup", "by manager")
            await eventually(lambda: len(seen) == 2)

            assert await notifications.off("user.signup", welcome) is True
            assert manager.handlers("user.signup") == []
            await bus.publish("user.signup", "by bus, after off")
            await manager.emit("user.signup", "by manager, after off")
            await eventually(lambda: "by bus, after off" in reached)
            await settle()
            # attaching another manager now does not bring the handler back
            later = EventManager()
            notifications.attach(later)
            assert later.handlers("user.signup") == []
        assert sorted(seen) == ["by bus", "by manager"]


async def test_off_inside_a_handler_holds_from_the_next_event() -> None:
    async with NotificationSystem() as notifications:
        seen: list[tuple[str, Any]] = []

        async def first(event: Event) -> None:
            seen.append(("first", event.data))
            assert await notifications.off("job.done", first) is True  # itself
            assert await notifications.off("job.done", second) is True  # still to run

        def second(event: Event) -> None:
            seen.append(("second", event.data))

        notifications.on("job.done", first)
        notifications.on("job.done", second)
        await notifications.emit("job.done", 1)
        await notifications.emit("job.done", 2)
        # the event being handled keeps its handlers
        assert sorted(seen) == [("first", 1), ("second", 1)]


async def test_off_inside_a_handler_a_bus_runs_removes_it_without_waiting_for_itself() -> None:
    async with NotificationSystem() as notifications:
        seen: list[Any] = []
        reached: list[Any] = []

        async def once(event: Event) -> None:
            seen.append(event.data)
            # the bus removes it after it returns: waiting here would wait for itself
            assert await notifications.off("job.done", once) is True

        notifications.on("job.done", once)
        async with EventBus() as bus:
            bus.subscribe("job.done", lambda event: reached.append(event.data))
            notifications.attach(bus, group=None)
            await bus.publish("job.done", 1)
            await eventually(lambda: seen == [1])
            await bus.publish("job.done", 2)
            await eventually(lambda: 2 in reached)
            await settle()
        assert seen == [1]


async def test_a_handler_removed_with_off_is_not_kept_alive() -> None:
    class Handler:
        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, event: Event) -> None:
            self.calls += 1

    async with NotificationSystem() as notifications:
        handler = Handler()
        notifications.on("job.done", handler)
        await notifications.emit("job.done", 1)
        assert handler.calls == 1
        gone = weakref.ref(handler)
        assert await notifications.off("job.done", handler) is True
        del handler
        gc.collect()
        assert gone() is None  # nothing in the system holds it (or its wrappers) any more


async def test_off_refuses_arguments_no_registration_can_have() -> None:
    async with NotificationSystem() as notifications:

        def welcome(event: Event) -> None:
            pass

        notifications.on("user.signup", welcome)
        with pytest.raises(TypeError, match=r"off\(\): event_type must be a str, got 5"):
            await notifications.off(5, welcome)  # type: ignore[arg-type]
        # the arguments the wrong way round: named, not a quiet False
        with pytest.raises(TypeError, match=r"off\(\): event_type must be a str"):
            await notifications.off(welcome, "user.signup")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"off\(\): the handler to remove must be callable"):
            await notifications.off("user.signup", "welcome")  # type: ignore[arg-type]
        with pytest.raises(PatternError):
            await notifications.off("user signup", welcome)
        assert notifications.handlers("user.signup") == [welcome]


async def test_off_error_undoes_one_registration_the_most_recent_first() -> None:
    async with NotificationSystem() as notifications:
        calls: list[tuple[str, Any]] = []

        @notifications.on("job.done")
        def fail(event: Event) -> None:
            raise RuntimeError("no")

        def alert(letter: Letter) -> None:
            calls.append(("alert", letter.event.data if isinstance(letter, DeadLetter) else None))

        async def page(letter: Letter) -> None:
            calls.append(("page", letter.event.data if isinstance(letter, DeadLetter) else None))
            assert notifications.off_error(page) is True  # itself
            assert notifications.off_error(alert) is True  # the later alert, still to run

        notifications.on_error(alert)
        notifications.on_error(page)
        notifications.on_error(alert)
        await notifications.emit("job.done", 1)
        # the failure being reported reaches every callback registered when it began
        assert calls == [("alert", 1), ("page", 1), ("alert", 1)]
        calls.clear()
        await notifications.emit("job.done", 2)
        assert calls == [("alert", 2)]
        assert notifications.off_error(page) is False
        assert notifications.off_error(alert) is True
        assert notifications.off_error(alert) is False
        with pytest.raises(
            TypeError, match=r"off_error\(\): the callback to remove must be callable"
        ):
            notifications.off_error(42)  # type: ignore[arg-type]
        assert len(notifications.dead_letters) == 2
