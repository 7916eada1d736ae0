"""EventManager.off_error undoes on_error, and off() checks what it is given.

A registration that cannot be undone leaks: an error callback registered by a component
that is torn down kept being called (and kept the component alive) for the manager's
whole life.
"""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import DeadLetter, Event, EventManager, PatternError


def _failing_manager() -> EventManager:
    manager = EventManager()

    @manager.on("job.run")
    def fail(event: Event) -> None:
        raise RuntimeError(f"job {event.data} failed")

    return manager


async def test_off_error_stops_the_callback_and_says_whether_it_removed_one() -> None:
    manager = _failing_manager()
    seen: list[Any] = []

    def record(letter: DeadLetter) -> None:
        seen.append(letter.event.data)

    manager.on_error(record)
    await manager.emit("job.run", 1)
    assert manager.off_error(record) is True
    await manager.emit("job.run", 2)
    assert seen == [1]
    assert manager.off_error(record) is False  # nothing left to remove


async def test_off_error_of_a_callback_never_registered_is_false() -> None:
    manager = _failing_manager()
    seen: list[int] = []
    manager.on_error(lambda letter: seen.append(1))
    assert manager.off_error(lambda letter: None) is False
    await manager.emit("job.run", 1)
    assert seen == [1]  # the registered one is untouched


async def test_each_off_error_undoes_one_registration_the_most_recent_first() -> None:
    manager = _failing_manager()
    calls: list[str] = []

    def first(letter: DeadLetter) -> None:
        calls.append("first")

    def second(letter: DeadLetter) -> None:
        calls.append("second")

    manager.on_error(first)
    manager.on_error(second)
    manager.on_error(first)  # registered twice: called twice
    await manager.emit("job.run", 1)
    assert calls == ["first", "second", "first"]

    calls.clear()
    assert manager.off_error(first) is True  # the later registration goes
    await manager.emit("job.run", 2)
    assert calls == ["first", "second"]

    calls.clear()
    assert manager.off_error(first) is True
    assert manager.off_error(first) is False
    await manager.emit("job.run", 3)
    assert calls == ["second"]


async def test_off_error_matches_a_bound_method_taken_again_and_the_decorator_form() -> None:
    manager = _failing_manager()

    class Alerts:
        def __init__(self) -> None:
            self.count = 0

        async def alert(self, letter: DeadLetter) -> None:
            self.count += 1

    alerts = Alerts()
    manager.on_error(alerts.alert)  # each `alerts.alert` is a new object, equal to the last

    @manager.on_error
    async def decorated(letter: DeadLetter) -> None:
        alerts.count += 10

    assert manager.off_error(alerts.alert) is True
    assert manager.off_error(decorated) is True
    await manager.emit("job.run", 1)
    assert alerts.count == 0


async def test_off_error_inside_a_callback_takes_effect_from_the_next_dead_letter() -> None:
    manager = _failing_manager()
    calls: list[tuple[str, Any]] = []

    def later(letter: DeadLetter) -> None:
        calls.append(("later", letter.event.data))

    async def once_only(letter: DeadLetter) -> None:
        calls.append(("once_only", letter.event.data))
        assert manager.off_error(once_only) is True  # itself
        assert manager.off_error(later) is True  # a callback still to run for this letter

    manager.on_error(once_only)
    manager.on_error(later)
    await manager.emit("job.run", 1)
    # the dispatch in progress keeps the callbacks it started with
    assert calls == [("once_only", 1), ("later", 1)]
    await manager.emit("job.run", 2)
    assert calls == [("once_only", 1), ("later", 1)]
    assert [letter.event.data for letter in manager.dead_letters] == [1, 2]


def test_off_error_refuses_what_is_not_a_callback() -> None:
    manager = EventManager()
    with pytest.raises(TypeError, match=r"off_error\(\): the callback to remove must be callable"):
        manager.off_error("alert")  # type: ignore[arg-type]


async def test_off_refuses_arguments_no_registration_can_have() -> None:
    manager = EventManager()

    def handler(event: Event) -> None:
        pass

    manager.on("user.created", handler)
    with pytest.raises(TypeError, match=r"off\(\): event_type must be a str, got 42"):
        await manager.off(42, handler)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"off\(\): the handler to remove must be callable"):
        await manager.off("user.created", "handler")  # type: ignore[arg-type]
    # the arguments the wrong way round: named, not a quiet False
    with pytest.raises(TypeError, match=r"off\(\): event_type must be a str"):
        await manager.off(handler, "user.created")  # type: ignore[arg-type]
    with pytest.raises(PatternError):
        await manager.off("user..created", handler)
    assert manager.handlers("user.created") == [handler]  # nothing was removed
    assert await manager.off("user.created", handler) is True
