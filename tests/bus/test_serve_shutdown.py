"""What a consumer service says and does while it starts and stops (operations audit).

* ``serve(shutdown_timeout=...)``: while it closes, serve() logs the deliveries it waits
  for (how many, which handler, which event) at once and every few seconds; at the
  deadline it cancels them, logs them as a WARNING and raises ``TimeoutError``.
* A signal while serve() is still connecting gives the start up: one log line, exit 0.
* ``start()`` logs once when the broker has not answered after a moment.
* A retried handler failure is logged (a WARNING, no traceback) by the bus and by the
  manager, and the dead-letter line says where the event went.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from pathlib import Path

import pytest

from pepperpy.event import Event, EventBus, EventManager, RetryPolicy, _bus_loop, _bus_serve
from pepperpy.event.transports import MemoryTransport
from tests.bus.test_serve import _pending, _until
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys
from tests.script_process import DEADLINE, ScriptProcess

WORKER = Path(__file__).with_name("serve_shutdown_worker.py")


def _messages(caplog: pytest.LogCaptureFixture, level: int | None = None) -> list[str]:
    return [r.getMessage() for r in caplog.records if level is None or r.levelno == level]


# -- closing: what serve() waits for, and its deadline ---------------------------------------


async def test_closing_says_what_it_waits_for_then_how_long_it_took(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, "pepperpy.event.bus")
    monkeypatch.setattr(_bus_serve, "PROGRESS_EVERY", 0.01)
    bus = EventBus(retry_policy=RetryPolicy.NONE)
    started = asyncio.Event()
    release = asyncio.Event()

    @bus.subscribe("orders.*", group="billing")
    async def slow(event: Event) -> None:
        started.set()
        await release.wait()

    serving = asyncio.create_task(bus.serve(signals=()))
    publishing = asyncio.create_task(bus.publish("orders.placed", 1))
    await asyncio.wait_for(started.wait(), DEADLINE)
    await _until(lambda: bus._serving)
    closing = asyncio.create_task(bus.close())
    await _until(lambda: any("still closing" in m for m in _messages(caplog)))
    release.set()
    await asyncio.wait_for(serving, DEADLINE)
    await closing
    event = await publishing
    lines = _messages(caplog)
    [first] = [line for line in lines if "close() was called" in line]
    assert first.startswith(
        "EventBus on memory://: close() was called; closing after the 1 delivery in "
        f"progress: test_closing_says_what_it_waits_for_then_how_long_it_took.<locals>.slow "
        f"on orders.placed {event.id} ("
    )
    [still, *_] = [line for line in lines if "still closing" in line]
    assert "waiting for 1 delivery in progress: " in still and event.id in still
    assert "shutdown_timeout" not in still  # none set
    assert lines[-1].startswith("EventBus on memory://: closed in ") and lines[-1].endswith(" s")


async def test_closing_with_nothing_in_progress_says_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "pepperpy.event.bus")
    bus = EventBus()
    bus.subscribe("orders.*", lambda event: None)
    serving = asyncio.create_task(bus.serve(signals=(), shutdown_timeout=30))
    await _until(lambda: bus._serving and bus._started)
    await bus.close()
    await serving
    lines = _messages(caplog)
    assert lines[0].endswith("until close() (signals=()); shutdown_timeout 30 s")
    assert lines[1] == (
        "EventBus on memory://: close() was called; closing (no delivery in progress)"
    )


@pytest.mark.parametrize("key", [None, "customer-1"])
async def test_shutdown_timeout_cancels_the_deliveries_still_running(
    key: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "pepperpy.event.bus")
    bus = EventBus(retry_policy=RetryPolicy.NONE)
    started = asyncio.Event()
    cancelled: list[int] = []

    @bus.subscribe("orders.*", group="billing")
    async def stuck(event: Event) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(event.data)
            raise

    serving = asyncio.create_task(bus.serve(signals=(), shutdown_timeout=0.2))
    publishing = asyncio.create_task(bus.publish("orders.placed", 7, key=key))
    await asyncio.wait_for(started.wait(), DEADLINE)
    await _until(lambda: bus._serving)
    closing = asyncio.create_task(bus.close())
    with pytest.raises(TimeoutError, match=r"shutdown_timeout \(0.2 s\) passed with 1 delivery"):
        await asyncio.wait_for(serving, DEADLINE)
    await asyncio.wait_for(closing, DEADLINE)  # the shutdown completed
    event = await publishing
    assert cancelled == [7]
    assert not bus.dead_letters  # cancelled at shutdown: no failure
    [warning] = _messages(caplog, logging.WARNING)
    assert warning.startswith(
        "EventBus on memory://: shutdown_timeout (0.2 s) passed; cancelling 1 delivery "
        "still in progress: test_shutdown_timeout_cancels_the_deliveries_still_running."
        f"<locals>.stuck on orders.placed {event.id} ("
    )
    assert warning.endswith("; memory:// loses their events")
    assert "1 delivery cancelled at shutdown_timeout" in _messages(caplog)[-1]
    # the transport does not report the cancellation again, as an ERROR with a traceback
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.redis
@pytest.mark.parametrize("group", [None, "billing"])
async def test_past_the_shutdown_timeout_redis_logs_no_error_of_its_own(
    redis_url: str, group: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """serve() logs the cut-off as a WARNING; the Redis group worker (or listener)
    whose delivery it cancelled no longer logs it again as an ERROR with a traceback."""
    from pepperpy.event.transports.redis import RedisTransport

    namespace = unique_name("pepcutoff")
    bus = EventBus(
        transport=RedisTransport(redis_url, namespace=namespace, partitions=1),
        retry_policy=RetryPolicy.NONE,
    )
    started = asyncio.Event()

    @bus.subscribe("orders.*", group=group)
    async def stuck(event: Event) -> None:
        started.set()
        await asyncio.Event().wait()

    try:
        serving = asyncio.create_task(bus.serve(signals=(), shutdown_timeout=0.2))
        await _until(lambda: bus._serving)
        await bus.publish("orders.placed", 1)
        await asyncio.wait_for(started.wait(), DEADLINE)
        closing = asyncio.create_task(bus.close())
        with pytest.raises(TimeoutError, match="shutdown_timeout"):
            await asyncio.wait_for(serving, DEADLINE)
        await asyncio.wait_for(closing, DEADLINE)
        assert any("cancelling 1 delivery" in m for m in _messages(caplog, logging.WARNING))
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        await delete_redis_keys(redis_url, f"{namespace}:*")


async def test_no_delivery_starts_once_the_shutdown_timeout_passed() -> None:
    bus = EventBus(retry_policy=RetryPolicy.NONE)
    ran: list[int] = []
    bus.subscribe("orders.*", lambda event: ran.append(event.data))
    await bus.start()
    bus._cut_off = True
    [sub] = bus._subscriptions
    from pepperpy.event.transports import NotDelivered

    with pytest.raises(NotDelivered, match="shutdown_timeout"):
        await sub.deliver(Event(type="orders.placed", data=1))
    assert ran == []
    await bus.close()


async def test_a_bad_shutdown_timeout_is_refused() -> None:
    bus = EventBus()
    with pytest.raises(ValueError, match="shutdown_timeout"):
        await bus.serve(shutdown_timeout=-1)
    with pytest.raises(TypeError, match="shutdown_timeout"):  # a wrong type
        await bus.serve(shutdown_timeout=True)  # type: ignore[arg-type]
    await bus.close()


async def test_sigterm_past_the_shutdown_timeout_ends_the_process_non_zero() -> None:
    async with ScriptProcess(WORKER, "memory://", "-", "0.5") as service:
        await service.wait_for("EventBus serving on memory://", "handling 1")
        assert service.saw("; shutdown_timeout 0.5 s")
        service.process.send_signal(signal.SIGTERM)
        assert await service.exit_code(traceback=True) == 1
    said = "\n".join(service.lines)
    assert "SIGTERM received; closing after the 1 delivery in progress: " in said
    assert "WARNING EventBus on memory://: shutdown_timeout (0.5 s) passed; cancelling" in said
    assert "main.<locals>.stuck on orders.placed " in said
    assert service.saw("cancelled 1") and not service.saw("exited")
    assert service.lines[-1].startswith("TimeoutError: EventBus.serve(): shutdown_timeout")


@pytest.mark.redis
async def test_past_the_shutdown_timeout_redis_keeps_the_event(redis_url: str) -> None:
    namespace = unique_name("pepserveto")
    try:
        async with ScriptProcess(WORKER, redis_url, namespace, "0.5") as service:
            await service.wait_for("EventBus serving on RedisTransport")
            producer = EventBus(transport=f"{redis_url}?namespace={namespace}")
            async with producer:
                await producer.publish("orders.placed", {"n": 1}, key="customer-1")
            await service.wait_for("handling 1")
            service.process.send_signal(signal.SIGTERM)
            assert await service.exit_code(traceback=True) == 1
            assert service.saw("the broker delivers their events again")
            assert service.saw("cancelled 1")
        assert await _pending(redis_url, namespace) == 1  # not acknowledged: delivered again
    finally:
        await delete_redis_keys(redis_url, f"{namespace}:*")


# -- starting: a broker that does not answer --------------------------------------------------


class _Unanswered(MemoryTransport):
    """A transport whose start() waits until released, as one retrying a broker would."""

    connect_timeout = 12.0

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def start(self) -> None:
        await self.release.wait()


async def test_start_says_once_that_it_is_still_connecting(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, "pepperpy.event.bus")
    monkeypatch.setattr(_bus_loop, "STILL_CONNECTING_AFTER", 0.01)
    transport = _Unanswered()
    bus = EventBus(transport=transport)
    starting = asyncio.create_task(bus.start())
    await _until(lambda: _messages(caplog, logging.WARNING))
    transport.release.set()
    await asyncio.wait_for(starting, DEADLINE)
    [warning] = _messages(caplog, logging.WARNING)
    assert warning.startswith("EventBus: still connecting to memory:// after ")
    assert warning.endswith(" s; giving up after 12 s (connect_timeout)")
    await bus.close()


async def test_a_prompt_start_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "pepperpy.event.bus")
    async with EventBus() as bus:
        await bus.publish("orders.placed", 1)
    assert not _messages(caplog, logging.WARNING)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there any more: connections are refused


async def test_start_on_an_unreachable_redis_says_where_and_until_when(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("redis")
    caplog.set_level(logging.INFO, "pepperpy.event.bus")
    port = _closed_port()
    bus = EventBus(transport=f"redis://127.0.0.1:{port}/0?connect_timeout=30")
    starting = asyncio.create_task(bus.start())
    await _until(lambda: _messages(caplog, logging.WARNING))
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    await bus.close()
    [warning] = _messages(caplog, logging.WARNING)
    assert warning.startswith(
        f"EventBus: still connecting to RedisTransport(redis://127.0.0.1:{port}/0"
    )
    assert warning.endswith("; giving up after 30 s (connect_timeout)")


async def test_sigterm_while_connecting_ends_serve_with_one_line_and_exit_0() -> None:
    pytest.importorskip("redis")
    url = f"redis://127.0.0.1:{_closed_port()}/0?connect_timeout=60"
    async with ScriptProcess(WORKER, url, "pepnowhere", "-") as service:
        await service.wait_for("still connecting to RedisTransport")  # serve() is in start()
        service.process.send_signal(signal.SIGTERM)
        assert await service.exit_code() == 0
    assert service.saw("SIGTERM received while connecting; closing")
    assert service.lines[-1] == "exited"
    assert not service.saw("EventBus serving")


async def test_close_while_connecting_ends_serve() -> None:
    transport = _Unanswered()
    bus = EventBus(transport=transport)
    serving = asyncio.create_task(bus.serve(signals=()))
    await _until(lambda: bus._serving)  # connecting: _Unanswered never answers
    await asyncio.wait_for(bus.close(), DEADLINE)
    await asyncio.wait_for(serving, DEADLINE)  # returns: the start was given up
    assert not bus._started


# -- retries and dead letters -----------------------------------------------------------------


async def test_the_bus_logs_each_retried_failure_and_where_the_dead_letter_went(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "pepperpy.event")
    bus = EventBus(retry_policy=RetryPolicy.fixed(max_attempts=3, base_delay=0))
    dead: list[Event] = []
    arrived = asyncio.Event()

    @bus.subscribe("jobs.*", group="workers")
    async def work(event: Event) -> None:
        raise ValueError("boom")

    @bus.subscribe("deadletter.jobs.*")
    async def keep(event: Event) -> None:
        dead.append(event)
        arrived.set()

    async with bus:
        event = await bus.publish("jobs.run", 1)
        await asyncio.wait_for(arrived.wait(), DEADLINE)
    name = f"{test_the_bus_logs_each_retried_failure_and_where_the_dead_letter_went.__qualname__}"
    retried = [r for r in caplog.records if r.getMessage().endswith("retrying in 0 s")]
    assert [r.getMessage() for r in retried] == [
        f"bus handler {name}.<locals>.work failed for jobs.run ({event.id}) on attempt {n} "
        "of 3 (ValueError: boom); retrying in 0 s"
        for n in (1, 2)
    ]
    # a WARNING for the first retry of a handler and error type a minute, then DEBUG
    assert [r.levelno for r in retried] == [logging.WARNING, logging.DEBUG]
    assert all(r.exc_info is None for r in retried)  # one line each, no traceback
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.getMessage() == (
        f"bus handler {name}.<locals>.work failed for jobs.run ({event.id}) after 3 "
        f"attempt(s); dead-lettering it to deadletter.jobs.run as {dead[0].id} (group workers)"
    )
    assert error.exc_info is not None


async def test_a_failing_dead_letter_handler_says_it_is_not_dead_lettered_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, "pepperpy.event.bus")
    bus = EventBus(retry_policy=RetryPolicy.NONE)

    @bus.subscribe("deadletter.#")
    async def broken(event: Event) -> None:
        raise ValueError("also broken")

    async with bus:
        await bus.publish("deadletter.jobs.run", 1)
    [error] = _messages(caplog, logging.ERROR)
    assert error.endswith("after 1 attempt(s); not dead-lettered again: it is a dead letter")


async def test_the_manager_logs_each_retried_failure_too(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "pepperpy.event")
    manager = EventManager(retry_policy=RetryPolicy.fixed(max_attempts=3, base_delay=0))
    calls: list[int] = []

    @manager.on("jobs.run")
    async def flaky(event: Event) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise ValueError(f"failure {len(calls)}")

    event = await manager.emit("jobs.run", 1)
    await manager.close()
    assert len(calls) == 3 and not manager.dead_letters  # it succeeded on its 3rd attempt
    name = f"{test_the_manager_logs_each_retried_failure_too.__qualname__}.<locals>.flaky"
    assert _messages(caplog, logging.WARNING) == [
        f"handler {name} failed for event jobs.run ({event.id}) on attempt {n} of 3 "
        f"(ValueError: failure {n}); retrying in 0 s"
        for n in (1, 2)
    ]
    assert not _messages(caplog, logging.ERROR)


async def test_a_jittered_retry_logs_the_range_of_its_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "pepperpy.event")
    policy = RetryPolicy.exponential(max_attempts=3, base_delay=0.001, max_delay=1, jitter=True)
    manager = EventManager(retry_policy=policy)
    manager.on("jobs.run", lambda event: 1 / 0)
    await manager.emit("jobs.run", 1)
    await manager.close()
    first, second = _messages(caplog, logging.WARNING)
    assert first.endswith(
        "on attempt 1 of 3 (ZeroDivisionError: division by zero); retrying in 0.001 s"
    )
    assert second.endswith("retrying in 0.001 to 0.002 s")


class _SlowToClose(MemoryTransport):
    """A transport whose close() waits for its broker, which has been gone 7 s."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    def outage(self) -> float | None:
        return 7.0

    async def close(self) -> None:
        await self.release.wait()
        await super().close()


class _RefusedWhileClosing(_SlowToClose):
    def outage_reason(self) -> tuple[str, str] | None:
        return "credentials refused", "the broker refuses the transport's credentials"


@pytest.mark.parametrize(
    ("transport_class", "said"),
    [
        # it said "waiting for no delivery in progress" while the broker held it up
        (_SlowToClose, "; the broker has been unreachable for 7 s"),
        # a refused password is not a network outage: the line said "unreachable"
        (
            _RefusedWhileClosing,
            "; the broker has refused the connection for 7 s (credentials refused)",
        ),
    ],
    ids=["unreachable", "refused"],
)
async def test_closing_with_the_deliveries_done_says_it_waits_for_the_transport(
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    transport_class: type[_SlowToClose],
    said: str,
) -> None:
    monkeypatch.setattr(_bus_serve, "PROGRESS_EVERY", 0.01)
    caplog.set_level(logging.INFO, "pepperpy.event.bus")
    transport = transport_class()
    bus = EventBus(transport=transport)
    serving = asyncio.create_task(bus.serve(signals=()))
    await _until(lambda: bus._serving and bus._started)
    closing = asyncio.create_task(bus.close())
    await _until(lambda: any("still closing" in m for m in _messages(caplog)))
    transport.release.set()
    await asyncio.wait_for(serving, DEADLINE)
    await closing
    [still, *_] = [line for line in _messages(caplog) if "still closing" in line]
    assert "waiting for the transport to close (the deliveries are done;" in still
    assert still.endswith(said), still
    assert "no delivery in progress" not in still


@pytest.mark.redis
async def test_closing_counts_the_events_read_ahead_it_still_handles(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # an ungrouped Redis subscription reads up to batch_size events ahead, and close()
    # handles them all: the line said only "closing after the 1 delivery in progress"
    caplog.set_level(logging.INFO, "pepperpy.event.bus")
    namespace = unique_name("pepahead")
    bus = EventBus(transport=f"{redis_url}?namespace={namespace}&partitions=1")
    gate = asyncio.Event()
    handled: list[int] = []

    @bus.subscribe("jobs.*")
    async def slow(event: Event) -> None:
        await gate.wait()
        handled.append(event.data)

    try:
        serving = asyncio.create_task(bus.serve(signals=()))
        await _until(lambda: bus._serving and bus._started)
        for n in range(6):
            await bus.publish("jobs.run", n)
        await _until(lambda: bus.transport._read_ahead() == 5)  # one is being handled
        closing = asyncio.create_task(bus.close())
        await _until(lambda: any("close() was called" in m for m in _messages(caplog)))
        gate.set()
        await asyncio.wait_for(serving, DEADLINE)
        await closing
    finally:
        await delete_redis_keys(redis_url, f"{namespace}:*")
    assert handled == list(range(6))
    [first] = [line for line in _messages(caplog) if "close() was called" in line]
    assert "closing after the 1 delivery in progress: " in first
    assert first.endswith("; 5 more events already read are handled before it closes")
