"""``EventBus.off_error``: undo an ``on_error`` registration, as ``EventManager.off_error``."""

from __future__ import annotations

import pytest

from pepperpy.event import DeadLetter, Event, EventBus, RetryPolicy


def failing_bus() -> EventBus:
    bus = EventBus(retry_policy=RetryPolicy.NONE)

    @bus.subscribe("jobs.*")
    def broken(event: Event) -> None:
        raise RuntimeError(f"job {event.data} failed")

    return bus


async def test_off_error_removes_one_registration_the_latest_first() -> None:
    bus = failing_bus()
    calls: list[str] = []

    def first(letter: DeadLetter) -> None:
        calls.append(f"first {letter.event.data}")

    async def second(letter: DeadLetter) -> None:
        calls.append(f"second {letter.event.data}")

    bus.on_error(first)
    bus.on_error(second)
    bus.on_error(first)  # twice: called twice per letter
    async with bus:
        await bus.publish("jobs.run", 1)
        assert calls == ["first 1", "second 1", "first 1"]
        assert bus.off_error(first) is True
        await bus.publish("jobs.run", 2)
        assert calls[3:] == ["first 2", "second 2"]  # the latest registration went
        assert bus.off_error(first) is True
        assert bus.off_error(second) is True
        assert bus.off_error(first) is False  # none left
        await bus.publish("jobs.run", 3)
    assert calls[5:] == []
    assert [letter.event.data for letter in bus.dead_letters] == [1, 2, 3]


async def test_a_callback_may_remove_itself_and_others_while_a_letter_is_dispatched() -> None:
    """The letter being dispatched reaches every callback registered when it began; the
    next one reaches only those left."""
    bus = failing_bus()
    calls: list[str] = []

    def once(letter: DeadLetter) -> None:
        calls.append(f"once {letter.event.data}")
        assert bus.off_error(once) is True
        assert bus.off_error(later) is True

    def later(letter: DeadLetter) -> None:
        calls.append(f"later {letter.event.data}")

    def stays(letter: DeadLetter) -> None:
        calls.append(f"stays {letter.event.data}")

    for callback in (once, later, stays):
        bus.on_error(callback)
    async with bus:
        await bus.publish("jobs.run", 1)
        await bus.publish("jobs.run", 2)
    assert calls == ["once 1", "later 1", "stays 1", "stays 2"]


async def test_a_bound_method_taken_again_matches() -> None:
    class Alerts:
        def __init__(self) -> None:
            self.letters: list[object] = []

        def record(self, letter: DeadLetter) -> None:
            self.letters.append(letter.event.data)

    bus = failing_bus()
    alerts = Alerts()
    bus.on_error(alerts.record)
    assert bus.off_error(alerts.record) is True  # another bound-method object, equal
    async with bus:
        await bus.publish("jobs.run", 1)
    assert alerts.letters == []


def test_what_is_not_callable_is_refused() -> None:
    bus = EventBus()
    with pytest.raises(TypeError, match=r"off_error\(\): the callback to remove must be callable"):
        bus.off_error("alert")  # type: ignore[arg-type]
    assert bus.off_error(print) is False
