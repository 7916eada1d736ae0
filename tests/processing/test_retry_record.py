"""A retry runs again only the handlers that failed: with a single handler too, and when
the retry is the source's (a manager's or a bus's ``retry_policy``) rather than a
``RetryMiddleware``'s; the record of what succeeded is dropped once the event succeeds or
its source gives up, and is bounded (audit 11)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pepperpy.event import (
    DeadLetterMiddleware,
    Event,
    EventBus,
    EventManager,
    EventProcessor,
    RetryMiddleware,
    RetryPolicy,
)

NextHandler = Callable[[Event], Awaitable[None]]


def quick(attempts: int = 3) -> RetryPolicy:
    return RetryPolicy.fixed(max_attempts=attempts, base_delay=0)


async def test_a_single_handler_that_succeeded_is_not_run_again() -> None:
    processor = EventProcessor().use(RetryMiddleware(quick()))
    fails = [1]

    @processor.middleware
    async def commit(event: Event, next_handler: NextHandler) -> None:
        await next_handler(event)
        if fails[0]:
            fails[0] -= 1
            raise ConnectionError("commit failed once")

    charged: list[str] = []

    @processor.handle("order.placed")
    async def charge(event: Event) -> None:
        charged.append(event.id)

    await processor.process(Event("order.placed", {}))
    assert len(charged) == 1
    assert fails == [0]


async def test_a_single_sync_handler_that_failed_runs_again() -> None:
    processor = EventProcessor().use(RetryMiddleware(quick()))
    runs: list[int] = []

    @processor.handle("order.placed")
    def charge(event: Event) -> None:
        runs.append(1)
        if len(runs) < 2:
            raise ConnectionError("card network blip")

    await processor.process(Event("order.placed", {}))
    assert runs == [1, 1]


async def test_each_process_call_runs_the_handler() -> None:
    processor = EventProcessor().use(RetryMiddleware(quick()))
    runs: list[int] = []
    processor.handle("order.placed", lambda event: runs.append(1))
    event = Event("order.placed", {})
    await processor.process(event)
    await processor.process(event)  # a new call: nothing is remembered from the last
    assert runs == [1, 1]


def two_handlers(processor: EventProcessor, runs: dict[str, int]) -> None:
    @processor.handle("order.placed")
    async def charge(event: Event) -> None:
        runs["charge"] += 1

    @processor.handle("order.placed")
    async def email(event: Event) -> None:
        runs["email"] += 1
        if runs["email"] < 2:
            raise ConnectionError("smtp blip")


async def test_a_manager_retry_reruns_only_the_failed_handler() -> None:
    processor = EventProcessor()
    runs = {"charge": 0, "email": 0}
    two_handlers(processor, runs)
    manager = EventManager(retry_policy=quick())
    attachment = processor.attach(manager, "order.*")
    await manager.emit("order.placed", {"id": 1})
    assert runs == {"charge": 1, "email": 2}
    assert not manager.dead_letters
    assert attachment.processed == 1
    assert not attachment._link._retrying  # type: ignore[union-attr]  # done: forgotten


async def test_a_bus_retry_reruns_only_the_failed_handler() -> None:
    processor = EventProcessor()
    runs = {"charge": 0, "email": 0}
    two_handlers(processor, runs)
    bus = EventBus(retry_policy=quick())
    attachment = processor.attach(bus, "order.*")
    async with bus:
        await bus.publish("order.placed", {"id": 2})
    assert runs == {"charge": 1, "email": 2}
    assert not bus.dead_letters
    assert not attachment._link._retrying  # type: ignore[union-attr]


async def test_a_source_retry_with_one_handler_and_a_failing_middleware() -> None:
    processor = EventProcessor()
    fails = [1]

    @processor.middleware
    async def commit(event: Event, next_handler: NextHandler) -> None:
        await next_handler(event)
        if fails[0]:
            fails[0] -= 1
            raise ConnectionError("commit failed once")

    charged: list[int] = []
    processor.handle("order.placed", lambda event: charged.append(1))
    manager = EventManager(retry_policy=quick())
    processor.attach(manager, "order.*")
    await manager.emit("order.placed", {})
    assert charged == [1]


async def test_given_up_the_record_is_dropped_and_a_new_delivery_runs_everything() -> None:
    processor = EventProcessor()
    runs = {"charge": 0, "email": 0}

    @processor.handle("order.placed")
    async def charge(event: Event) -> None:
        runs["charge"] += 1

    @processor.handle("order.placed")
    async def email(event: Event) -> None:
        runs["email"] += 1
        raise ConnectionError("smtp down")

    manager = EventManager(retry_policy=quick())
    attachment = processor.attach(manager, "order.*")
    event = Event("order.placed", {})
    await manager.emit(event)
    assert runs == {"charge": 1, "email": 3}
    [letter] = manager.dead_letters
    assert letter.handler is email
    assert not attachment._link._retrying  # type: ignore[union-attr]
    await manager.emit(event)  # delivered again (replayed from its dead letter, say)
    assert runs == {"charge": 2, "email": 6}


async def test_with_no_source_retries_the_record_is_dropped_at_once() -> None:
    processor = EventProcessor()
    runs = {"charge": 0, "email": 0}
    two_handlers(processor, runs)
    manager = EventManager(retry_policy=RetryPolicy.NONE)
    attachment = processor.attach(manager, "order.*")
    await manager.emit("order.placed", {})
    assert len(manager.dead_letters) == 1
    assert not attachment._link._retrying  # type: ignore[union-attr]


async def test_the_record_is_bounded() -> None:
    processor = EventProcessor()

    @processor.handle("order.placed")
    async def email(event: Event) -> None:
        raise ConnectionError("smtp down")

    manager = EventManager(retry_policy=quick())
    attachment = processor.attach(manager, "order.*")
    link = attachment._link
    for _ in range(300):  # failures the source never asks about (as a cancelled emit)
        try:
            await link.deliver(Event("order.placed", {}))
        except ConnectionError:
            pass
    assert len(link._retrying) == 256  # type: ignore[union-attr]


async def test_without_source_retries_nothing_is_kept() -> None:
    processor = EventProcessor()

    @processor.handle("order.placed")
    async def email(event: Event) -> None:
        raise ConnectionError("smtp down")

    attachment = processor.attach(EventManager(), "order.*")  # RetryPolicy.NONE
    try:
        await attachment._link.deliver(Event("order.placed", {}))
    except ConnectionError:
        pass
    assert not attachment._link._retrying  # type: ignore[union-attr]


async def test_a_dead_letter_middleware_inside_makes_the_event_done() -> None:
    processor = EventProcessor().use(DeadLetterMiddleware())
    runs = {"charge": 0, "email": 0}
    two_handlers(processor, runs)
    manager = EventManager(retry_policy=quick())
    attachment = processor.attach(manager, "order.*")
    await manager.emit("order.placed", {})
    assert runs == {"charge": 1, "email": 1}  # recorded inside: the manager never retries
    assert not attachment._link._retrying  # type: ignore[union-attr]


async def test_two_attachments_keep_their_own_records() -> None:
    processor = EventProcessor()
    runs = {"charge": 0, "email": 0}
    two_handlers(processor, runs)
    first, second = EventManager(retry_policy=quick()), EventManager(retry_policy=quick())
    processor.attach(first, "order.*")
    processor.attach(second, "order.*")
    event = Event("order.placed", {})
    await asyncio.gather(first.emit(event), second.emit(event))
    assert runs["charge"] == 2  # once per attachment


async def test_a_bus_that_gives_up_drops_the_record() -> None:
    processor = EventProcessor()
    runs = {"charge": 0, "email": 0}

    @processor.handle("order.placed")
    async def charge(event: Event) -> None:
        runs["charge"] += 1

    @processor.handle("order.placed")
    async def email(event: Event) -> None:
        runs["email"] += 1
        raise ConnectionError("smtp down")

    bus = EventBus(retry_policy=quick())
    attachment = processor.attach(bus, "order.*")
    async with bus:
        await bus.publish("order.placed", {"id": 3})
    assert runs == {"charge": 1, "email": 3}
    [letter] = bus.dead_letters
    assert letter.handler is email
    assert not attachment._link._retrying  # type: ignore[union-attr]
