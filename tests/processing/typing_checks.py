"""Static promises of the processing, validation and metrics API, checked by mypy.

Decorators return what they decorate, ``validate`` gives back an ``Event``, snapshots
are ``MetricsSnapshot``s. ``tests/processing/test_typing.py`` runs mypy --strict here;
at runtime ``assert_type`` does nothing.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, assert_type

from pepperpy.event import (
    Attachment,
    DeadLetter,
    DeadLetterMiddleware,
    Event,
    EventManager,
    EventProcessor,
    EventValidator,
    LatencyHistogram,
    MetricsCollector,
    MetricsSnapshot,
    RetryMiddleware,
    RetryPolicy,
    TimeoutMiddleware,
)


async def handle_user(event: Event) -> None:
    """An async handler."""


def audit(event: Event) -> int:
    """A sync handler."""
    return 1


async def stamp(event: Event, next_handler: Callable[[Event], Any]) -> None:
    """A middleware."""
    await next_handler(event)


@dataclasses.dataclass
class UserCreated:
    user_id: str


AsyncHandler = Callable[[Event], Coroutine[Any, Any, None]]
SyncHandler = Callable[[Event], int]
MiddlewareFn = Callable[[Event, Callable[[Event], Any]], Coroutine[Any, Any, None]]


def check_processor() -> EventProcessor:
    processor = EventProcessor()
    async_handler: AsyncHandler = handle_user
    sync_handler: SyncHandler = audit
    middleware: MiddlewareFn = stamp
    assert_type(processor.handle("user.*")(async_handler), AsyncHandler)
    assert_type(processor.handle("user.*", sync_handler), SyncHandler)
    assert_type(processor.middleware(middleware), MiddlewareFn)

    @processor.handle("user.#")
    def decorated(event: Event) -> str:
        return event.type

    # the decorator kept the signature (an Any-typed result would fail this)
    assert_type(decorated(Event("user.x")), str)
    assert_type(
        processor.use(RetryMiddleware(RetryPolicy.NONE), TimeoutMiddleware(1.0)), EventProcessor
    )
    assert_type(processor.attach(EventManager(), "user.*"), Attachment)
    assert_type(DeadLetterMiddleware().dead_letters, deque[DeadLetter])
    return processor


async def check_validator() -> Event:
    validator = EventValidator()
    assert_type(validator.schema("user.created")(UserCreated), type[UserCreated])
    event = await validator.validate("user.created", {"user_id": "1"})
    assert_type(event, Event)
    assert_type(validator.check("user.created", {"user_id": "1"}), tuple[Any, int])
    return event


def check_metrics() -> MetricsSnapshot:
    collector = MetricsCollector()
    async_handler: AsyncHandler = handle_user
    sync_handler: SyncHandler = audit
    assert_type(collector.measure("x")(async_handler), AsyncHandler)
    assert_type(collector.measure("y")(sync_handler), SyncHandler)

    @collector.measure("z")
    def decorated(n: int) -> str:
        return str(n)

    assert_type(decorated(1), str)
    assert_type(collector.histogram(), LatencyHistogram)
    assert_type(collector.to_prometheus(), str)
    snapshot = collector.get_metrics()
    assert_type(snapshot.p99, float)
    return assert_type(snapshot, MetricsSnapshot)
