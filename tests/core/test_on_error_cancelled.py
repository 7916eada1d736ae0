"""An EventManager on_error callback whose own ``await`` is cancelled (a future someone
else cancelled) has failed like any other callback: it is logged, the callbacks after
it run, and ``emit`` returns. Before, the CancelledError skipped the later callbacks and
left ``emit`` as a cancellation nobody asked for (audit 20). A cancellation of the
emitting task still propagates."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pepperpy.event import DeadLetter, Event, EventManager


async def cancelled_under_it() -> None:
    future = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(future.cancel)
    await future


def manager_with(handlers: int, **options: int) -> tuple[EventManager, list[str]]:
    manager = EventManager(**options)
    later: list[str] = []

    for _ in range(handlers):

        @manager.on("job.run")
        async def fail(event: Event) -> None:
            raise ValueError("boom")

    @manager.on_error
    async def report(letter: DeadLetter) -> None:
        await cancelled_under_it()

    @manager.on_error
    def second(letter: DeadLetter) -> None:
        later.append(letter.event.type)

    return manager, later


@pytest.mark.parametrize(
    ("handlers", "options"),
    [(1, {}), (2, {}), (1, {"buffer_size": 10})],
    ids=["one-handler", "two-handlers", "buffered"],
)
async def test_a_cancelled_callback_is_logged_and_the_rest_run(
    caplog: pytest.LogCaptureFixture, handlers: int, options: dict[str, int]
) -> None:
    manager, later = manager_with(handlers, **options)
    with caplog.at_level(logging.ERROR):
        task = asyncio.ensure_future(manager.emit("job.run", 1))
        await asyncio.wait([task], timeout=5)
        if options:
            await asyncio.wait_for(manager.drain(), 5)
    assert not task.cancelled()
    task.result()
    assert later == ["job.run"] * handlers
    assert "on_error callback" in caplog.text
    assert "CancelledError" in caplog.text
    await manager.close()


async def test_a_cancellation_of_the_emit_during_a_callback_still_propagates() -> None:
    manager = EventManager()
    entered = asyncio.Event()
    later: list[str] = []

    @manager.on("job.run")
    async def fail(event: Event) -> None:
        raise ValueError("boom")

    @manager.on_error
    async def report(letter: DeadLetter) -> None:
        entered.set()
        await asyncio.Event().wait()

    @manager.on_error
    def second(letter: DeadLetter) -> None:
        later.append(letter.event.type)

    task = asyncio.ensure_future(manager.emit("job.run", 1))
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    await asyncio.wait([task], timeout=5)
    assert task.cancelled()
    assert later == []
