"""An emit called off before its handlers finished: cancelled, or interrupted by a handler's
KeyboardInterrupt or SystemExit (or another BaseException that is not an Exception).

A ``once`` handler either runs for the event it was claimed for or stays registered for the
next one; the other handlers of an interrupted emit are cancelled and awaited before the
interrupt propagates, and their failures are logged, never dropped.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pepperpy.event import Event, EventManager, RetryPolicy
from pepperpy.event._eager import EAGER_TASKS, starts_eagerly

eager_only = pytest.mark.skipif(
    not EAGER_TASKS, reason="an inline interrupt beside started Tasks needs eager tasks (3.12+)"
)


@contextmanager
def handler_tasks(made: list[asyncio.Task[Any]]) -> Iterator[None]:
    """Every Task of the running loop comes from a plain factory (recorded in ``made``):
    handler Tasks start on the next loop iteration, as on CPython 3.11, on any version."""
    loop = asyncio.get_running_loop()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        made.append(task)
        return task

    loop.set_task_factory(factory)  # type: ignore[arg-type]
    try:
        assert not starts_eagerly(loop)
        yield
    finally:
        loop.set_task_factory(None)


async def test_a_once_task_never_started_stays_registered_when_the_emit_is_cancelled() -> None:
    manager = EventManager()
    made: list[asyncio.Task[Any]] = []
    ran: list[Any] = []
    emitting: list[asyncio.Task[Any]] = []

    async def shutdown(event: Event) -> None:
        # a shutdown path cancelling every other task, between the scheduling of the
        # handler Tasks and their first step (for the first event only)
        if event.data != 1:
            return
        for task in made + emitting:
            if task is not asyncio.current_task():
                task.cancel()

    async def first(event: Event) -> None:
        ran.append(event.data)

    manager.on("app.stop", shutdown, priority=10)
    manager.once("app.stop", first)
    with handler_tasks(made):
        emitting.append(asyncio.ensure_future(manager.emit("app.stop", 1)))
        with pytest.raises(asyncio.CancelledError):
            await emitting[0]
        assert ran == []  # its Task was cancelled before it started
        assert first in manager.handlers("app.stop")  # so it waits for the next event
        await manager.emit("app.stop", 2)
        await manager.emit("app.stop", 3)
    assert ran == [2]  # the next event, once


async def test_a_sync_once_handler_scheduled_behind_a_task_stays_registered_too() -> None:
    manager = EventManager()
    made: list[asyncio.Task[Any]] = []
    ran: list[Any] = []
    emitting: list[asyncio.Task[Any]] = []

    async def shutdown(event: Event) -> None:
        if event.data != 1:
            return
        for task in made + emitting:
            if task is not asyncio.current_task():
                task.cancel()

    def first(event: Event) -> None:  # gets a Task: an async handler is scheduled before it
        ran.append(event.data)

    manager.on("app.stop", shutdown, priority=10)
    manager.once("app.stop", first)
    with handler_tasks(made):
        emitting.append(asyncio.ensure_future(manager.emit("app.stop", 1)))
        with pytest.raises(asyncio.CancelledError):
            await emitting[0]
        await manager.emit("app.stop", 2)
        await manager.emit("app.stop", 3)
    assert ran == [2]


async def test_a_once_handler_started_before_the_emit_was_cancelled_does_not_run_again() -> None:
    manager = EventManager()
    made: list[asyncio.Task[Any]] = []
    runs: list[Any] = []
    started = asyncio.Event()

    async def other(event: Event) -> None:
        await asyncio.sleep(0)

    async def first(event: Event) -> None:
        runs.append(event.data)
        started.set()
        await asyncio.sleep(60)

    manager.on("job.run", other)
    manager.once("job.run", first)
    with handler_tasks(made):
        emitting = asyncio.ensure_future(manager.emit("job.run", 1))
        await started.wait()
        emitting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await emitting
        assert manager.handlers("job.run") == [other]
        await manager.emit("job.run", 2)
    assert runs == [1]  # it ran (and was cancelled) for the first event: fired


async def test_a_once_task_cancelled_by_someone_else_is_dead_lettered_and_gone() -> None:
    # not the emit's cancellation: the handler's Task itself was cancelled before it
    # started; like any handler whose Task is cancelled, a failure of that handler
    manager = EventManager()
    made: list[asyncio.Task[Any]] = []
    ran: list[Any] = []

    async def canceller(event: Event) -> None:
        for task in made:
            if task is not asyncio.current_task():
                task.cancel()

    async def first(event: Event) -> None:
        ran.append(event.data)

    manager.on("job.run", canceller, priority=10)
    manager.once("job.run", first)
    with handler_tasks(made):
        await manager.emit("job.run", 1)
        await manager.emit("job.run", 2)
    assert ran == []
    [letter] = manager.dead_letters
    assert letter.handler is first and isinstance(letter.exception, asyncio.CancelledError)
    assert manager.handlers("job.run") == [canceller]


@eager_only
@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_an_interrupt_from_one_handler_cancels_and_awaits_the_others(
    interrupt: type[BaseException], kind: str
) -> None:
    manager = EventManager()
    log: list[str] = []

    async def slow(event: Event) -> None:
        try:
            await asyncio.sleep(60)
            log.append("slow finished")
        except asyncio.CancelledError:
            log.append("slow cancelled")
            await asyncio.sleep(0)  # its cleanup suspends: the emit waits for it
            log.append("slow cleaned up")
            raise

    def stop_sync(event: Event) -> None:
        raise interrupt()

    async def stop_async(event: Event) -> None:
        raise interrupt()

    manager.on("app.stop", slow, priority=1)
    manager.on("app.stop", stop_sync if kind == "sync" else stop_async)
    with pytest.raises(interrupt):
        await manager.emit("app.stop")
    # the sibling was cancelled and had finished, cleanup included, before the interrupt
    assert log == ["slow cancelled", "slow cleaned up"]
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    assert others == []


@eager_only
async def test_an_interrupt_logs_the_failures_of_the_other_handlers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = EventManager()

    async def failing(event: Event) -> None:
        raise ValueError("async, done before the interrupt")

    def failing_sync(event: Event) -> None:
        raise ValueError("sync, failed before the interrupt")

    def stop(event: Event) -> None:
        raise KeyboardInterrupt

    manager.on("app.stop", failing_sync, priority=2)
    manager.on("app.stop", failing, priority=1)
    manager.on("app.stop", stop)
    with caplog.at_level(logging.ERROR, "pepperpy.event"), pytest.raises(KeyboardInterrupt):
        await manager.emit("app.stop")
    logged = {str(r.exc_info[1]): r.getMessage() for r in caplog.records if r.exc_info is not None}
    assert set(logged) == {"async, done before the interrupt", "sync, failed before the interrupt"}
    assert all("interrupted by KeyboardInterrupt" in message for message in logged.values())
    assert not manager.dead_letters  # called off: logged, not retried or dead-lettered


class Abort(BaseException):
    """A BaseException of the application's own: set on its Task, not raised by the loop."""


async def test_a_handler_raising_a_base_exception_does_not_drop_the_others_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = EventManager()
    made: list[asyncio.Task[Any]] = []

    async def abort(event: Event) -> None:
        raise Abort

    async def failing(event: Event) -> None:
        await asyncio.sleep(0)
        raise ValueError("not dropped")

    manager.on("job.run", abort, priority=1)
    manager.on("job.run", failing)
    with (
        handler_tasks(made),
        caplog.at_level(logging.ERROR, "pepperpy.event"),
        pytest.raises(Abort),
    ):
        await manager.emit("job.run")
    [record] = [r for r in caplog.records if "failing" in r.getMessage()]
    assert "interrupted by Abort" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)
    assert not manager.dead_letters  # called off: logged, not retried or dead-lettered


def test_sys_exit_from_a_handler_task_is_not_logged_as_its_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # on CPython 3.11 (or with a task factory) the sync handler runs in a Task, whose
    # SystemExit asyncio raises out of the event loop; asyncio.run then cancels the emit,
    # which calls its handlers off: sys.exit() is not a failure to log with a traceback
    log: list[str] = []

    async def main() -> None:
        manager = EventManager()

        async def slow(event: Event) -> None:
            try:
                await asyncio.sleep(60)
            finally:
                log.append("slow finished")

        def stop(event: Event) -> None:
            sys.exit(3)

        manager.on("app.stop", slow, priority=1)
        manager.on("app.stop", stop)
        await manager.emit("app.stop")

    with caplog.at_level(logging.ERROR, "pepperpy.event"), pytest.raises(SystemExit) as exited:
        asyncio.run(main())
    assert exited.value.code == 3
    assert log == ["slow finished"]  # the other handler was called off, on every version
    assert [r.getMessage() for r in caplog.records if r.name == "pepperpy.event"] == []


async def test_a_once_handler_claimed_but_not_started_is_no_longer_listed_or_counted() -> None:
    # between the emit that claimed it and its Task's first step, a once handler is
    # neither listed by handlers() nor counted against max_listeners: no event reaches it
    manager = EventManager(max_listeners=2)
    made: list[asyncio.Task[Any]] = []
    seen: list[list[Any]] = []

    async def first(event: Event) -> None:
        return None

    async def look(event: Event) -> None:  # higher priority: its Task starts first
        seen.append(manager.handlers("job.run"))
        manager.on("job.run", late)  # a slot is free: first has fired

    async def late(event: Event) -> None:
        return None

    manager.on("job.run", look, priority=1)
    manager.once("job.run", first)
    with handler_tasks(made):
        await manager.emit("job.run")
    assert seen == [[look]]
    assert manager.handlers("job.run") == [look, late]


async def test_an_interrupt_after_a_sync_failure_still_logs_that_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # no handler Task at all: both run inline, on every version
    manager = EventManager()

    def failing(event: Event) -> None:
        raise ValueError("failed first")

    def stop(event: Event) -> None:
        raise KeyboardInterrupt

    manager.on("app.stop", failing, priority=1)
    manager.on("app.stop", stop)
    with caplog.at_level(logging.ERROR, "pepperpy.event"), pytest.raises(KeyboardInterrupt):
        await manager.emit("app.stop")
    [record] = [r for r in caplog.records if r.exc_info is not None]
    assert "failing" in record.getMessage()
    assert "interrupted by KeyboardInterrupt" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)


async def test_off_of_a_once_handler_claimed_but_not_started_removes_nothing_it_could_reach() -> (
    None
):
    # in that window the once handler has fired already: off() and off_all() find no
    # handler to remove (as once it has started), and a cancelled emit cannot give it back
    manager = EventManager()
    made: list[asyncio.Task[Any]] = []
    results: list[object] = []
    emitting: list[asyncio.Task[Any]] = []
    ran: list[Any] = []

    async def first(event: Event) -> None:
        ran.append(event.data)

    async def look(event: Event) -> None:  # higher priority: its Task starts first
        if event.data != 1:
            return
        results.append(bool(await manager.off("job.run", first)))
        results.append(manager.off_all("job.*"))
        for task in made + emitting:  # then everything is cancelled: first never starts
            if task is not asyncio.current_task():
                task.cancel()

    async def other(event: Event) -> None:
        return None

    manager.on("job.run", look, priority=1)
    manager.once("job.run", first)
    manager.once("job.*", other)
    with handler_tasks(made):
        emitting.append(asyncio.ensure_future(manager.emit("job.run", 1)))
        with pytest.raises(asyncio.CancelledError):
            await emitting[0]
        await manager.emit("job.run", 2)
    assert results == [False, 0]
    assert ran == []  # removed by off(): not given back by the cancelled emit
    assert manager.handlers("job.run") == [look]


async def test_patterns_leaves_out_a_pattern_whose_only_handler_an_emit_has_taken() -> None:
    manager = EventManager()
    made: list[asyncio.Task[Any]] = []
    seen: list[list[str]] = []

    async def look(event: Event) -> None:  # higher priority: its Task starts first
        seen.append(manager.patterns())

    async def first(event: Event) -> None:
        return None

    manager.on("job.run", look, priority=1)
    manager.once("job.*", first)
    with handler_tasks(made):
        await manager.emit("job.run")
    assert seen == [["job.run"]]
    assert manager.patterns() == ["job.run"]


@pytest.mark.parametrize("handlers", [1, 2])
async def test_a_failure_being_retried_when_the_emit_is_cancelled_is_logged(
    caplog: pytest.LogCaptureFixture, handlers: int
) -> None:
    # a shutdown during a retry's back-off: no dead letter, no further try, but an ERROR
    # with the failure's traceback, not only the WARNING announcing a retry never made
    manager = EventManager(retry_policy=RetryPolicy.fixed(max_attempts=3, base_delay=60))
    failed = asyncio.Event()

    async def charge(event: Event) -> None:
        failed.set()
        raise ConnectionError("gateway down")

    async def other(event: Event) -> None:
        return None

    manager.on("payment.requested", charge)
    if handlers == 2:
        manager.on("payment.requested", other)
    with caplog.at_level(logging.WARNING, "pepperpy.event"):
        emitting = asyncio.ensure_future(manager.emit("payment.requested"))
        await failed.wait()
        while "retrying in" not in caplog.text:  # the retry's back-off has begun
            await asyncio.sleep(0)
        emitting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await emitting
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "charge" in record.getMessage() and "after 1 attempt(s)" in record.getMessage()
    assert "cancelled" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], ConnectionError)
    assert not manager.dead_letters


@pytest.mark.parametrize("policy", [RetryPolicy.NONE, RetryPolicy.fixed(max_attempts=3)])
async def test_a_failure_whose_retry_task_is_cancelled_before_it_starts_is_logged(
    caplog: pytest.LogCaptureFixture, policy: RetryPolicy
) -> None:
    # several handlers failed; each one's retries (and dead letter) run in a Task of their
    # own, which a shutdown cancels with every other task before its first step: nothing
    # of the retry path ran, so no line at all said the handlers had failed
    manager = EventManager(retry_policy=policy)
    calls = 0

    async def charge(event: Event) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("gateway down")

    async def notify(event: Event) -> None:
        nonlocal calls
        calls += 1
        raise LookupError("no such address")

    manager.on("payment.requested", charge)
    manager.on("payment.requested", notify)
    with caplog.at_level(logging.WARNING, "pepperpy.event"):
        emitting = asyncio.ensure_future(manager.emit("payment.requested"))
        me = asyncio.current_task()

        def unstarted() -> list[asyncio.Task[Any]]:
            return [
                task
                for task in asyncio.all_tasks()
                if task is not me
                and task is not emitting
                and inspect.getcoroutinestate(task.get_coro()) == inspect.CORO_CREATED  # type: ignore[arg-type]
            ]

        while calls < 2 or not unstarted():  # both failed, their retry tasks not started
            await asyncio.sleep(0)
        for task in asyncio.all_tasks():  # as asyncio.run() does at shutdown
            if task is not me:
                task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await emitting
        await asyncio.sleep(0)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert sorted(type(r.exc_info[1]).__name__ for r in errors if r.exc_info) == [
        "ConnectionError",
        "LookupError",
    ]
    assert all("cancelled" in r.getMessage() for r in errors)
    assert not manager.dead_letters
