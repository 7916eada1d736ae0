"""A dead letter republished to the bus when its exception cannot say what it is."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pepperpy.event import DeadLetterMiddleware, Event, EventBus, EventProcessor


class Unprintable(Exception):
    """An exception whose message cannot be read (a broken ``__str__``)."""

    def __str__(self) -> str:
        raise RuntimeError("no message")


async def test_an_exception_without_a_readable_message_is_still_dead_lettered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its ``dlreason`` was made with ``str(exc)`` outside any guard: the middleware
    raised that RuntimeError, and the event it was to keep failed instead."""
    bus = EventBus()
    republished: list[Event] = []
    bus.subscribe("deadletter.#", republished.append)
    letters = DeadLetterMiddleware(bus=bus)
    processor = EventProcessor().use(letters)

    @processor.handle("order.*")
    def charge(event: Event) -> None:
        raise Unprintable()

    with caplog.at_level(logging.CRITICAL, logger="pepperpy.event.processor"):
        async with bus:
            await processor.process(Event("order.placed", {"n": 1}))
            for _ in range(100):
                if republished:
                    break
                await asyncio.sleep(0.01)
    assert len(letters.dead_letters) == 1
    [dead] = republished
    assert dead.metadata["dlreason"] == "Unprintable (its message could not be read)"
