"""The built-in middleware, one by one and combined."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from pepperpy.event import (
    DeadLetter,
    DeadLetterMiddleware,
    DeduplicateMiddleware,
    Event,
    EventBus,
    EventManager,
    EventProcessor,
    EventValidator,
    LogMiddleware,
    MetricsCollector,
    RateLimitMiddleware,
    RetryMiddleware,
    RetryPolicy,
    TimeoutMiddleware,
    ValidateMiddleware,
    ValidationError,
)

NO_WAIT = RetryPolicy.fixed(max_attempts=3, base_delay=0)


def counting_processor(*middleware: Any, fail_times: int = 0) -> tuple[EventProcessor, list[Any]]:
    processor = EventProcessor().use(*middleware)
    calls: list[Any] = []

    @processor.handle("#")
    async def handler(event: Event) -> None:
        calls.append(event.data)
        if len(calls) <= fail_times:
            raise ConnectionError(f"failure {len(calls)}")

    return processor, calls


# -- retry ----------------------------------------------------------------------------


async def test_retry_recovers_from_transient_failures() -> None:
    processor, calls = counting_processor(RetryMiddleware(NO_WAIT), fail_times=2)
    await processor.process(Event("job", 1))
    assert calls == [1, 1, 1]


async def test_retry_gives_up_with_the_last_error() -> None:
    processor, calls = counting_processor(RetryMiddleware(NO_WAIT), fail_times=10)
    with pytest.raises(ConnectionError, match="failure 3"):
        await processor.process(Event("job", 1))
    assert len(calls) == 3


async def test_retry_only_retries_matching_exceptions() -> None:
    policy = RetryPolicy.fixed(max_attempts=5, base_delay=0, retry_on=(TimeoutError,))
    processor, calls = counting_processor(RetryMiddleware(policy), fail_times=10)
    with pytest.raises(ConnectionError):
        await processor.process(Event("job", 1))
    assert len(calls) == 1


async def test_retry_waits_per_policy() -> None:
    policy = RetryPolicy.fixed(max_attempts=3, base_delay=0.02)
    processor, _ = counting_processor(RetryMiddleware(policy), fail_times=2)
    start = time.monotonic()
    await processor.process(Event("job", 1))
    assert time.monotonic() - start >= 0.04


def test_retry_rejects_a_non_policy() -> None:
    with pytest.raises(TypeError):
        RetryMiddleware(3)  # type: ignore[arg-type]


# -- timeout --------------------------------------------------------------------------


async def test_timeout_cancels_slow_processing() -> None:
    processor = EventProcessor().use(TimeoutMiddleware(0.05))
    cancelled: list[bool] = []

    @processor.handle("slow")
    async def slow(event: Event) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    start = time.monotonic()
    with pytest.raises(TimeoutError, match="longer than 0.05s"):
        await processor.process(Event("slow"))
    assert time.monotonic() - start < 1
    assert cancelled == [True]


async def test_timeout_on_a_processor_attached_to_a_manager_beside_another_handler() -> None:
    manager = EventManager()
    processor = EventProcessor().use(TimeoutMiddleware(0.05))

    @processor.handle("job.*")
    async def slow(event: Event) -> None:
        await asyncio.sleep(10)

    processor.attach(manager, "job.*")
    audit: list[str] = []

    @manager.on("job.run")
    async def auditor(event: Event) -> None:
        await asyncio.sleep(0.1)
        audit.append(event.id)

    await asyncio.wait_for(manager.emit("job.run"), 3)  # the emit itself is not cancelled
    assert len(audit) == 1
    assert [type(d.exception) for d in manager.dead_letters] == [TimeoutError]


async def test_timeout_lets_fast_processing_through() -> None:
    processor, calls = counting_processor(TimeoutMiddleware(1.0))
    await processor.process(Event("fast", 1))
    assert calls == [1]


async def test_retry_around_timeout_retries_timeouts() -> None:
    processor = EventProcessor().use(RetryMiddleware(NO_WAIT), TimeoutMiddleware(0.02))
    attempts: list[int] = []

    @processor.handle("x")
    async def sometimes_slow(event: Event) -> None:
        attempts.append(1)
        if len(attempts) < 2:
            await asyncio.sleep(1)

    await processor.process(Event("x"))
    assert len(attempts) == 2


@pytest.mark.parametrize(
    ("bad", "error"), [(0, ValueError), (-1, ValueError), (True, TypeError), ("1", TypeError)]
)
def test_timeout_rejects_bad_seconds(bad: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="seconds must be"):
        TimeoutMiddleware(bad)


# -- deduplicate ----------------------------------------------------------------------


async def test_deduplicate_skips_a_redelivered_event() -> None:
    dedupe = DeduplicateMiddleware()
    processor, calls = counting_processor(dedupe)
    event = Event("order.paid", {"n": 1})
    await processor.process(event)
    await processor.process(event)
    copy = Event.from_json(event.to_json())  # the same id arriving over the wire
    await processor.process(copy)
    await processor.process(Event("order.paid", {"n": 2}))
    assert calls == [{"n": 1}, {"n": 2}]
    assert dedupe.skipped == 2
    assert dedupe.seen(event.id)


async def test_deduplicate_forgets_failed_events_so_they_can_run_again() -> None:
    processor, calls = counting_processor(DeduplicateMiddleware(), fail_times=1)
    event = Event("job", 7)
    with pytest.raises(ConnectionError):
        await processor.process(event)
    await processor.process(event)
    assert calls == [7, 7]


async def test_deduplicate_memory_is_bounded() -> None:
    dedupe = DeduplicateMiddleware(max_size=10)
    processor, calls = counting_processor(dedupe)
    events = [Event("n", n) for n in range(25)]
    for event in events:
        await processor.process(event)
    assert len(dedupe) <= 10
    await processor.process(events[0])  # forgotten (oldest evicted): runs again
    await processor.process(events[-1])  # still remembered: skipped
    assert len(calls) == 26


async def test_deduplicate_entries_expire() -> None:
    dedupe = DeduplicateMiddleware(ttl=0.02)
    processor, calls = counting_processor(dedupe)
    event = Event("n", 1)
    await processor.process(event)
    await asyncio.sleep(0.04)
    assert not dedupe.seen(event.id)
    await processor.process(event)
    assert calls == [1, 1]


async def test_deduplicate_skips_a_concurrent_duplicate() -> None:
    processor = EventProcessor().use(DeduplicateMiddleware())
    runs: list[int] = []

    @processor.handle("x")
    async def slow(event: Event) -> None:
        runs.append(1)
        await asyncio.sleep(0.02)

    event = Event("x")
    await asyncio.gather(processor.process(event), processor.process(event))
    assert runs == [1]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"ttl": 0}, ValueError), ({"max_size": 0}, ValueError), ({"ttl": "1"}, TypeError)],
)
def test_deduplicate_rejects_bad_options(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error, match=next(iter(kwargs))):
        DeduplicateMiddleware(**kwargs)


# -- validate -------------------------------------------------------------------------


async def test_validate_passes_checked_and_upcast_data_on() -> None:
    validator = EventValidator()

    @validator.schema("user.created", version=1)
    class V1:
        name: str

    @validator.schema("user.created", version=2)
    class V2:
        first: str
        last: str

    @validator.upcaster("user.created", from_version=1)
    def split(data: dict[str, Any]) -> dict[str, Any]:
        first, _, last = data["name"].partition(" ")
        return {"first": first, "last": last}

    processor = EventProcessor().use(ValidateMiddleware(validator))
    seen: list[Event] = []
    processor.handle("user.*", seen.append)
    original = Event("user.created", {"name": "Ada Lovelace"}, {"trace": "t1"}, version=1)
    await processor.process(original)
    (got,) = seen
    assert got.version == 2
    assert got.data == {"first": "Ada", "last": "Lovelace"}
    assert got.id == original.id and got.metadata == {"trace": "t1"}


async def test_validate_stops_invalid_events() -> None:
    validator = EventValidator()

    @validator.schema("user.created")
    class Schema:
        name: str

    processor, calls = counting_processor(ValidateMiddleware(validator))
    with pytest.raises(ValidationError) as info:
        await processor.process(Event("user.created", {"name": 3}))
    assert info.value.errors[0].path == "name"
    assert calls == []


# -- measure --------------------------------------------------------------------------


async def test_measure_middleware_counts_successes_and_failures() -> None:
    collector = MetricsCollector()
    processor, _ = counting_processor(collector.measure("processing"), fail_times=1)
    with pytest.raises(ConnectionError):
        await processor.process(Event("a"))
    await processor.process(Event("a"))
    snapshot = collector.get_metrics("processing")
    assert (snapshot.count, snapshot.errors) == (2, 1)


@pytest.mark.parametrize("fails", [False, True])
async def test_measure_middleware_records_how_long_the_rest_of_the_chain_took(
    fails: bool,
) -> None:
    collector = MetricsCollector()
    processor = EventProcessor().use(collector.measure("processing"))

    @processor.handle("job.run")
    async def job(event: Event) -> None:
        await asyncio.sleep(0.05)
        if fails:
            raise ConnectionError("down")

    if fails:
        with pytest.raises(ConnectionError):
            await processor.process(Event("job.run", 1))
    else:
        await processor.process(Event("job.run", 1))
    snapshot = collector.get_metrics("processing")
    assert (snapshot.count, snapshot.errors) == (1, int(fails))
    # milliseconds; a lower bound only: the handler slept 50 ms, a busy machine adds more
    assert snapshot.avg_latency >= 40
    assert snapshot.p50 >= 40
    assert snapshot.min_latency >= 40


async def test_measure_decorated_middleware_measures_the_middleware() -> None:
    collector = MetricsCollector()
    processor = EventProcessor()

    @processor.middleware
    @collector.measure("chain")
    async def passthrough(event: Event, next_handler: Any) -> None:
        await next_handler(event)

    await processor.process(Event("a"))
    assert collector.get_metrics("chain").count == 1


# -- log ------------------------------------------------------------------------------


async def test_log_writes_structured_records(caplog: pytest.LogCaptureFixture) -> None:
    processor, _ = counting_processor(LogMiddleware("test.processing"), fail_times=1)
    caplog.set_level(logging.INFO, logger="test.processing")
    failing = Event("job.run", 1)
    with pytest.raises(ConnectionError):
        await processor.process(failing)
    ok = Event("job.run", 2)
    await processor.process(ok)
    error_record, ok_record = [r for r in caplog.records if r.name == "test.processing"]
    assert error_record.levelno == logging.ERROR and error_record.exc_info is not None
    assert error_record.__dict__["outcome"] == "error"
    assert error_record.__dict__["event_id"] == failing.id
    assert ok_record.levelno == logging.INFO
    assert ok_record.__dict__["outcome"] == "ok"
    assert ok_record.__dict__["event_type"] == "job.run"


@pytest.mark.parametrize("fails", [False, True])
async def test_log_records_how_long_the_event_took(
    caplog: pytest.LogCaptureFixture, fails: bool
) -> None:
    processor = EventProcessor().use(LogMiddleware("test.processing"))

    @processor.handle("job.run")
    async def job(event: Event) -> None:
        await asyncio.sleep(0.05)
        if fails:
            raise ConnectionError("down")

    caplog.set_level(logging.INFO, logger="test.processing")
    if fails:
        with pytest.raises(ConnectionError):
            await processor.process(Event("job.run", 1))
    else:
        await processor.process(Event("job.run", 1))
    (record,) = [r for r in caplog.records if r.name == "test.processing"]
    assert record.__dict__["outcome"] == ("error" if fails else "ok")
    # a lower bound only: the handler slept 50 ms, a busy machine adds more
    assert record.__dict__["duration_ms"] >= 40


# -- rate limit -----------------------------------------------------------------------


async def test_rate_limit_spaces_events_out_without_dropping_any() -> None:
    processor, calls = counting_processor(RateLimitMiddleware(50, burst=1))
    start = time.monotonic()
    await asyncio.gather(*(processor.process(Event("n", n)) for n in range(6)))
    elapsed = time.monotonic() - start
    assert sorted(calls) == list(range(6))
    assert elapsed >= 5 / 50 * 0.9  # 1 immediately, then 5 at 50/s


async def test_rate_limit_burst_passes_at_once() -> None:
    processor, calls = counting_processor(RateLimitMiddleware(1, burst=5))
    start = time.monotonic()
    for n in range(5):
        await processor.process(Event("n", n))
    assert time.monotonic() - start < 0.5
    assert len(calls) == 5


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"rate": 0}, ValueError), ({"rate": 1, "burst": 0}, ValueError), ({"rate": "x"}, TypeError)],
)
def test_rate_limit_rejects_bad_options(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        RateLimitMiddleware(**kwargs)


# -- dead letter ----------------------------------------------------------------------


async def test_dead_letter_records_what_retries_could_not_fix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    received: list[DeadLetter] = []
    dead = DeadLetterMiddleware()

    @dead.on_error
    async def collect(letter: DeadLetter) -> None:
        received.append(letter)

    processor, calls = counting_processor(dead, RetryMiddleware(NO_WAIT), fail_times=10)
    event = Event("job", 1)
    await processor.process(event)  # does not raise: dead-lettered
    assert len(calls) == 3
    (letter,) = dead.dead_letters
    assert letter.event is event and letter.attempts == 3
    assert isinstance(letter.exception, ConnectionError)
    assert received == [letter]
    assert any("dead-lettered" in r.getMessage() for r in caplog.records)


async def test_dead_letter_without_retry_counts_one_attempt() -> None:
    dead = DeadLetterMiddleware(lambda letter: None)
    processor, _ = counting_processor(dead, fail_times=1)
    await processor.process(Event("job", 1))
    assert dead.dead_letters[0].attempts == 1


async def test_dead_letter_ignores_retries_of_a_processor_a_handler_calls() -> None:
    # the inner processor's RetryMiddleware inherits the outer DeadLetterMiddleware's
    # context: its tries are its own and must not become the outer letter's attempts
    inner = EventProcessor().use(RetryMiddleware(NO_WAIT))
    tries: list[int] = []

    @inner.handle("#")
    def flaky(event: Event) -> None:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError("flaky")

    dead = DeadLetterMiddleware()
    outer = EventProcessor().use(dead)

    @outer.handle("#")
    async def handler(event: Event) -> None:
        await inner.process(event)  # succeeds on its third try
        raise ValueError("outer handler fails once")

    await outer.process(Event("job", 1))
    assert len(tries) == 3
    assert dead.dead_letters[0].attempts == 1


async def test_dead_letter_names_the_handler_that_failed() -> None:
    dead = DeadLetterMiddleware()
    processor = EventProcessor().use(dead, RetryMiddleware(NO_WAIT))

    @processor.handle("job")
    def broken(event: Event) -> None:
        raise KeyError("k")

    await processor.process(Event("job", 1))
    (letter,) = dead.dead_letters
    assert letter.handler is broken and letter.attempts == 3


async def test_dead_letter_per_failed_handler_when_several_fail() -> None:
    dead = DeadLetterMiddleware()
    processor = EventProcessor().use(dead, RetryMiddleware(NO_WAIT))

    @processor.handle("job")
    async def first(event: Event) -> None:
        raise ConnectionError("first")

    @processor.handle("#")
    def second(event: Event) -> None:
        raise ConnectionError("second")

    @processor.handle("job")
    def fine(event: Event) -> None:
        pass

    await processor.process(Event("job", 1))
    letters = {letter.handler: letter for letter in dead.dead_letters}
    assert set(letters) == {first, second}
    assert str(letters[first].exception) == "first"
    assert str(letters[second].exception) == "second"
    assert all(letter.attempts == 3 for letter in letters.values())


async def test_dead_letter_of_a_timeout_names_the_handler_that_overran() -> None:
    dead = DeadLetterMiddleware()
    processor = EventProcessor().use(dead, TimeoutMiddleware(0.01))

    @processor.handle("job")
    async def slow(event: Event) -> None:
        await asyncio.sleep(1)

    await processor.process(Event("job", 1))
    (letter,) = dead.dead_letters
    assert letter.handler is slow and isinstance(letter.exception, TimeoutError)


async def test_dead_letters_of_a_timeout_name_each_handler_it_cut_off() -> None:
    dead = DeadLetterMiddleware()
    processor = EventProcessor().use(dead, TimeoutMiddleware(0.05))
    finished: list[str] = []

    @processor.handle("job")
    async def slow(event: Event) -> None:
        await asyncio.sleep(1)

    @processor.handle("job")
    async def slower(event: Event) -> None:
        await asyncio.sleep(2)

    @processor.handle("job")
    async def quick(event: Event) -> None:
        finished.append("quick")

    await processor.process(Event("job", 1))
    assert finished == ["quick"]
    letters = {letter.handler: letter for letter in dead.dead_letters}
    assert set(letters) == {slow, slower}  # not the chain, and not the handler that finished
    assert all(isinstance(letter.exception, TimeoutError) for letter in letters.values())


async def test_dead_letter_republishes_to_a_bus() -> None:
    bus = EventBus(retry_policy=RetryPolicy.NONE)
    letters: list[Event] = []

    @bus.subscribe("deadletter.#")
    async def on_dead(event: Event) -> None:
        letters.append(event)

    processor, _ = counting_processor(DeadLetterMiddleware(bus=bus), fail_times=1)
    event = Event("orders.paid", {"n": 1})
    await processor.process(event)
    (dead,) = letters
    assert dead.type == "deadletter.orders.paid"
    assert dead.data == {"n": 1}
    assert dead.metadata["dlid"] == event.id
    assert dead.metadata["dlreason"].startswith("ConnectionError")
    await bus.close()


async def test_dead_letter_survives_a_failing_callback(caplog: pytest.LogCaptureFixture) -> None:
    def broken(letter: DeadLetter) -> None:
        raise RuntimeError("callback bug")

    dead = DeadLetterMiddleware(broken)
    processor, _ = counting_processor(dead, fail_times=1)
    await processor.process(Event("job", 1))
    assert len(dead.dead_letters) == 1
    assert any("callback" in r.getMessage() for r in caplog.records)


# -- combined -------------------------------------------------------------------------


async def test_a_full_stack_processes_a_stream_past_failures() -> None:
    collector = MetricsCollector()
    dead = DeadLetterMiddleware()
    processor = EventProcessor().use(
        LogMiddleware(),
        dead,
        collector.measure("orders"),
        RetryMiddleware(NO_WAIT),
        TimeoutMiddleware(1.0),
        DeduplicateMiddleware(),
    )
    handled: list[int] = []

    @processor.handle("orders.*")
    def handle(event: Event) -> None:
        if event.data["n"] == 3:
            raise ValueError("poison")
        handled.append(event.data["n"])

    events = [Event("orders.placed", {"n": n}) for n in range(6)]
    for event in events + events[:2]:
        await processor.process(event)
    assert handled == [0, 1, 2, 4, 5]
    assert [d.event.data["n"] for d in dead.dead_letters] == [3]
    snapshot = collector.get_metrics("orders")
    assert snapshot.count == 8 and snapshot.errors == 1


async def test_timeout_does_not_rename_a_handlers_own_timeout_error() -> None:
    processor = EventProcessor().use(TimeoutMiddleware(5.0))

    @processor.handle("x")
    def fail(event: Event) -> None:
        raise TimeoutError("upstream API timed out")

    with pytest.raises(TimeoutError, match="upstream API"):
        await processor.process(Event("x"))


async def test_timeout_expires_only_the_slow_events_among_many() -> None:
    processor = EventProcessor().use(TimeoutMiddleware(0.05))

    @processor.handle("job")
    async def work(event: Event) -> None:
        await asyncio.sleep(event.data)

    delays = [0.0, 0.2, 0.01, 0.3, 0.02, 0.0]
    results = await asyncio.gather(
        *(processor.process(Event("job", d)) for d in delays), return_exceptions=True
    )
    timed_out = [isinstance(r, TimeoutError) for r in results]
    assert timed_out == [False, True, False, True, False, False]
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_timeout_lets_an_outside_cancellation_through() -> None:
    processor = EventProcessor().use(TimeoutMiddleware(5.0))
    started = asyncio.Event()

    @processor.handle("job")
    async def work(event: Event) -> None:
        started.set()
        await asyncio.sleep(10)

    task = asyncio.ensure_future(processor.process(Event("job")))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_timeout_when_the_handler_swallows_the_cancellation() -> None:
    processor = EventProcessor().use(TimeoutMiddleware(0.02))
    outcome: list[str] = []

    @processor.handle("job")
    async def stubborn(event: Event) -> None:
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            outcome.append("swallowed")

    async def run() -> int:
        await processor.process(Event("job"))
        task = asyncio.current_task()
        assert task is not None
        await asyncio.sleep(0)  # no cancellation left pending on the task
        return task.cancelling()

    assert await asyncio.ensure_future(run()) == 0
    assert outcome == ["swallowed"]


def test_one_timeout_middleware_serves_successive_event_loops() -> None:
    timeout = TimeoutMiddleware(0.02)
    processor = EventProcessor().use(timeout)

    @processor.handle("job")
    async def work(event: Event) -> None:
        await asyncio.sleep(event.data)

    asyncio.run(processor.process(Event("job", 0)))  # leaves the watchdog armed on loop 1
    for _ in range(2):
        with pytest.raises(TimeoutError):
            asyncio.run(processor.process(Event("job", 1)))


async def test_log_adds_custom_fields(caplog: pytest.LogCaptureFixture) -> None:
    log = LogMiddleware("test.fields", fields=lambda e: {"tenant": e.metadata["tenant"]})
    processor, _ = counting_processor(log)
    caplog.set_level(logging.INFO, logger="test.fields")
    await processor.process(Event("job.run", 1, {"tenant": "acme"}))
    (record,) = [r for r in caplog.records if r.name == "test.fields"]
    assert record.__dict__["tenant"] == "acme"


async def test_retry_retries_a_group_of_retryable_handler_failures() -> None:
    policy = RetryPolicy.fixed(max_attempts=3, base_delay=0, retry_on=(ConnectionError,))
    processor = EventProcessor().use(RetryMiddleware(policy))
    calls = {"a": 0, "b": 0}

    def flaky(name: str) -> Any:
        def handler(event: Event) -> None:
            calls[name] += 1
            if calls[name] < 2:
                raise ConnectionError(name)

        return handler

    processor.handle("x", flaky("a"))
    processor.handle("x", flaky("b"))
    await processor.process(Event("x"))
    assert calls == {"a": 2, "b": 2}

    @processor.handle("y")
    def broken(event: Event) -> None:
        raise ValueError("not retryable")

    processor.handle("y", flaky("a"))
    calls["a"] = 0
    with pytest.raises(ExceptionGroup):
        await processor.process(Event("y"))
    assert calls["a"] == 1  # a group holding a non-retryable error is not retried


async def test_validate_keeps_where_a_stored_event_came_from() -> None:
    from pepperpy.event import EventStore

    validator = EventValidator()
    validator.register("tick", {"type": "object", "properties": {"n": {"type": "integer"}}})
    store = EventStore()
    await store.append("clock", {"type": "tick", "data": {"n": 1}})
    (stored,) = await store.get_stream("clock")
    processor = EventProcessor().use(ValidateMiddleware(validator))
    seen: list[Event] = []
    processor.handle("tick", seen.append)
    await processor.process(stored)
    (got,) = seen
    assert (got.stream, got.position, got.global_position) == ("clock", 0, stored.global_position)
    assert got.recorded_at == stored.recorded_at and got.id == stored.id
    await store.close()
