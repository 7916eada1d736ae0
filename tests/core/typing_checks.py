"""Static promises of the core API, checked by mypy (``tests/core/test_typing.py``).

Each ``assert_type`` states what a type checker must infer for a user's code: decorators
return the handler unchanged, ``emit`` gives back an ``Event``, and so on. The module is
also imported at runtime, where ``assert_type`` does nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, assert_type

from pepperpy.event import (
    DeadLetter,
    Event,
    EventBus,
    EventManager,
    PatternIndex,
    RetryPolicy,
    matches,
)


async def on_created(event: Event) -> None:
    """An async handler."""


def count(event: Event) -> int:
    """A sync handler with a result (ignored by the manager)."""
    return 1


AsyncHandler = Callable[[Event], Coroutine[Any, Any, None]]
SyncHandler = Callable[[Event], int]


async def check_manager() -> None:
    manager = EventManager(max_listeners=10, buffer_size=5, retry_policy=RetryPolicy.FIXED)
    async_handler: AsyncHandler = on_created
    sync_handler: SyncHandler = count
    assert_type(manager.on("user.created", async_handler), AsyncHandler)
    assert_type(manager.on("user.*", sync_handler, priority=2), SyncHandler)
    assert_type(manager.once("user.created", sync_handler), SyncHandler)

    @manager.on("user.#")
    async def decorated(event: Event) -> None: ...

    # the decorator kept the signature (an Any-typed result would fail these)
    assert_type(await decorated(Event("user.x")), None)

    @manager.on_error
    def on_error(letter: DeadLetter) -> None: ...

    assert_type(on_error(DeadLetter(Event("x"), count, ValueError(), 1)), None)
    assert_type(await manager.emit("user.created", {"id": 1}), Event)
    assert_type(await manager.emit(Event("user.created")), Event)
    assert_type(manager.emit_nowait("user.created"), asyncio.Future[Event])
    assert_type(await manager.off("user.created", on_created), bool)
    assert_type(manager.dead_letters, deque[DeadLetter])
    async with manager as entered:
        assert_type(entered, EventManager)


async def check_bus() -> None:
    bus = EventBus(["users.*"], transport="memory://")

    @bus.subscribe("users.*", group="workers")
    async def handle(event: Event) -> None: ...

    assert_type(await handle(Event("users.x")), None)
    assert_type(await bus.publish("users.login", {"id": 1}, key="k"), Event)
    async with bus as entered:
        assert_type(entered, EventBus)


def check_event_and_patterns() -> None:
    event = Event("t", {"a": 1})
    assert_type(event.id, str)
    assert_type(event.version, int)
    assert_type(event.metadata, dict[str, Any])
    assert_type(event.replace(version=2), Event)
    assert_type(event.to_cloudevent(), dict[str, Any])
    assert_type(event.to_json(), bytes)
    assert_type(Event.from_json(event.to_json()), Event)
    assert_type(Event.from_cloudevent(event.to_cloudevent()), Event)
    index: PatternIndex[str] = PatternIndex()
    assert_type(index.add("a.*", "x"), int)
    assert_type(index.match("a.b"), tuple[str, ...])
    assert_type(matches("a.*", "a.b"), bool)
    policy = RetryPolicy.exponential(max_attempts=3)
    assert_type(policy, RetryPolicy)
    assert_type(policy.delays(), Iterator[float])
    assert_type(RetryPolicy.EXPONENTIAL, RetryPolicy)
