"""EventManager (SPEC section 3): registration, dispatch, failures, backpressure, lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import math
from typing import Any

import pytest

from pepperpy.event import (
    BufferFullError,
    ClosedError,
    DeadLetter,
    Event,
    EventManager,
    ListenerLimitError,
    PatternError,
    RetryPolicy,
    SerializationError,
)

NO_WAIT_RETRY = RetryPolicy.fixed(max_attempts=3, base_delay=0)


def _install_counter(counter: list[int]) -> None:
    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        counter[0] += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    asyncio.get_running_loop().set_task_factory(factory)  # type: ignore[arg-type]


# -- registration ---------------------------------------------------------------------


async def test_on_as_decorator_and_direct_call_returns_the_handler() -> None:
    manager = EventManager()
    seen: list[str] = []

    @manager.on("user.created")
    async def decorated(event: Event) -> None:
        seen.append("decorated")

    def direct(event: Event) -> None:
        seen.append("direct")

    assert manager.on("user.created", direct) is direct
    assert decorated.__name__ == "decorated"
    assert manager.handlers("user.created") == [decorated, direct]
    await manager.emit("user.created", {"id": 1})
    assert seen == ["decorated", "direct"]


async def test_emit_builds_the_event_and_returns_it() -> None:
    manager = EventManager()
    got: list[Event] = []
    manager.on("user.created", got.append)
    event = await manager.emit("user.created", {"name": "John"}, {"trace": "t1"})
    assert isinstance(event, Event)
    assert got == [event] and got[0] is event
    assert event.type == "user.created"
    assert event.data == {"name": "John"}
    assert event.metadata == {"trace": "t1"}


async def test_emit_without_handlers_still_returns_the_event() -> None:
    event = await EventManager().emit("nobody.listens", [1, 2])
    assert event.data == [1, 2]


async def test_emit_a_ready_event_passes_that_very_object() -> None:
    manager = EventManager()
    got: list[Event] = []
    manager.on("order.placed", got.append)
    ready = Event("order.placed", {"total": 3}, version=2)
    assert await manager.emit(ready) is ready
    assert got[0] is ready
    with pytest.raises(TypeError, match="inside the Event"):
        await manager.emit(ready, {"other": 1})
    with pytest.raises(TypeError):
        await manager.emit(42)  # type: ignore[arg-type]


async def test_patterns_select_handlers() -> None:
    manager = EventManager()
    seen: dict[str, list[str]] = {"one": [], "any": [], "tail": [], "all": []}
    manager.on("users.*", lambda e: seen["one"].append(e.type))
    manager.on("users.#", lambda e: seen["any"].append(e.type))
    manager.on("#.failed", lambda e: seen["tail"].append(e.type))
    manager.on("#", lambda e: seen["all"].append(e.type))
    for kind in ("users", "users.login", "users.login.failed", "failed", "orders.new"):
        await manager.emit(kind)
    assert seen == {
        "one": ["users.login"],
        "any": ["users", "users.login", "users.login.failed"],
        "tail": ["users.login.failed", "failed"],
        "all": ["users", "users.login", "users.login.failed", "failed", "orders.new"],
    }


def test_registration_validates_its_arguments() -> None:
    manager = EventManager()
    with pytest.raises(PatternError):
        manager.on("a..b", print)
    with pytest.raises(PatternError):
        manager.on("us*rs")
    with pytest.raises(TypeError):
        manager.on("a", "not callable")  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        manager.on("a")("not callable")  # type: ignore[type-var]
    with pytest.raises(TypeError):
        manager.on("a", print, priority="high")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        manager.on_error(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        manager.on_error()(42)  # type: ignore[type-var]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_listeners": 0}, {"buffer_size": 0}, {"buffer_size": -3}, {"retry_policy": "fast"}],
)
def test_constructor_validates_its_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        EventManager(**kwargs)


def test_construction_and_registration_need_no_running_loop() -> None:
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    manager = EventManager(max_listeners=5, buffer_size=10, retry_policy=RetryPolicy.FIXED)
    seen: list[Any] = []

    @manager.on("user.*", priority=2)
    async def handler(event: Event) -> None:
        seen.append(event.data)

    manager.once("user.created", lambda e: seen.append("once"))
    manager.on_error(lambda letter: None)

    async def main() -> None:
        await manager.emit("user.created", 1)
        async with manager:
            await manager.emit_nowait("user.created", 2)

    asyncio.run(main())
    assert seen == [1, "once", 2]


def test_emit_nowait_without_a_loop_fails_cleanly() -> None:
    manager = EventManager(buffer_size=1)
    # it said only asyncio's "no running event loop": now what to do instead
    with pytest.raises(RuntimeError, match=r"needs an event loop .*run_coroutine_threadsafe"):
        manager.emit_nowait("t")
    assert manager.in_flight == 0, "no buffer slot leaked"


# -- off and once ---------------------------------------------------------------------


async def test_off_removes_every_registration_of_that_handler_under_that_pattern() -> None:
    manager = EventManager()
    calls: list[str] = []

    def handler(event: Event) -> None:
        calls.append(event.type)

    manager.on("a.*", handler)
    manager.on("a.*", handler)
    manager.on("a.b", handler)
    assert await manager.off("a.*", handler) is True
    assert await manager.off("a.*", handler) is False
    assert await manager.off("a.#", handler) is False, "only the exact pattern"
    await manager.emit("a.b")
    assert calls == ["a.b"], "the a.b registration is untouched"
    assert await manager.off("never.registered", handler) is False


async def test_off_from_inside_a_handler_during_emit() -> None:
    manager = EventManager()
    calls: list[str] = []

    async def remover(event: Event) -> None:
        calls.append("remover")
        assert await manager.off("job", victim)
        assert await manager.off("job", remover)

    async def victim(event: Event) -> None:
        await asyncio.sleep(0)
        calls.append("victim")

    manager.on("job", remover, priority=1)
    manager.on("job", victim)
    await manager.emit("job")
    assert calls == ["remover", "victim"], "the running emit keeps its handler list"
    await manager.emit("job")
    assert calls == ["remover", "victim"]
    assert manager.handlers("job") == []


async def test_once_runs_a_single_time_even_for_concurrent_emits() -> None:
    manager = EventManager()
    calls: list[int] = []

    @manager.once("boot")
    async def first_boot(event: Event) -> None:
        calls.append(event.data)
        await asyncio.sleep(0.01)

    manager.on("boot", lambda e: None)  # a second listener: the many-handler path
    await asyncio.gather(*(manager.emit("boot", n) for n in range(5)))
    await manager.emit("boot", 99)
    assert calls == [0]
    only = EventManager()
    only.on("x", lambda e: calls.append(e.data), once=True)
    await asyncio.gather(only.emit("x", 1), only.emit("x", 2))
    assert calls == [0, 1]


async def test_off_removes_a_once_registration() -> None:
    manager = EventManager()
    calls: list[int] = []
    handler = manager.once("x", lambda e: calls.append(1))
    assert await manager.off("x", handler) is True
    await manager.emit("x")
    assert calls == []


# -- ordering, concurrency and tasks ---------------------------------------------------


async def test_higher_priority_starts_first_and_ties_keep_registration_order() -> None:
    manager = EventManager()
    started: list[str] = []

    def make(name: str) -> Any:
        async def handler(event: Event) -> None:
            started.append(name)
            await asyncio.sleep(0)

        return handler

    manager.on("t", make("low"), priority=-5)
    manager.on("t", make("default-1"))
    manager.on("t", make("high"), priority=10)
    manager.on("#", make("pattern-mid"), priority=3)
    manager.on("t", make("default-2"))
    await manager.emit("t")
    assert started == ["high", "pattern-mid", "default-1", "default-2", "low"]


async def test_handlers_of_one_event_run_concurrently() -> None:
    manager = EventManager()
    ping, pong = asyncio.Event(), asyncio.Event()

    @manager.on("match")
    async def left(event: Event) -> None:
        ping.set()
        await pong.wait()

    @manager.on("match")
    async def right(event: Event) -> None:
        await ping.wait()
        pong.set()

    await asyncio.wait_for(manager.emit("match"), timeout=2)


async def test_emit_returns_after_every_handler_finished() -> None:
    manager = EventManager()
    done: list[str] = []

    async def slow(event: Event) -> None:
        await asyncio.sleep(0.02)
        done.append("slow")

    async def slower(event: Event) -> None:
        await asyncio.sleep(0.04)
        done.append("slower")

    manager.on("t", slow)
    await manager.emit("t")
    assert done == ["slow"]
    manager.on("t", slower)
    await manager.emit("t")
    assert sorted(done) == ["slow", "slow", "slower"]


async def test_handlers_that_do_not_suspend_create_no_task() -> None:
    """Sync handlers and a lone async handler run inline; with several matching
    handlers each async one gets a Task of its own (see the next tests for why)."""
    manager = EventManager()
    seen: list[str] = []

    async def quick(event: Event) -> None:
        seen.append("async")

    def sync(event: Event) -> None:
        seen.append("sync")

    async def suspends(event: Event) -> None:
        await asyncio.sleep(0)
        seen.append("suspended")

    created = [0]
    _install_counter(created)
    try:
        manager.on("one", quick)
        await manager.emit("one")
        manager.on("syncs", sync)
        manager.on("syncs", sync)
        for _ in range(10):
            await manager.emit("syncs")
        assert created[0] == 0
        manager.on("single.slow", suspends)
        await manager.emit("single.slow")
        assert created[0] == 0, "a lone handler is awaited inline"
        manager.on("many", sync, priority=1)
        manager.on("many", quick)
        manager.on("many", suspends)
        await manager.emit("many")
        assert created[0] == 2, "one Task per async handler, none for the sync one"
    finally:
        asyncio.get_running_loop().set_task_factory(None)
    assert seen.count("suspended") == 2


async def test_a_timeout_inside_one_of_several_handlers_concerns_that_handler_only() -> None:
    manager = EventManager()
    log: list[str] = []
    never = asyncio.Event()

    @manager.on("job.run")
    async def with_timeout(event: Event) -> None:
        try:
            async with asyncio.timeout(0.01):
                await never.wait()
        except TimeoutError:
            log.append("timed out")

    @manager.on("job.run")
    async def other(event: Event) -> None:
        await asyncio.sleep(0.05)
        log.append("other finished")

    await asyncio.wait_for(manager.emit("job.run"), 2)
    assert sorted(log) == ["other finished", "timed out"]
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    assert not manager.dead_letters


async def test_a_task_group_inside_one_of_several_handlers_belongs_to_that_handler() -> None:
    manager = EventManager()
    log: list[str] = []

    async def boom() -> None:
        raise ValueError("child failed")

    @manager.on("t.g")
    async def with_group(event: Event) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(asyncio.sleep(0.01))
                group.create_task(boom())
        except* ValueError:
            log.append("caught")

    @manager.on("t.g")
    async def slow(event: Event) -> None:
        await asyncio.sleep(0.05)
        log.append("slow finished")

    await asyncio.wait_for(manager.emit("t.g"), 2)
    assert sorted(log) == ["caught", "slow finished"]


request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="caller")


async def test_each_of_several_handlers_runs_in_its_own_task_and_context_copy() -> None:
    manager = EventManager()
    emitter = asyncio.current_task()
    seen: dict[str, Any] = {}

    @manager.on("a.b", priority=2)
    def sync_sets(event: Event) -> None:
        request_id.set("sync")

    @manager.on("a.b", priority=1)
    async def async_sets(event: Event) -> None:
        seen["before"] = request_id.get()
        request_id.set("async")
        seen["own task"] = asyncio.current_task() is not emitter
        await asyncio.sleep(0)
        seen["after"] = request_id.get()

    @manager.on("a.b")
    async def reader(event: Event) -> None:
        seen["reader"] = request_id.get()
        await asyncio.sleep(0)

    request_id.set("emitter")
    await manager.emit("a.b")
    assert request_id.get() == "emitter"
    assert seen == {"before": "emitter", "own task": True, "after": "async", "reader": "emitter"}


async def test_a_lone_handler_is_an_ordinary_nested_call() -> None:
    """Documented: one matching handler is awaited inline, in the emitter's task and
    context, so timeouts work as around any awaited call."""
    manager = EventManager()
    emitter = asyncio.current_task()
    seen: dict[str, Any] = {}
    never = asyncio.Event()

    @manager.on("solo")
    async def solo(event: Event) -> None:
        seen["same task"] = asyncio.current_task() is emitter
        try:
            async with asyncio.timeout(0.01):
                await never.wait()
        except TimeoutError:
            seen["timed out"] = True
        request_id.set("solo")

    request_id.set("emitter")
    async with asyncio.timeout(2):  # (wait_for would run the emit in another task)
        await manager.emit("solo")
    assert seen == {"same task": True, "timed out": True}
    assert emitter is not None and emitter.cancelling() == 0
    assert request_id.get() == "solo"  # like any awaited coroutine


async def test_several_handlers_keep_priority_start_order_across_sync_and_async() -> None:
    manager = EventManager()
    started: list[str] = []

    async def first(event: Event) -> None:
        started.append("async-high")
        await asyncio.sleep(0)

    manager.on("mix", first, priority=5)
    manager.on("mix", lambda event: started.append("sync-low"))
    manager.on("mix", lambda event: started.append("sync-mid"), priority=1)
    await manager.emit("mix")
    assert started == ["async-high", "sync-mid", "sync-low"]


async def test_all_kinds_of_callables_work_as_handlers() -> None:
    manager = EventManager()
    seen: list[str] = []

    async def tagged(tag: str, event: Event) -> None:
        await asyncio.sleep(0)
        seen.append(tag)

    class AsyncCallable:
        async def __call__(self, event: Event) -> None:
            seen.append("async __call__")

    class SyncCallable:
        def __call__(self, event: Event) -> None:
            seen.append("sync __call__")

    async def later(event: Event) -> None:
        seen.append("returned coroutine")

    for registry in ("one", "many"):
        seen.clear()
        handlers: list[Any] = [
            functools.partial(tagged, "partial"),
            AsyncCallable(),
            SyncCallable(),
            lambda e: later(e),  # a sync function returning an awaitable: awaited
        ]
        if registry == "one":
            for handler in handlers:
                single = EventManager()
                single.on("t", handler)
                await single.emit("t")
        else:
            for handler in handlers:
                manager.on("t", handler)
            await manager.emit("t")
        assert sorted(seen) == sorted(
            ["partial", "async __call__", "sync __call__", "returned coroutine"]
        ), registry


# -- failures, retries and dead letters ------------------------------------------------


async def test_one_failure_never_stops_the_others(caplog: pytest.LogCaptureFixture) -> None:
    manager = EventManager()
    ran: list[str] = []

    @manager.on("t", priority=2)
    async def before(event: Event) -> None:
        await asyncio.sleep(0)
        ran.append("before")

    @manager.on("t", priority=1)
    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    @manager.on("t", priority=1)
    async def broken_later(event: Event) -> None:
        await asyncio.sleep(0)
        raise KeyError("late")

    @manager.on("t")
    async def after(event: Event) -> None:
        ran.append("after")

    with caplog.at_level(logging.ERROR, logger="pepperpy.event"):
        await manager.emit("t")
    assert sorted(ran) == ["after", "before"]
    assert sorted(type(d.exception).__name__ for d in manager.dead_letters) == [
        "KeyError",
        "RuntimeError",
    ]


@pytest.mark.parametrize("handlers", [1, 2])
async def test_failures_are_retried_per_policy(handlers: int) -> None:
    manager = EventManager(retry_policy=NO_WAIT_RETRY)
    attempts: list[int] = []

    async def flaky(event: Event) -> None:
        attempts.append(1)
        await asyncio.sleep(0)
        if len(attempts) < 3:
            raise ConnectionError("try again")

    manager.on("t", flaky)
    if handlers == 2:
        manager.on("t", lambda e: None)
    await manager.emit("t")
    assert len(attempts) == 3
    assert not manager.dead_letters


async def test_sync_failures_are_retried_too() -> None:
    manager = EventManager(retry_policy=NO_WAIT_RETRY)
    attempts: list[int] = []

    def flaky(event: Event) -> None:
        attempts.append(1)
        if len(attempts) < 2:
            raise ValueError("once")

    manager.on("t", flaky)
    await manager.emit("t")
    assert len(attempts) == 2 and not manager.dead_letters


async def test_retry_waits_the_policy_delays() -> None:
    loop = asyncio.get_running_loop()
    manager = EventManager(retry_policy=RetryPolicy.fixed(max_attempts=3, base_delay=0.03))
    times: list[float] = []

    def failing(event: Event) -> None:
        times.append(loop.time())
        raise RuntimeError("no")

    manager.on("t", failing)
    await manager.emit("t")
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(times) == 3
    assert all(gap >= 0.025 for gap in gaps), gaps


async def test_exhausted_retries_become_dead_letters_logged_with_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = EventManager(retry_policy=NO_WAIT_RETRY)
    letters: list[DeadLetter] = []
    manager.on_error(letters.append)

    async def always_fails(event: Event) -> None:
        raise ValueError("card declined")

    manager.on("pay.charge", always_fails)
    with caplog.at_level(logging.ERROR, logger="pepperpy.event"):
        event = await manager.emit("pay.charge", {"amount": 5})
    assert len(letters) == 1
    letter = letters[0]
    assert letter.event is event
    assert letter.handler is always_fails
    assert isinstance(letter.exception, ValueError)
    assert letter.attempts == 3
    assert list(manager.dead_letters) == [letter]
    records = [r for r in caplog.records if r.name == "pepperpy.event" and r.exc_info]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[1] is letter.exception
    assert "always_fails" in record.getMessage() and "pay.charge" in record.getMessage()
    assert "card declined" in caplog.text and "Traceback" in caplog.text


async def test_exceptions_outside_retry_on_fail_at_once() -> None:
    policy = RetryPolicy.fixed(max_attempts=5, base_delay=0, retry_on=ConnectionError)
    manager = EventManager(retry_policy=policy)
    calls: list[int] = []

    def handler(event: Event) -> None:
        calls.append(1)
        raise ValueError("not retryable")

    manager.on("t", handler)
    await manager.emit("t")
    assert len(calls) == 1
    assert manager.dead_letters[0].attempts == 1


async def test_every_error_callback_runs_before_emit_returns() -> None:
    manager = EventManager()
    log: list[str] = []

    def sync_callback(letter: DeadLetter) -> None:
        log.append("sync")

    @manager.on_error
    async def async_decorated(letter: DeadLetter) -> None:
        await asyncio.sleep(0.01)
        log.append("async-decorated")

    @manager.on_error()
    def sync_decorated_with_parens(letter: DeadLetter) -> None:
        log.append("sync-decorated")

    assert manager.on_error(sync_callback) is sync_callback
    manager.on_error(lambda letter: asyncio.sleep(0))  # sync returning an awaitable

    manager.on("t", lambda e: 1 / 0)
    await manager.emit("t")
    assert sorted(log) == ["async-decorated", "sync", "sync-decorated"]


async def test_a_failing_error_callback_is_logged_and_does_not_stop_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = EventManager()
    reached: list[str] = []

    def bad_callback(letter: DeadLetter) -> None:
        raise RuntimeError("callback broke")

    manager.on_error(bad_callback)
    manager.on_error(lambda letter: reached.append("second"))
    manager.on("t", lambda e: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="pepperpy.event"):
        await manager.emit("t")
    assert reached == ["second"]
    assert "callback broke" in caplog.text


async def test_dead_letters_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    manager = EventManager()
    manager.on("t", lambda e: 1 / 0)
    limit = manager.dead_letters.maxlen
    assert limit is not None and 0 < limit <= 10_000
    with caplog.at_level(logging.CRITICAL, logger="pepperpy.event"):
        for n in range(limit + 5):
            await manager.emit("t", n)
    assert len(manager.dead_letters) == limit
    assert manager.dead_letters[0].event.data == 5, "the oldest are dropped first"
    assert manager.dead_letters[-1].event.data == limit + 4


# -- limits, backpressure, scheduling ---------------------------------------------------


async def test_max_listeners_per_type_or_pattern() -> None:
    manager = EventManager(max_listeners=2)
    one, two, three = (lambda e: None), (lambda e: None), (lambda e: None)
    manager.on("t", one)
    manager.on("t", two)
    with pytest.raises(ListenerLimitError, match="max_listeners=2"):
        manager.on("t", three)
    with pytest.raises(ListenerLimitError):
        manager.once("t")(three)
    manager.on("t.*", three)  # another pattern has its own count
    manager.on("#", three)
    assert await manager.off("t", one)
    manager.on("t", three)


async def test_buffer_size_makes_emit_wait() -> None:
    manager = EventManager(buffer_size=2)
    gate = asyncio.Event()
    started: list[int] = []

    @manager.on("job")
    async def work(event: Event) -> None:
        started.append(event.data)
        await gate.wait()

    emits = [asyncio.ensure_future(manager.emit("job", n)) for n in range(4)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert started == [0, 1]
    assert manager.in_flight == 2
    assert not any(e.done() for e in emits)
    gate.set()
    events = await asyncio.gather(*emits)
    assert sorted(started) == [0, 1, 2, 3]
    assert [e.data for e in events] == [0, 1, 2, 3]
    assert manager.in_flight == 0


async def test_emit_nowait_schedules_and_refuses_when_full() -> None:
    manager = EventManager(buffer_size=2)
    gate = asyncio.Event()
    handled: list[int] = []

    @manager.on("job")
    async def work(event: Event) -> None:
        await gate.wait()
        handled.append(event.data)

    first = manager.emit_nowait("job", 1)
    second = manager.emit_nowait(Event("job", 2))
    assert isinstance(first, asyncio.Future)
    with pytest.raises(BufferFullError, match="buffer_size=2"):
        manager.emit_nowait("job", 3)
    waiting = asyncio.ensure_future(manager.emit("job", 4))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    gate.set()
    assert (await first).data == 1
    assert (await second).data == 2
    await waiting
    assert sorted(handled) == [1, 2, 4]
    assert manager.in_flight == 0


async def test_emit_nowait_validates_before_scheduling() -> None:
    manager = EventManager(buffer_size=1)
    called: list[int] = []
    manager.on("#", lambda e: called.append(1))
    with pytest.raises(PatternError):
        manager.emit_nowait("a..b")
    with pytest.raises(PatternError):
        manager.emit_nowait("users.*")
    with pytest.raises(SerializationError):
        manager.emit_nowait("t", {"x": math.nan})
    assert manager.in_flight == 0
    await manager.drain()
    assert called == []


async def test_drain_waits_for_everything_scheduled() -> None:
    manager = EventManager()
    handled: list[int] = []

    @manager.on("job")
    async def work(event: Event) -> None:
        await asyncio.sleep(0.01 * (event.data % 3))
        handled.append(event.data)

    futures = [manager.emit_nowait("job", n) for n in range(20)]
    await manager.drain()
    assert sorted(handled) == list(range(20))
    assert all(f.done() for f in futures)
    await manager.drain()  # nothing left: returns at once


async def test_drain_also_waits_for_events_scheduled_while_draining() -> None:
    manager = EventManager()
    handled: list[str] = []

    @manager.on("first")
    async def chain(event: Event) -> None:
        await asyncio.sleep(0)
        manager.emit_nowait("second")

    manager.on("second", lambda e: handled.append(e.type))
    manager.emit_nowait("first")
    await manager.drain()
    assert handled == ["second"]


async def test_async_with_drains_on_exit_then_closes() -> None:
    handled: list[int] = []
    async with EventManager() as manager:

        @manager.on("job")
        async def work(event: Event) -> None:
            await asyncio.sleep(0.01)
            handled.append(event.data)

        for n in range(5):
            manager.emit_nowait("job", n)
    assert sorted(handled) == list(range(5))
    with pytest.raises(ClosedError):
        await manager.emit("job", 6)


async def test_closed_manager_refuses_new_events() -> None:
    for buffer_size in (None, 3):
        manager = EventManager(buffer_size=buffer_size)
        called: list[int] = []
        manager.on("t", lambda e, called=called: called.append(1))
        await manager.close()
        with pytest.raises(ClosedError):
            await manager.emit("t")
        with pytest.raises(ClosedError):
            manager.emit_nowait("t")
        with pytest.raises(ClosedError):
            await manager.emit(Event("t"))
        await manager.close()  # closing twice is harmless
        assert called == []


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize("bad_type", ["a..b", ".a", "a.", "users.*", "#", "a b", "a.#b"])
async def test_bad_event_types_raise_pattern_error(bad_type: str) -> None:
    for manager in (EventManager(), EventManager(buffer_size=1)):
        called: list[int] = []
        manager.on("#", lambda e, called=called: called.append(1))
        with pytest.raises(PatternError):
            await manager.emit(bad_type)
        with pytest.raises(PatternError):
            await manager.emit(Event(bad_type))
        assert manager.in_flight == 0
        assert called == []


async def test_an_empty_or_non_str_type_is_a_type_error() -> None:
    manager = EventManager()
    with pytest.raises(TypeError):
        await manager.emit("")
    with pytest.raises(TypeError):
        await manager.emit(None)  # type: ignore[arg-type]


async def test_bad_event_types_are_pattern_errors_with_a_position() -> None:
    manager = EventManager()
    with pytest.raises(PatternError) as caught:
        await manager.emit("users..login")
    assert caught.value.position == 6


async def test_bad_data_is_refused_before_any_handler_runs() -> None:
    manager = EventManager()
    called: list[int] = []
    manager.on("t", lambda e: called.append(1))
    manager.on("t", lambda e: called.append(2))
    for bad in ({"x": math.nan}, {"when": object()}, {1: "int key"}):
        with pytest.raises(SerializationError):
            await manager.emit("t", bad)
    assert called == []


async def test_cancelling_an_emit_cancels_the_handlers_it_started() -> None:
    manager = EventManager()
    outcome: list[str] = []

    async def slow(event: Event) -> None:
        try:
            await asyncio.sleep(5)
            outcome.append("finished")
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    manager.on("t", slow)
    manager.on("t", slow)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(manager.emit("t"), timeout=0.05)
    await asyncio.sleep(0.01)
    assert outcome == ["cancelled", "cancelled"]
    assert not manager.dead_letters, "cancellation is not a handler failure"


async def _turns(n: int = 10) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.mark.parametrize("buffer_size", [None, 1])
async def test_a_cancelled_emit_ends_only_once_its_handlers_finished_their_cleanup(
    buffer_size: int | None,
) -> None:
    """It used to cancel its handler tasks and return at once: the buffer slot came back
    while a handler still ran its cleanup, so buffer_size=1 ran two handlers at a time."""
    manager = EventManager(buffer_size=buffer_size)
    started = asyncio.Event()
    cleanup_may_end = asyncio.Event()
    running: list[str] = []

    async def closes_a_connection(event: Event) -> None:
        running.append(event.data)
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            await cleanup_may_end.wait()  # cleanup that needs the loop
            running.remove(event.data)

    async def other(event: Event) -> None:
        await asyncio.sleep(30)

    manager.on("t", closes_a_connection)
    manager.on("t", other)
    emit = asyncio.ensure_future(manager.emit("t", "first"))
    await started.wait()
    emit.cancel()
    await _turns()
    assert not emit.done(), "the emit returned while its handler was cleaning up"
    if buffer_size is not None:
        assert manager.in_flight == 1
        started.clear()
        second = asyncio.ensure_future(manager.emit("t", "second"))
        await _turns()
        assert running == ["first"], "a second handler ran beside the first one's cleanup"
    cleanup_may_end.set()
    with pytest.raises(asyncio.CancelledError):
        await emit
    assert running == [] or running == ["second"]
    if buffer_size is not None:
        await started.wait()
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        assert running == [] and manager.in_flight == 0


async def test_a_cancelled_emit_waits_for_its_handlers_even_when_cancelled_again() -> None:
    manager = EventManager()
    cleanup_may_end = asyncio.Event()
    cleaned: list[str] = []

    async def slow_cleanup(event: Event) -> None:
        try:
            await asyncio.sleep(30)
        finally:
            await cleanup_may_end.wait()
            cleaned.append("done")

    manager.on("t", slow_cleanup)
    manager.on("t", slow_cleanup)
    emit = asyncio.ensure_future(manager.emit("t"))
    await _turns()
    emit.cancel()
    await _turns()
    emit.cancel()
    await _turns()
    assert not emit.done()
    cleanup_may_end.set()
    with pytest.raises(asyncio.CancelledError):
        await emit
    assert cleaned == ["done", "done"]


async def test_a_handler_failing_while_its_emit_is_cancelled_is_logged_not_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its exception used to be left in a task nobody awaited ('Task exception was never
    retrieved', at garbage collection, if ever); the emit's cancellation is unchanged."""
    manager = EventManager(retry_policy=NO_WAIT_RETRY)
    started = asyncio.Event()

    async def cleanup_fails(event: Event) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            raise ConnectionResetError("could not close the connection")

    async def other(event: Event) -> None:
        await asyncio.sleep(30)

    manager.on("t", cleanup_fails)
    manager.on("t", other)

    async def emit_with_timeout() -> None:
        async with asyncio.timeout(30) as deadline:
            task = asyncio.ensure_future(manager.emit("t"))
            await started.wait()
            deadline.reschedule(asyncio.get_running_loop().time())
            await task

    with caplog.at_level(logging.ERROR, logger="pepperpy.event"):
        with pytest.raises(TimeoutError):
            await emit_with_timeout()
    [record] = [r for r in caplog.records if "while its emit was cancelled" in r.getMessage()]
    assert "cleanup_fails" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ConnectionResetError)
    assert not manager.dead_letters, "a cancelled emit neither retries nor dead-letters"


@pytest.mark.parametrize("handlers", [1, 2])
async def test_a_handler_whose_own_await_is_cancelled_has_failed(handlers: int) -> None:
    # it awaited a future someone else cancelled: that handler failed (dead letter, as on
    # the bus); the emit is not cancelled and the other handler still runs
    manager = EventManager()
    ran: list[str] = []
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    gone.cancel()

    async def waits_on_gone(event: Event) -> None:
        await gone

    async def fine(event: Event) -> None:
        await asyncio.sleep(0)
        ran.append("fine")

    manager.on("t", waits_on_gone)
    if handlers == 2:
        manager.on("t", fine)
    async with asyncio.timeout(5):
        await manager.emit("t")
    assert ran == (["fine"] if handlers == 2 else [])
    [letter] = manager.dead_letters
    assert letter.handler is waits_on_gone
    assert isinstance(letter.exception, asyncio.CancelledError)


@pytest.mark.parametrize("handlers", [1, 2])
async def test_a_retry_whose_own_await_is_cancelled_has_failed_too(handlers: int) -> None:
    # the first try raises, the retry awaits a future someone else cancels: that try
    # failed like any other (dead letter once attempts run out); the emit returns
    manager = EventManager(retry_policy=RetryPolicy.fixed(max_attempts=2, base_delay=0))
    tries: list[int] = []
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    gone.cancel()

    async def flaky(event: Event) -> None:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("first try fails")
        await gone

    async def fine(event: Event) -> None:
        await asyncio.sleep(0)

    manager.on("t", flaky)
    if handlers == 2:
        manager.on("t", fine)
    async with asyncio.timeout(5):
        await manager.emit("t")
    assert len(tries) == 2
    [letter] = manager.dead_letters
    assert letter.handler is flaky and letter.attempts == 2
    assert isinstance(letter.exception, asyncio.CancelledError)


async def test_cancelling_an_emit_during_a_retry_cancels_it() -> None:
    manager = EventManager(retry_policy=RetryPolicy.fixed(max_attempts=3, base_delay=0))
    tries: list[int] = []

    async def flaky(event: Event) -> None:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("first try fails")
        await asyncio.sleep(5)

    manager.on("t", flaky)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(manager.emit("t"), timeout=0.05)
    assert len(tries) == 2, "the cancelled retry is not retried again"
    assert not manager.dead_letters, "cancelling the emit is not a handler failure"


async def test_cancelling_an_emit_nowait_future_before_it_starts_frees_its_slot() -> None:
    manager = EventManager(buffer_size=2)
    handled: list[int] = []

    @manager.on("x.y")
    async def handler(event: Event) -> None:
        await asyncio.sleep(0)
        handled.append(event.data)

    for n in range(2):
        manager.emit_nowait("x.y", n).cancel()
    assert manager.in_flight == 2
    await manager.drain()
    assert manager.in_flight == 0
    assert handled == []
    await asyncio.wait_for(manager.emit("x.y", 3), 2)
    first = manager.emit_nowait("x.y", 4)
    second = manager.emit_nowait("x.y", 5)
    await asyncio.sleep(0)
    second.cancel()  # cancelled while running: released once, not twice
    await manager.drain()
    assert first.done() and second.cancelled()
    assert manager.in_flight == 0
    assert sorted(handled) == [3, 4]


async def test_a_cancelled_waiting_emit_leaks_no_buffer_slot() -> None:
    manager = EventManager(buffer_size=1)
    gate = asyncio.Event()
    handled: list[int] = []

    @manager.on("job")
    async def work(event: Event) -> None:
        await gate.wait()
        handled.append(event.data)

    holder = asyncio.ensure_future(manager.emit("job", 1))
    waiting = asyncio.ensure_future(manager.emit("job", 2))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.set()
    await holder
    assert manager.in_flight == 0
    await manager.emit("job", 3)
    assert handled == [1, 3]


async def test_a_woken_waiter_cancelled_before_it_runs_passes_the_slot_on() -> None:
    manager = EventManager(buffer_size=1)
    gate = asyncio.Event()
    handled: list[str] = []

    @manager.on("job")
    async def work(event: Event) -> None:
        await gate.wait()
        handled.append(event.data)

    holder = asyncio.ensure_future(manager.emit("job", "holder"))
    await asyncio.sleep(0)
    first = asyncio.ensure_future(manager.emit("job", "first"))
    second = asyncio.ensure_future(manager.emit("job", "second"))
    await asyncio.sleep(0.01)
    wake = manager._grant_next

    def wake_then_cancel() -> None:  # the slot goes to "first", then "first" is cancelled
        manager._grant_next = wake  # type: ignore[method-assign]
        wake()
        first.cancel()

    manager._grant_next = wake_then_cancel  # type: ignore[method-assign]
    gate.set()
    await holder
    await asyncio.wait_for(second, timeout=2)
    assert first.cancelled()
    assert handled == ["holder", "second"]
    assert manager.in_flight == 0


async def test_the_buffer_bounds_events_in_flight_under_load() -> None:
    manager = EventManager(buffer_size=8)
    active = 0
    peak = 0
    handled: list[int] = []

    @manager.on("load.*")
    async def work(event: Event) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        for _ in range(event.data % 4):
            await asyncio.sleep(0)
        active -= 1
        handled.append(event.data)

    async def producer(start: int) -> None:
        for n in range(start, start + 100):
            if n % 3 == 0:
                try:
                    manager.emit_nowait("load.nowait", n)
                    continue
                except BufferFullError:
                    pass
            await manager.emit("load.wait", n)

    await asyncio.gather(*(producer(start) for start in range(0, 1000, 100)))
    await manager.drain()
    assert sorted(handled) == list(range(1000)), "every event handled exactly once"
    assert peak == 8, "the buffer was saturated but never exceeded"
    assert manager.in_flight == 0


# -- nothing scheduled is silently dropped ---------------------------------------------------


@pytest.mark.parametrize("started", [False, True], ids=["never-started", "running"])
def test_emit_nowait_events_cancelled_when_the_loop_ends_undrained_are_logged_by_name(
    caplog: pytest.LogCaptureFixture, started: bool
) -> None:
    """asyncio.run() cancels what is left when main returns: an emit_nowait nobody drained
    used to vanish without a log line, dead letter or on_error call."""
    manager = EventManager(buffer_size=10)
    began: list[int] = []

    @manager.on("invoice.send")
    async def send(event: Event) -> None:
        began.append(event.data["n"])
        await asyncio.sleep(3600)  # an HTTP call, say, still running at the end

    events = [Event("invoice.send", {"n": n}) for n in range(3)]
    futures: list[asyncio.Future[Event]] = []

    async def main() -> None:
        futures.extend(manager.emit_nowait(event) for event in events)
        if started:
            await asyncio.wait_for(_until(lambda: len(began) == 3), 5)
        # returns without drain(), close() or ``async with``

    with caplog.at_level(logging.WARNING, logger="pepperpy.event"):
        asyncio.run(main())
    assert all(future.cancelled() for future in futures)
    messages = [r.getMessage() for r in caplog.records if r.name == "pepperpy.event"]
    assert len(messages) == 3
    for event in events:
        [message] = [m for m in messages if event.id in m]
        assert "invoice.send" in message and "cancelled before it was handled" in message
        assert "drain()" in message
    assert manager.in_flight == 0


def test_emit_nowait_events_abandoned_with_a_closed_loop_are_logged_by_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A loop closed without cancelling its tasks: the warning names what it held."""
    manager = EventManager(buffer_size=10)
    manager.on("invoice.send", _forever)
    events = [Event("invoice.send", {"n": n}) for n in range(2)]
    loop = asyncio.new_event_loop()

    async def schedule() -> None:
        for event in events:
            manager.emit_nowait(event)
        await asyncio.sleep(0)  # the handlers start

    loop.run_until_complete(schedule())
    left = asyncio.all_tasks(loop)
    loop.close()  # without cancelling the deliveries: they never finish
    with caplog.at_level(logging.WARNING, logger="pepperpy.event"):
        asyncio.run(asyncio.wait_for(manager.drain(), 5))
    [message] = [r.getMessage() for r in caplog.records if "abandoned" in r.getMessage()]
    assert all(f"invoice.send ({event.id})" in message for event in events)
    for task in left:  # close the coroutines the dead loop left, here and quietly
        task._log_destroy_pending = False  # type: ignore[attr-defined]
        with contextlib.suppress(BaseException):
            task.get_coro().close()


async def _forever(event: Event) -> None:
    await asyncio.sleep(3600)


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.01)
