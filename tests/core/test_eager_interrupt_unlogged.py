"""A handler's KeyboardInterrupt or SystemExit raised in its eager first step (CPython
3.12+) propagates out of ``emit`` without asyncio also logging "Task exception was never
retrieved" for the handler's Task: the Task constructor raised the interrupt on to the
dispatch, so nothing was lost, and that ERROR was a false alarm.
"""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from pepperpy.event import Event, EventManager
from pepperpy.event._eager import EAGER_TASKS

pytestmark = pytest.mark.skipif(not EAGER_TASKS, reason="eager first steps need CPython 3.12+")

NEVER_RETRIEVED = "exception was never retrieved"


def _reports(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "asyncio" and NEVER_RETRIEVED in r.getMessage()]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
async def test_an_interrupt_in_an_eager_first_step_is_not_reported_as_lost(
    interrupt: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    manager = EventManager()
    ran: list[str] = []

    async def first(event: Event) -> None:
        ran.append("first")

    async def stop(event: Event) -> None:
        raise interrupt("from the first step")

    manager.on("app.stop", first, priority=1)
    manager.on("app.stop", stop)
    with caplog.at_level(logging.DEBUG, "asyncio"), pytest.raises(interrupt) as raised:
        await manager.emit("app.stop")
        gc.collect()
    gc.collect()
    assert str(raised.value) == "from the first step"
    assert ran == ["first"]
    assert _reports(caplog) == []


async def test_an_interrupt_a_task_of_its_own_lost_is_still_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the filter is narrow: a Task nobody reads that ended on KeyboardInterrupt outside
    # an eager start by the manager is still reported, as asyncio always did
    async def stop() -> None:
        raise KeyboardInterrupt("lost")

    loop = asyncio.get_running_loop()
    with caplog.at_level(logging.DEBUG, "asyncio"):
        try:
            asyncio.Task(stop(), loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
        except KeyboardInterrupt:
            pass
        gc.collect()
    [record] = _reports(caplog)
    assert record.exc_info is not None and str(record.exc_info[1]) == "lost"


async def test_a_lost_interrupt_reported_from_inside_a_handlers_first_step_is_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a handler's first step that itself drops a Task ending on KeyboardInterrupt: the
    # report is made while the manager is starting the handler, but comes from the
    # handler's own code, and is kept
    manager = EventManager()
    loop = asyncio.get_running_loop()

    async def stop() -> None:
        raise KeyboardInterrupt("dropped by the handler")

    async def careless(event: Event) -> None:
        try:
            asyncio.Task(stop(), loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
        except KeyboardInterrupt:
            pass

    async def other(event: Event) -> None:
        return None

    manager.on("job.run", careless, priority=1)
    manager.on("job.run", other)
    with caplog.at_level(logging.DEBUG, "asyncio"):
        await manager.emit("job.run")
        gc.collect()
    [record] = _reports(caplog)
    assert record.exc_info is not None and str(record.exc_info[1]) == "dropped by the handler"
