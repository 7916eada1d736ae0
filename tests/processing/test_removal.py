"""Undoing registrations on a pipeline: remove_handler's argument checks, removal while
an event is processed, and DeadLetterMiddleware.off_error."""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import DeadLetter, DeadLetterMiddleware, Event, EventProcessor, PatternError


def test_remove_handler_refuses_arguments_no_registration_can_have() -> None:
    processor = EventProcessor()

    def handler(event: Event) -> None:
        pass

    processor.handle("order.*", handler)
    with pytest.raises(TypeError, match=r"remove_handler\(\): pattern must be a str, got 7"):
        processor.remove_handler(7, handler)  # type: ignore[arg-type]
    # the arguments the wrong way round: named, not a quiet False
    with pytest.raises(
        TypeError, match=r"remove_handler\(\): the handler to remove must be callable"
    ):
        processor.remove_handler("order.*", "handler")  # type: ignore[arg-type]
    with pytest.raises(PatternError):
        processor.remove_handler("order..*", handler)
    assert processor.handlers("order.placed") == [handler]
    assert processor.remove_handler("order.*", handler) is True


async def test_a_handler_removed_while_an_event_is_processed_still_gets_that_event() -> None:
    # pins the rule the docs state (the event being processed keeps its handlers)
    processor = EventProcessor()
    seen: list[tuple[str, Any]] = []

    async def first(event: Event) -> None:
        seen.append(("first", event.data))
        assert processor.remove_handler("order.*", second) is True
        assert processor.remove_handler("order.*", first) is True

    def second(event: Event) -> None:
        seen.append(("second", event.data))

    processor.handle("order.*", first)
    processor.handle("order.*", second)
    await processor.process(Event("order.placed", 1))
    await processor.process(Event("order.placed", 2))
    assert sorted(seen) == [("first", 1), ("second", 1)]
    assert processor.handlers("order.placed") == []


async def test_dead_letter_middleware_off_error_undoes_one_registration() -> None:
    dead = DeadLetterMiddleware()
    processor = EventProcessor().use(dead)
    calls: list[tuple[str, Any]] = []

    @processor.handle("job")
    def fail(event: Event) -> None:
        raise RuntimeError("no")

    def alert(letter: DeadLetter) -> None:
        calls.append(("alert", letter.event.data))

    async def page(letter: DeadLetter) -> None:
        calls.append(("page", letter.event.data))
        assert dead.off_error(page) is True  # itself, from inside
        assert dead.off_error(alert) is True  # the later registration of alert

    dead.on_error(alert)
    dead.on_error(page)
    dead.on_error(alert)
    await processor.process(Event("job", 1))
    # the letter being recorded reaches every callback registered when it began
    assert calls == [("alert", 1), ("page", 1), ("alert", 1)]
    calls.clear()
    await processor.process(Event("job", 2))
    assert calls == [("alert", 2)]
    assert dead.off_error(page) is False  # not registered (any more)
    assert dead.off_error(alert) is True
    assert dead.off_error(alert) is False
    with pytest.raises(TypeError, match=r"off_error\(\): the callback to remove must be callable"):
        dead.off_error(None)  # type: ignore[arg-type]
    assert [letter.event.data for letter in dead.dead_letters] == [1, 2]
