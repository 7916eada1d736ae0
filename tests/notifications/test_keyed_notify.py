"""A keyed notify on the in-memory idempotency store costs no task; a claim that waits is
still run to its end when its caller is cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pepperpy.event import MemoryChannel, NotificationSystem, RetryPolicy
from pepperpy.event.notifications._claims import settled_soon


def _counting_tasks(loop: asyncio.AbstractEventLoop) -> list[object]:
    made: list[object] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    return made


async def test_a_keyed_notify_on_the_memory_store_starts_no_task() -> None:
    notifications = NotificationSystem(retry_policy=RetryPolicy.NONE)
    channel = MemoryChannel(kind="email")
    notifications.add_channel("email", channel)
    made = _counting_tasks(asyncio.get_running_loop())
    try:
        first = await notifications.notify(body="hi", to="a@example.com", idempotency_key="k1")
        again = await notifications.notify(body="hi", to="a@example.com", idempotency_key="k1")
    finally:
        asyncio.get_running_loop().set_task_factory(None)

    assert first["email"].status == "sent"
    assert again["email"].status == "duplicate"
    assert len(channel.outbox) == 1
    assert made == []  # claiming and completing took no task nor turn of the loop
    await notifications.close()


async def test_an_operation_that_never_waits_runs_in_place() -> None:
    async def answer() -> int:
        return 42

    made = _counting_tasks(asyncio.get_running_loop())
    try:
        assert await settled_soon(answer()) == 42
    finally:
        asyncio.get_running_loop().set_task_factory(None)
    assert made == []


async def test_an_operation_that_fails_at_once_raises_its_error() -> None:
    async def broken() -> None:
        raise LookupError("no such key")

    with pytest.raises(LookupError, match="no such key"):
        await settled_soon(broken())


async def test_an_operation_that_waits_is_finished_when_its_caller_is_cancelled() -> None:
    steps: list[str] = []
    gate = asyncio.Event()

    async def slow() -> str:
        steps.append("started")
        await asyncio.sleep(0)  # a bare yield to the loop
        await gate.wait()  # a future
        steps.append("finished")
        return "done"

    caller = asyncio.ensure_future(settled_soon(slow()))
    await asyncio.sleep(0.01)
    caller.cancel()
    await asyncio.sleep(0.01)
    assert steps == ["started"]  # still waiting: the cancellation waits for it
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert steps == ["started", "finished"]


async def test_an_operation_that_waits_passes_its_result_and_errors_on() -> None:
    async def later(fail: bool) -> str:
        await asyncio.sleep(0.001)
        if fail:
            raise ValueError("late failure")
        return "later"

    assert await settled_soon(later(False)) == "later"
    with pytest.raises(ValueError, match="late failure"):
        await settled_soon(later(True))
