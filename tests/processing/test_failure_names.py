"""A processor attached to a manager or a bus: its failures name the user's handler.

``attach`` registers an internal callable (the attachment's ``deliver``) with the
manager or bus. Its failures were logged as ``handler _Link.deliver failed`` and
dead-lettered with that bound method as ``DeadLetter.handler``, so nobody could tell
which processor, let alone which handler, had failed. Now the dead letter holds the
processor's handler that raised (or the processor's ``process`` when several handlers,
or none of them, raised) and the log line names it with the subscription it came from.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pepperpy.event import (
    DeadLetter,
    Event,
    EventBus,
    EventManager,
    EventProcessor,
    RetryPolicy,
    UnknownTopicError,
)
from pepperpy.event.middleware import TimeoutMiddleware

MANAGER_LOG = "pepperpy.event"
BUS_LOG = "pepperpy.event.bus"


def errors_logged(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == logger and record.levelno == logging.ERROR
    ]


async def boom(event: Event) -> None:
    raise RuntimeError(f"boom on {event.type}")


def bang(event: Event) -> None:
    raise ValueError("bang")


async def test_a_manager_dead_letter_names_the_processor_handler_that_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger=MANAGER_LOG)
    seen: list[Event] = []
    processor = EventProcessor()
    processor.handle("order.*", boom)
    processor.handle("order.placed", seen.append)  # succeeds beside it
    manager = EventManager()
    reported: list[DeadLetter] = []
    manager.on_error(reported.append)
    processor.attach(manager, "order.*")
    sent = await manager.emit("order.placed", {"id": 1})
    assert len(seen) == 1
    [letter] = manager.dead_letters
    assert letter.handler is boom
    assert letter.event.id == sent.id and isinstance(letter.exception, RuntimeError)
    assert reported == [letter]  # on_error gets the same letter
    [logged] = errors_logged(caplog, MANAGER_LOG)
    assert logged.startswith(
        "handler boom (processor attached as manager subscription 'order.*') "
        "failed for event order.placed"
    )
    assert "_Link" not in logged


async def test_the_handler_is_named_after_the_manager_retried_the_processor() -> None:
    calls = 0

    async def flaky_then_broken(event: Event) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError(f"try {calls}")

    processor = EventProcessor()
    processor.handle("order.*", flaky_then_broken)
    manager = EventManager(retry_policy=RetryPolicy("fixed", max_attempts=3, base_delay=0))
    processor.attach(manager)
    await manager.emit("order.placed")
    [letter] = manager.dead_letters
    assert letter.handler is flaky_then_broken and letter.attempts == 3
    assert str(letter.exception) == "try 3"


async def test_the_handler_is_named_when_the_manager_runs_the_processor_beside_others() -> None:
    # with another manager handler on the event, the processor runs in a task of its own
    other: list[Event] = []
    processor = EventProcessor()
    processor.handle("order.*", bang)
    manager = EventManager()
    manager.on("order.placed", other.append)
    processor.attach(manager, "order.*")
    await manager.emit("order.placed")
    assert len(other) == 1
    assert [letter.handler for letter in manager.dead_letters] == [bang]


async def test_several_failed_handlers_give_the_processor_and_name_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger=MANAGER_LOG)
    processor = EventProcessor()
    processor.handle("order.*", boom)
    processor.handle("order.placed", bang)
    manager = EventManager()
    processor.attach(manager, "order.*")
    await manager.emit("order.placed")
    [letter] = manager.dead_letters  # one registration failed: one letter
    assert letter.handler == processor.process
    assert isinstance(letter.exception, ExceptionGroup)
    [logged] = errors_logged(caplog, MANAGER_LOG)
    assert logged.startswith(
        "handler EventProcessor.process (attached as manager subscription 'order.*'; "
        "handlers boom, bang failed) failed for event order.placed"
    )


async def test_a_failure_no_handler_raised_names_the_processor_and_its_pattern(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger=MANAGER_LOG)
    ran: list[Event] = []

    async def refuse(event: Event, next_handler: Any) -> None:
        raise PermissionError("refused by a middleware")

    processor = EventProcessor()
    processor.use(refuse)
    processor.handle("order.*", ran.append)
    manager = EventManager()
    processor.attach(manager, "order.*")
    await manager.emit("order.placed")
    assert ran == []
    [letter] = manager.dead_letters
    assert letter.handler == processor.process
    assert isinstance(letter.exception, PermissionError)
    [logged] = errors_logged(caplog, MANAGER_LOG)
    assert logged.startswith(
        "handler EventProcessor.process (attached as manager subscription 'order.*'; "
        "raised outside its handlers, by a middleware or the attachment) failed"
    )


async def test_an_event_refused_by_unmatched_error_names_the_processor() -> None:
    processor = EventProcessor()
    processor.handle("order.placed", lambda event: None)
    manager = EventManager()
    processor.attach(manager, "order.*", unmatched="error")
    await manager.emit("order.cancelled")
    [letter] = manager.dead_letters
    assert letter.handler == processor.process
    assert isinstance(letter.exception, UnknownTopicError)


async def test_a_timeout_names_the_handler_it_cut_off() -> None:
    async def slow(event: Event) -> None:
        await asyncio.sleep(10)

    processor = EventProcessor()
    processor.use(TimeoutMiddleware(0.05))
    processor.handle("order.*", slow)
    manager = EventManager()
    processor.attach(manager)
    await manager.emit("order.placed")
    [letter] = manager.dead_letters
    assert letter.handler is slow and isinstance(letter.exception, TimeoutError)


async def test_a_retry_that_succeeds_leaves_nothing_remembered() -> None:
    failed_once: set[str] = set()

    def first_try_fails(event: Event) -> None:
        if event.id not in failed_once:
            failed_once.add(event.id)
            raise ConnectionError("first try")

    processor = EventProcessor()
    processor.handle("order.*", first_try_fails)
    manager = EventManager(retry_policy=RetryPolicy("fixed", max_attempts=2, base_delay=0))
    attachment = processor.attach(manager)
    for _ in range(3):
        await manager.emit("order.placed")
    assert not manager.dead_letters and attachment.processed == 3
    assert attachment._link._failed == {}  # no failure, and its traceback, kept


async def test_a_bus_dead_letter_names_the_processor_handler_that_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger=BUS_LOG)
    processor = EventProcessor()
    processor.handle("order.*", boom)
    bus = EventBus(transport="memory://", retry_policy=RetryPolicy.NONE)
    republished: list[Event] = []
    bus.subscribe("deadletter.#", republished.append)
    attachment = processor.attach(bus, "order.*", group="billing")
    async with bus:
        sent = await bus.publish("order.placed", {"id": 1})
        [letter] = bus.dead_letters
        assert letter.handler is boom and letter.event.id == sent.id
        assert [event.type for event in republished] == ["deadletter.order.placed"]
        [logged] = errors_logged(caplog, BUS_LOG)
        assert logged.startswith(
            "bus handler boom (processor attached as bus subscription 'order.*' "
            "(group 'billing')) failed for order.placed"
        )
        await attachment.stop()


async def test_a_bus_refusal_by_unmatched_error_names_the_processor(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger=BUS_LOG)
    processor = EventProcessor()
    processor.handle("order.placed", lambda event: None)
    bus = EventBus(retry_policy=RetryPolicy.NONE)
    processor.attach(bus, "order.*", group="billing", unmatched="error")
    async with bus:
        await bus.publish("order.cancelled", {"id": 2})
        [letter] = bus.dead_letters
        assert letter.handler == processor.process
        assert isinstance(letter.exception, UnknownTopicError)
        [logged] = errors_logged(caplog, BUS_LOG)
        assert logged.startswith(
            "bus handler EventProcessor.process (attached as bus subscription 'order.*' "
            "(group 'billing'); raised outside its handlers"
        )


async def test_a_plain_handler_is_named_as_before(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=MANAGER_LOG)
    manager = EventManager()
    manager.on("order.placed", boom)
    await manager.emit("order.placed")
    assert manager.dead_letters[0].handler is boom
    [logged] = errors_logged(caplog, MANAGER_LOG)
    assert logged.startswith("handler boom failed for event order.placed")


async def test_a_failure_during_a_cancelled_emit_is_logged_with_the_handler_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger=MANAGER_LOG)
    failed = asyncio.Event()

    async def fails_at_once(event: Event) -> None:
        failed.set()
        raise RuntimeError("at once")

    async def waits(event: Event) -> None:
        await asyncio.sleep(10)

    processor = EventProcessor()
    processor.handle("order.*", fails_at_once)
    manager = EventManager()
    manager.on("order.placed", waits)  # a second handler: each runs in a task of its own
    processor.attach(manager, "order.*")
    emit = asyncio.ensure_future(manager.emit("order.placed"))
    await failed.wait()
    await asyncio.sleep(0)  # the processor's task finishes with its error
    emit.cancel()
    with pytest.raises(asyncio.CancelledError):
        await emit
    [logged] = errors_logged(caplog, MANAGER_LOG)
    assert logged.startswith(
        "handler test_a_failure_during_a_cancelled_emit_is_logged_with_the_handler_name."
        "<locals>.fails_at_once (processor attached as manager subscription 'order.*') "
        "failed for event order.placed"
    )
    assert "while its emit was cancelled" in logged and not manager.dead_letters
