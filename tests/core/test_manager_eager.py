"""Several handlers of one event: eager start on CPython 3.12+ (``_eager``).

A handler that finishes without suspending must not pay for a trip through the loop;
where Python can start a Task eagerly and correctly, it does not. What each handler sees
(its own task, its own context copy, priority start order) is the same either way.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from pepperpy.event import Event, EventManager
from pepperpy.event._eager import EAGER_TASKS, starts_eagerly

needs_eager = pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks: CPython 3.12+")


def test_eager_start_is_claimed_exactly_where_python_has_it() -> None:
    assert EAGER_TASKS is (sys.version_info >= (3, 12))


@needs_eager
async def test_handlers_that_do_not_suspend_finish_without_a_loop_iteration() -> None:
    manager = EventManager()
    ran: list[str] = []
    for name in ("a", "b", "c"):

        async def handler(event: Event, name: str = name) -> None:
            ran.append(name)

        manager.on("quick.done", handler)
    iterations: list[int] = []
    asyncio.get_running_loop().call_soon(iterations.append, 1)
    await manager.emit("quick.done")
    assert ran == ["a", "b", "c"]
    assert iterations == [], "the emit went through the loop although no handler suspended"
    await asyncio.sleep(0)
    assert iterations == [1]  # the probe itself works


@needs_eager
async def test_each_eager_handler_still_has_its_own_task() -> None:
    manager = EventManager()
    emitter = asyncio.current_task()
    tasks: list[asyncio.Task[Any] | None] = []

    async def first(event: Event) -> None:
        tasks.append(asyncio.current_task())

    async def second(event: Event) -> None:
        tasks.append(asyncio.current_task())

    manager.on("own.task", first)
    manager.on("own.task", second)
    await manager.emit("own.task")
    assert len(tasks) == 2 and None not in tasks
    assert emitter not in tasks and tasks[0] is not tasks[1]


async def test_a_suspending_handler_does_not_hold_up_the_start_of_the_next() -> None:
    """Concurrent, in priority order: the second starts while the first waits."""
    manager = EventManager()
    log: list[str] = []
    gate = asyncio.Event()

    @manager.on("pair", priority=2)
    async def waits(event: Event) -> None:
        log.append("waits: started")
        await gate.wait()
        log.append("waits: finished")

    @manager.on("pair", priority=1)
    def opens(event: Event) -> None:
        log.append("opens")
        gate.set()

    @manager.on("pair")
    async def last(event: Event) -> None:
        log.append("last")

    await asyncio.wait_for(manager.emit("pair"), 2)
    assert log[:3] == ["waits: started", "opens", "last"]
    assert log[3] == "waits: finished"


async def test_a_loop_with_its_own_task_factory_gets_every_handler_task_from_it() -> None:
    loop = asyncio.get_running_loop()
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)  # type: ignore[arg-type]
    try:
        assert not starts_eagerly(loop)
        manager = EventManager()

        async def one(event: Event) -> None:
            return None

        async def two(event: Event) -> None:
            return None

        manager.on("factory.used", one)
        manager.on("factory.used", two)
        await manager.emit("factory.used")
    finally:
        loop.set_task_factory(None)
    assert sorted(name.rsplit(".", 1)[-1] for name in made) == ["one", "two"]


async def test_failures_of_handlers_that_finish_at_once_are_dead_lettered() -> None:
    manager = EventManager()

    async def fails(event: Event) -> None:
        raise ValueError("at once")

    async def cancels_itself(event: Event) -> None:
        raise asyncio.CancelledError

    async def fine(event: Event) -> None:
        return None

    for handler in (fails, cancels_itself, fine):
        manager.on("mixed", handler)
    await manager.emit("mixed")
    failed = sorted(type(letter.exception).__name__ for letter in manager.dead_letters)
    assert failed == ["CancelledError", "ValueError"]
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
