"""A class registered as a handler is called with the event, which builds an instance:
a sync call. When its instances have an ``async def __call__``, the class was taken for
an async handler (``getattr(cls, "__call__")`` is the instances' method) and its result,
the instance, awaited: every event became a dead letter with "object ... can't be used
in 'await' expression", and an ``on_error`` callback registered that way failed the same.
An instance with ``async def __call__`` is still an async handler."""

from __future__ import annotations

import pytest

from pepperpy.event import DeadLetter, Event, EventManager
from pepperpy.event._handlers import is_async_callable

built: list[object] = []


class Builds:
    """Each event builds one; its instances are async callables (unused here)."""

    def __init__(self, event: object) -> None:
        built.append(event)

    async def __call__(self) -> None:  # pragma: no cover - never called
        raise AssertionError


class Calls:
    def __init__(self) -> None:
        self.seen: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.seen.append(event)


def test_a_class_is_a_sync_callable_its_async_instances_are_not() -> None:
    assert is_async_callable(Builds) is False
    assert is_async_callable(Calls()) is True


async def test_class_with_async_call_is_called_as_a_sync_handler() -> None:
    built.clear()
    manager = EventManager()
    manager.on("job.run", Builds)
    instance = Calls()
    manager.on("job.run", instance)
    event = await manager.emit("job.run")
    manager.on("job.ran", Builds)  # alone: the one-handler path
    other = await manager.emit("job.ran")
    assert list(manager.dead_letters) == []
    assert built == [event, other]
    assert instance.seen == [event]


async def test_error_callback_class_with_async_call(caplog: pytest.LogCaptureFixture) -> None:
    built.clear()
    manager = EventManager()
    manager.on_error(Builds)

    @manager.on("job.run")
    def fail(event: Event) -> None:
        raise ValueError("boom")

    await manager.emit("job.run")
    assert len(built) == 1
    assert isinstance(built[0], DeadLetter)
    assert not [r for r in caplog.records if "on_error callback" in r.getMessage()]
