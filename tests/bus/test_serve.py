"""``EventBus.serve()``: a consumer service runs until a signal or ``close()``, then closes.

The signal tests run a real process (``serve_worker.py``) and signal it while its handler
is in flight: the handler finishes, the process exits 0 and, on Redis, the event is
acknowledged. A second signal during the graceful close acts as without serve(): the
process ends and the broker keeps the event for another member.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import ClosedError, Event, EventBus, RetryPolicy, TransportError
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys
from tests.script_process import DEADLINE, ScriptProcess

WORKER = Path(__file__).with_name("serve_worker.py")


# -- the misplaced URL ----------------------------------------------------------------------


def test_a_url_given_as_topics_says_where_it_goes() -> None:
    with pytest.raises(TypeError) as caught:
        EventBus("memory://")  # type: ignore[arg-type]
    assert "not a single string" in str(caught.value)
    assert "EventBus(transport='memory://')" in str(caught.value)
    with pytest.raises(TypeError) as caught:
        EventBus("redis://user:secret@127.0.0.1:6379/0")  # type: ignore[arg-type]
    assert "EventBus(transport='redis://user:***@127.0.0.1:6379/0')" in str(caught.value)
    assert "secret" not in str(caught.value)
    with pytest.raises(TypeError) as caught:  # one pattern, not a URL: no such hint
        EventBus("orders.*")  # type: ignore[arg-type]
    assert "transport=" not in str(caught.value)


# -- in process ---------------------------------------------------------------------------


async def test_serve_on_a_closed_bus_raises_closed_error() -> None:
    bus = EventBus()
    await bus.close()
    with pytest.raises(ClosedError):
        await bus.serve()


async def test_close_from_a_handler_ends_serve_after_that_handler() -> None:
    bus = EventBus(retry_policy=RetryPolicy.NONE)
    handled: list[str] = []

    @bus.subscribe("orders.*")
    async def stop_on_request(event: Event) -> None:
        await bus.close()  # returns at once: serve() closes after this handler
        await asyncio.sleep(0.05)
        handled.append(event.data)

    serving = asyncio.create_task(bus.serve(signals=()))
    publishing = asyncio.create_task(bus.publish("orders.stop", "last"))
    await asyncio.wait_for(serving, DEADLINE)  # returns: close() ended it
    assert handled == ["last"]  # the handler that called close() finished first
    await publishing
    with pytest.raises(ClosedError):
        await bus.publish("orders.placed", 1)


async def test_close_from_another_task_ends_serve() -> None:
    bus = EventBus()
    bus.subscribe("orders.*", lambda event: None)
    serving = asyncio.create_task(bus.serve(signals=()))
    await _until(lambda: bus._serving and bus._started)
    await bus.close()
    await asyncio.wait_for(serving, DEADLINE)
    assert serving.done() and serving.exception() is None


async def test_a_cancelled_serve_closes_the_bus_after_the_events_in_progress() -> None:
    bus = EventBus(retry_policy=RetryPolicy.NONE)
    started = asyncio.Event()
    release = asyncio.Event()
    finished: list[int] = []

    @bus.subscribe("orders.*", group="billing")
    async def bill(event: Event) -> None:
        started.set()
        await release.wait()
        finished.append(event.data)

    serving = asyncio.create_task(bus.serve(signals=()))
    publishing = asyncio.create_task(bus.publish("orders.placed", 7))
    await asyncio.wait_for(started.wait(), DEADLINE)
    await _until(lambda: bus._serving)
    serving.cancel()
    await asyncio.sleep(0.05)
    assert not serving.done()  # closing: waits for the handler in flight
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(serving, DEADLINE)
    assert finished == [7]
    await publishing
    with pytest.raises(ClosedError):
        await bus.publish("orders.placed", 8)


async def test_serve_puts_back_the_signal_handlers_it_found() -> None:
    loop = asyncio.get_running_loop()
    python_calls: list[int] = []
    loop_calls = asyncio.Queue[str]()

    def python_handler(signum: int, frame: Any) -> None:
        python_calls.append(signum)

    before = signal.signal(signal.SIGUSR1, python_handler)
    loop.add_signal_handler(signal.SIGUSR2, loop_calls.put_nowait, "loop's own")
    try:
        bus = EventBus()
        bus.subscribe("orders.*", lambda event: None)
        serving = asyncio.create_task(bus.serve(signals=(signal.SIGUSR1, signal.SIGUSR2)))
        await _until(lambda: signal.getsignal(signal.SIGUSR1) is not python_handler)
        await _until(lambda: bus._serving)
        os.kill(os.getpid(), signal.SIGUSR2)  # serve() handles it: it ends, closing the bus
        await asyncio.wait_for(serving, DEADLINE)
        assert loop_calls.empty()
        with pytest.raises(ClosedError):
            await bus.publish("orders.placed", 1)

        assert signal.getsignal(signal.SIGUSR1) is python_handler
        os.kill(os.getpid(), signal.SIGUSR2)  # the loop's handler is back
        assert await asyncio.wait_for(loop_calls.get(), DEADLINE) == "loop's own"
        os.kill(os.getpid(), signal.SIGUSR1)  # and the Python-level one
        await _until(lambda: python_calls == [signal.SIGUSR1])
    finally:
        loop.remove_signal_handler(signal.SIGUSR2)
        signal.signal(signal.SIGUSR1, before)


async def test_serve_puts_back_the_handlers_when_cancelled() -> None:
    def python_handler(signum: int, frame: Any) -> None:
        pass

    before = signal.signal(signal.SIGTERM, python_handler)
    try:
        bus = EventBus()
        serving = asyncio.create_task(bus.serve())
        await _until(lambda: signal.getsignal(signal.SIGTERM) is not python_handler)
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
        assert signal.getsignal(signal.SIGTERM) is python_handler
    finally:
        signal.signal(signal.SIGTERM, before)


def test_serve_in_another_thread_serves_until_close(caplog: pytest.LogCaptureFixture) -> None:
    """No signal can be handled outside the main thread: serve() says so and still works."""
    caplog.set_level(logging.INFO, "pepperpy.event.bus")
    handled: list[int] = []
    failures: list[BaseException] = []

    async def main() -> None:
        bus = EventBus()

        @bus.subscribe("orders.*")
        async def last(event: Event) -> None:
            handled.append(event.data)
            await bus.close()

        asyncio.get_running_loop().call_soon(
            lambda: asyncio.ensure_future(bus.publish("orders.placed", 1))
        )
        await asyncio.wait_for(bus.serve(), DEADLINE)

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive() and not failures
    assert handled == [1]
    assert "SIGINT or SIGTERM not handled: not the main thread" in caplog.text


async def test_serve_logs_what_it_serves_and_why_it_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "pepperpy.event.bus")
    bus = EventBus()
    bus.subscribe("orders.*", lambda event: None, group="billing")
    bus.subscribe("audit.#", lambda event: None)
    serving = asyncio.create_task(bus.serve(signals=()))
    await _until(lambda: bus._serving and bus._started)
    await bus.close()
    await serving
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0] == (
        "EventBus serving on memory://: orders.* (group billing), audit.#; "
        "until close() (signals=())"
    )
    assert lines[1] == (
        "EventBus on memory://: close() was called; closing (no delivery in progress)"
    )
    assert lines[-1].startswith("EventBus on memory://: closed in ")


@pytest.mark.redis
async def test_the_log_names_the_broker_without_its_password(
    redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "pepperpy.event.bus")
    url = redis_url.replace("redis://", "redis://default:hunter2@")  # nopass takes any
    bus = EventBus(transport=f"{url}?namespace={namespace}")
    bus.subscribe("orders.*", lambda event: None, group="billing")
    serving = asyncio.create_task(bus.serve(signals=()))
    await _until(lambda: bus._serving and bus._started)
    await bus.close()
    await serving
    assert "hunter2" not in caplog.text
    assert "redis://default:***@127.0.0.1:6379/0" in caplog.text
    assert f"namespace={namespace}" in caplog.text


async def test_serve_closes_the_bus_when_it_cannot_start() -> None:
    bus = EventBus(transport="redis://127.0.0.1:1/0?connect_timeout=0.2")
    with pytest.raises(TransportError):
        await bus.serve()
    with pytest.raises(ClosedError):
        await bus.start()


async def test_bad_signals_are_refused() -> None:
    bus = EventBus()
    with pytest.raises(TypeError, match=r"signals=\(signal.SIGTERM,\)"):
        await bus.serve(signals=signal.SIGTERM)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no signal"):
        await bus.serve(signals=(12345,))
    with pytest.raises(TypeError, match="signal numbers"):
        await bus.serve(signals=("SIGTERM",))  # type: ignore[arg-type]
    await bus.close()


async def test_one_serve_at_a_time() -> None:
    bus = EventBus()
    serving = asyncio.create_task(bus.serve(signals=()))
    await _until(lambda: bus._serving)
    with pytest.raises(RuntimeError, match="already running"):
        await bus.serve(signals=())
    await bus.close()
    await serving


# -- a service process, signalled while a handler is in flight ------------------------------


async def test_sigterm_lets_the_handler_in_flight_finish_on_memory(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with ScriptProcess(WORKER, "memory://", "-", str(gate)) as service:
        await service.wait_for("EventBus serving on memory://", "handling 1")
        service.process.send_signal(signal.SIGTERM)
        await service.wait_for("SIGTERM received")
        gate.touch()
        assert await service.exit_code() == 0
        assert service.saw("finished 1") and service.saw("exited")


async def test_a_second_ctrl_c_interrupts_the_program_as_asyncio_run_does(tmp_path: Path) -> None:
    gate = tmp_path / "gate"  # never made: the handler is in flight until interrupted
    async with ScriptProcess(WORKER, "memory://", "-", str(gate)) as service:
        await service.wait_for("EventBus serving on memory://", "handling 1")
        service.process.send_signal(signal.SIGINT)
        await service.wait_for("SIGINT received")
        service.process.send_signal(signal.SIGINT)  # asyncio.run's handler is back
        assert await service.exit_code(traceback=True) != 0
        assert service.lines[-1] == "KeyboardInterrupt"
        assert not service.saw("finished 1")


async def test_a_signal_ignored_before_serve_stays_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "pepperpy.event.bus")
    before = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        bus = EventBus()
        serving = asyncio.create_task(bus.serve(signals=(signal.SIGUSR1, signal.SIGUSR2)))
        await _until(lambda: "EventBus serving" in caplog.text)
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
        assert (
            "until SIGUSR2, or close(); SIGUSR1 is ignored in this process "
            "(it was started in the background)"
        ) in caplog.text
        os.kill(os.getpid(), signal.SIGUSR2)
        await asyncio.wait_for(serving, DEADLINE)
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGUSR1, before)


@pytest.mark.redis
async def test_sigterm_on_redis_finishes_and_acknowledges_the_event(
    redis_url: str, tmp_path: Path
) -> None:
    namespace = unique_name("pepserve")
    gate = tmp_path / "gate"
    try:
        async with ScriptProcess(WORKER, redis_url, namespace, str(gate)) as service:
            await service.wait_for("EventBus serving on RedisTransport")
            async with _bus(redis_url, namespace) as producer:
                await producer.publish("orders.placed", {"n": 1}, key="customer-1")
            await service.wait_for("handling 1")
            service.process.send_signal(signal.SIGTERM)
            await service.wait_for("SIGTERM received")
            gate.touch()
            assert await service.exit_code() == 0
            assert service.saw("finished 1")
        assert await _pending(redis_url, namespace) == 0  # acknowledged
        # a new member of the group gets the next event of that key, not the first again
        received: list[int] = []
        async with _bus(redis_url, namespace) as member:
            arrived = asyncio.Event()

            @member.subscribe("orders.*", group="billing")
            async def bill(event: Event) -> None:
                received.append(event.data["n"])
                arrived.set()

            await member.start()
            await member.publish("orders.placed", {"n": 2}, key="customer-1")
            await asyncio.wait_for(arrived.wait(), DEADLINE)
        assert received == [2]
    finally:
        await delete_redis_keys(redis_url, f"{namespace}:*")


@pytest.mark.redis
async def test_a_second_sigterm_ends_the_process_and_redis_keeps_the_event(
    redis_url: str, tmp_path: Path
) -> None:
    namespace = unique_name("pepserve")
    gate = tmp_path / "gate"
    try:
        async with ScriptProcess(WORKER, redis_url, namespace, str(gate)) as service:
            await service.wait_for("EventBus serving on RedisTransport")
            async with _bus(redis_url, namespace) as producer:
                await producer.publish("orders.placed", {"n": 1}, key="customer-1")
            await service.wait_for("handling 1")
            service.process.send_signal(signal.SIGTERM)
            await service.wait_for("SIGTERM received")
            service.process.send_signal(signal.SIGTERM)  # Python's default: the end
            assert await service.exit_code() == -signal.SIGTERM
            assert not service.saw("finished 1")
        assert await _pending(redis_url, namespace) == 1  # not acknowledged
        received: list[int] = []
        async with _bus(redis_url, namespace) as member:  # delivered again
            arrived = asyncio.Event()

            @member.subscribe("orders.*", group="billing")
            async def bill(event: Event) -> None:
                received.append(event.data["n"])
                arrived.set()

            await member.start()
            await asyncio.wait_for(arrived.wait(), DEADLINE)
        assert received == [1]
    finally:
        await delete_redis_keys(redis_url, f"{namespace}:*")


@pytest.mark.redis
async def test_the_docs_consumer_serves_until_sigterm(redis_url: str, tmp_path: Path) -> None:
    """docs/bus.md's producer and consumer files, as two processes (the consumer
    block is marked as a fragment there: test_docs_blocks cannot signal it)."""
    from tests.test_docs_blocks import DOCS, parse

    blocks = parse((DOCS / "bus.md").read_text())
    # the one fragment serving (other blocks call serve() and end by themselves)
    [consumer] = [b for b in blocks if "await bus.serve()" in b.code and b.fragment]
    [producer] = [block for block in blocks if block.number == consumer.number - 1]
    assert "orders.placed" in producer.code
    namespace = unique_name("pepservedocs")
    for block, name in ((consumer, "billing.py"), (producer, "shop.py")):
        (tmp_path / name).write_text(block.code.replace("docs_example", namespace))
    try:
        async with ScriptProcess(tmp_path / "billing.py") as service:
            await service.wait_for("EventBus serving on RedisTransport")
            shop = await asyncio.create_subprocess_exec(
                sys.executable, "-W", "error", str(tmp_path / "shop.py")
            )
            assert await asyncio.wait_for(shop.wait(), DEADLINE) == 0
            await service.wait_for(*(f"billing order {n}" for n in (1, 2, 3)))
            service.process.send_signal(signal.SIGTERM)
            assert await service.exit_code() == 0
            assert service.saw("SIGTERM received")
        assert await _pending(redis_url, namespace) == 0
    finally:
        await delete_redis_keys(redis_url, f"{namespace}:*")


# -- helpers ------------------------------------------------------------------------------


async def _until(condition: Any, timeout: float = DEADLINE) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def _bus(url: str, namespace: str) -> EventBus:
    from pepperpy.event.transports.redis import RedisTransport

    return EventBus(transport=RedisTransport(url, namespace=namespace, lease_ttl=3.0))


async def _pending(url: str, namespace: str) -> int:
    """Entries delivered to a group member and not acknowledged, over the namespace."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        total = 0
        async for stream in client.scan_iter(match=f"{namespace}:*", _type="stream"):
            for group in await client.xinfo_groups(stream):
                total += int(group["pending"])
        return total
    finally:
        await client.aclose()


def test_the_banner_names_a_nats_transport_s_stream_and_prefix_once_each() -> None:
    from pepperpy.event._bus_serve import where
    from pepperpy.event.transports.nats import NatsTransport

    shown = where(NatsTransport("nats://127.0.0.1:4222?prefix=shop", stream="SHOP"))
    assert shown == "NatsTransport(nats://127.0.0.1:4222, stream=SHOP, prefix=shop)"
    shown = where(NatsTransport("nats://u:secret@127.0.0.1:4222", stream="S", prefix="p"))
    assert "secret" not in shown and shown.endswith(", stream=S, prefix=p)")
