"""An emit takes the ``once`` handlers it reaches when it starts, on every Python.

With several handlers, a ``once`` handler was claimed only when the dispatch loop came
to it. Whatever ran before that in the same emit (a handler of higher priority: a sync
one run inline, or an ``async`` one's eager first step on CPython 3.12+) still saw it as
a registered handler: ``off()`` of it returned True although it then ran anyway,
``handlers()`` listed it, and an ``emit`` nested there ran it for the nested event
instead of the first one. On 3.11 an ``async`` handler before it behaved the other way
(its Task started after the claim), so the outcome depended on the Python version and on
whether the earlier handler was sync (docs/manager.md: "Taken by an emit, it is no
handler any more").
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pepperpy.event import Event, EventManager


@pytest.mark.parametrize("earlier_is_async", [True, False], ids=["async", "sync"])
async def test_off_of_a_once_handler_the_emit_took_returns_false_and_it_runs_once(
    earlier_is_async: bool,
) -> None:
    manager = EventManager()
    ran: list[Any] = []
    removed: list[bool] = []
    listed: list[int] = []

    async def once_handler(event: Event) -> None:
        ran.append(event.data)

    def look(event: Event) -> None:
        listed.append(len(manager.handlers("job.done")))

    def remove_sync(event: Event) -> None:
        look(event)
        removed.append(bool(manager.off("job.*", once_handler)))

    async def remove_async(event: Event) -> None:
        look(event)
        removed.append(await manager.off("job.*", once_handler))

    manager.on("job.done", lambda event: None, priority=2)
    manager.on("job.done", remove_async if earlier_is_async else remove_sync, priority=1)
    manager.once("job.*", once_handler)
    await manager.emit("job.done", 1)
    await manager.emit("job.done", 2)
    assert ran == [1]  # the first emit kept its list
    assert removed == [False, False]  # taken by the first emit: nothing left to remove
    assert listed == [2, 2]  # and no longer listed as a handler while that emit ran


async def test_an_emit_nested_before_a_once_handler_does_not_take_it_from_the_first() -> None:
    manager = EventManager()
    ran: list[Any] = []

    async def first(event: Event) -> None:
        if event.data == 1:
            await manager.emit("job.done", 2)  # in its (eager, on 3.12+) first step

    async def once_handler(event: Event) -> None:
        ran.append(event.data)

    manager.on("job.done", lambda event: None, priority=2)
    manager.on("job.done", first, priority=1)
    manager.once("job.done", once_handler)
    await manager.emit("job.done", 1)
    assert ran == [1]  # the first matching event, not the one emitted while it ran


async def test_a_once_handler_an_interrupted_emit_never_reached_stays_registered() -> None:
    manager = EventManager()
    ran: list[Any] = []
    calls: list[Any] = []

    def first(event: Event) -> None:  # a sync handler, run inline: raises in the emit
        calls.append(event.data)
        if event.data == 1:
            raise KeyboardInterrupt

    def second(event: Event) -> None:
        calls.append(event.data)

    async def once_handler(event: Event) -> None:
        ran.append(event.data)

    manager.on("job.done", first, priority=1)
    manager.on("job.done", second)
    manager.once("job.done", once_handler)
    with pytest.raises(KeyboardInterrupt):
        await manager.emit("job.done", 1)
    assert manager.handlers("job.done") == [first, second, once_handler]
    await manager.emit("job.done", 2)
    await manager.emit("job.done", 3)
    assert ran == [2]
    assert calls == [1, 2, 2, 3, 3]


async def test_racing_emits_still_run_a_once_handler_a_single_time() -> None:
    manager = EventManager()
    ran: list[Any] = []

    async def slow(event: Event) -> None:
        await asyncio.sleep(0.01)

    async def once_handler(event: Event) -> None:
        ran.append(event.data)

    manager.on("job.done", slow, priority=1)
    manager.once("job.done", once_handler)
    await asyncio.gather(*(manager.emit("job.done", n) for n in range(5)))
    assert ran == [0]
    assert manager.handlers("job.done") == [slow]
