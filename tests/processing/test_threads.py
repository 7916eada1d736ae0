"""Middleware shared by processors on several event loops (threads) at once."""

from __future__ import annotations

import asyncio
import threading
import time

from pepperpy.event import Event, EventProcessor
from pepperpy.event.middleware import TimeoutMiddleware
from tests.helpers import LoopThread


def _outcome(
    processor: EventProcessor, event: Event, into: dict[str, tuple[str, float]], name: str
) -> None:
    async def main() -> None:
        started = time.monotonic()
        try:
            await processor.process(event)
        except TimeoutError:
            into[name] = ("TimeoutError", time.monotonic() - started)
        else:
            into[name] = ("finished", time.monotonic() - started)

    asyncio.run(main())


def test_one_timeout_middleware_enforces_its_deadline_on_two_loops_at_once() -> None:
    """Thread B's event arrives while thread A's is pending: each loop keeps its own
    watchdog (one timer re-armed on B's loop left A's deadline unwatched)."""
    timeout = TimeoutMiddleware(0.2)
    slow_started = threading.Event()
    slow = EventProcessor().use(timeout)
    quick = EventProcessor().use(timeout)

    @slow.handle("x.*")
    async def stuck(event: Event) -> None:
        slow_started.set()
        await asyncio.sleep(3)

    @quick.handle("x.*")
    async def fast(event: Event) -> None:
        pass

    results: dict[str, tuple[str, float]] = {}
    a = threading.Thread(target=_outcome, args=(slow, Event("x.a", 1), results, "a"))
    a.start()
    assert slow_started.wait(5)
    _outcome(quick, Event("x.b", 2), results, "b")  # on another loop, while A's is pending
    a.join(10)
    assert results["b"][0] == "finished"
    outcome, seconds = results["a"]
    assert outcome == "TimeoutError"
    assert seconds < 1.5


def test_deadlines_on_two_loops_expire_each_on_time() -> None:
    timeout = TimeoutMiddleware(0.2)
    processor = EventProcessor().use(timeout)

    @processor.handle("x.*")
    async def stuck(event: Event) -> None:
        await asyncio.sleep(3)

    results: dict[str, tuple[str, float]] = {}
    threads = [
        threading.Thread(target=_outcome, args=(processor, Event("x.y", n), results, str(n)))
        for n in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    for n in range(3):
        outcome, seconds = results[str(n)]
        assert outcome == "TimeoutError"
        assert seconds < 1.5


def test_a_loop_closed_with_deadlines_pending_leaves_the_others_working() -> None:
    timeout = TimeoutMiddleware(0.2)
    processor = EventProcessor().use(timeout)

    @processor.handle("x.*")
    async def stuck(event: Event) -> None:
        await asyncio.sleep(3)

    dead = LoopThread()
    dead.submit(processor.process(Event("x.dead", 0)))
    time.sleep(0.05)
    dead.kill()

    results: dict[str, tuple[str, float]] = {}
    _outcome(processor, Event("x.y", 1), results, "later")
    outcome, seconds = results["later"]
    assert outcome == "TimeoutError"
    assert seconds < 1.5
    dead.bury()
