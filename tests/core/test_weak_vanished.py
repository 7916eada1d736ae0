"""A weak registration whose handler is gone before any event reached it says so.

``manager.on("x", lambda e: ..., weak=True)`` registers a handler nobody else holds: it
is collected as soon as ``on()`` returns and never runs. Removing such a registration
logs one WARNING naming the handler; a handler that ran, or a bound method whose
object went away (the lifetime ``weak=True`` is for), is removed without a word.
"""

from __future__ import annotations

import functools
import gc
import logging

import pytest

from pepperpy.event import Event, EventManager

LOGGER = "pepperpy.event"


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == logging.WARNING and "weak" in r.getMessage()
    ]


def record(seen: list[object], tag: object, event: Event) -> None:
    seen.append(tag)


async def test_a_lambda_made_in_the_call_is_reported_at_the_next_emit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = EventManager()
    seen: list[object] = []
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        manager.on("order.placed", lambda event: seen.append(event.type), weak=True)
        gc.collect()
        await manager.emit("order.placed")
        await manager.emit("order.placed")
    assert seen == []
    (message,) = warnings_of(caplog)  # once, not at every emit
    assert "<lambda>" in message
    assert "'order.placed'" in message
    assert "before any event reached it" in message
    assert "weak=False" in message
    assert list(manager.dead_letters) == []


async def test_a_partial_made_in_the_call_is_reported_by_handlers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = EventManager()
    seen: list[object] = []
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        manager.once("order.*", functools.partial(record, seen, "p"), weak=True)
        gc.collect()
        assert manager.handlers("order.placed") == []  # noticed without an emit
    (message,) = warnings_of(caplog)
    assert "functools.partial" in message and "record" in message
    assert "'order.*'" in message


async def test_a_handler_that_ran_or_an_object_that_went_away_is_not_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = EventManager()
    seen: list[object] = []

    class Screen:
        def refresh(self, event: Event) -> None:
            seen.append("screen")

    def closure(event: Event) -> None:
        seen.append("closure")

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        screen = Screen()
        manager.on("price.changed", screen.refresh, weak=True)
        del screen  # closed before any price changed: what weak=True is for
        manager.on("price.changed", closure, weak=True)
        await manager.emit("price.changed")
        del closure  # it ran: dropping it later is a choice
        gc.collect()
        await manager.emit("price.changed")
        assert manager.patterns() == []
    assert seen == ["closure"]
    assert warnings_of(caplog) == []


async def test_a_strong_lambda_is_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    manager = EventManager()
    seen: list[object] = []
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        manager.on("a.b", lambda event: seen.append(1))
        gc.collect()
        await manager.emit("a.b")
    assert seen == [1]
    assert warnings_of(caplog) == []
