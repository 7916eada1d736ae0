"""One Projection used from several event loops (threads): its calls still take turns."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import Event, EventStore, Projection
from pepperpy.event import _turns as turns_module
from tests.helpers import LoopThread

EVENTS = 12


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'events.db'}"


def slow_sum(store: EventStore, applied: list[int], delay: float = 0.01) -> Projection:
    projection = Projection("sum", store, batch_size=4)

    @projection.on("n.add")
    async def add(state: dict[str, Any], event: Event) -> None:
        applied.append(event.data)
        await asyncio.sleep(delay)
        state["sum"] = state.get("sum", 0) + event.data

    return projection


async def _append(store: EventStore, count: int = EVENTS) -> None:
    for n in range(count):
        await store.append(f"n.{n % 3}", Event("n.add", n))


def test_runs_on_two_loops_at_once_take_turns(store_url: str) -> None:
    store = EventStore(store_url)
    asyncio.run(_append(store))
    applied: list[int] = []
    projection = slow_sum(store, applied)
    barrier = threading.Barrier(2)
    outcomes: list[Any] = []

    def worker() -> None:
        async def main() -> None:
            barrier.wait()
            try:
                outcomes.append((await projection.run()).replayed)
            except Exception as exc:
                outcomes.append(exc)

        asyncio.run(main())

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    asyncio.run(projection.close())
    asyncio.run(store.close())
    assert sorted(outcomes, key=str) == [0, EVENTS]  # the second found nothing left to do
    assert sorted(applied) == list(range(EVENTS))  # each event folded once
    assert projection.state == {"sum": sum(range(EVENTS))}


def test_a_run_on_another_loop_gets_its_turn_between_live_events(tmp_path: Path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    applied: list[int] = []
    projection = slow_sum(store, applied, delay=0)
    following = threading.Event()
    stop = threading.Event()

    def follower() -> None:
        async def main() -> None:
            task = asyncio.ensure_future(projection.follow())
            following.set()
            while not stop.is_set():
                await asyncio.sleep(0.005)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await projection.close()

        asyncio.run(main())

    thread = threading.Thread(target=follower)
    thread.start()
    try:
        assert following.wait(5)

        async def main() -> None:
            await _append(store)
            for _ in range(20):  # runs interleaved with the live events
                await asyncio.wait_for(projection.run(), 5)
            await store.close()

        asyncio.run(main())
    finally:
        stop.set()
        thread.join(10)
    assert sorted(applied) == list(range(EVENTS))
    assert projection.state == {"sum": sum(range(EVENTS))}


def test_a_turn_held_on_a_loop_closed_without_shutdown_is_taken_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call in line when the holder's loop closes gets the turn; so does a later one.
    What the dead call applied but did not commit is applied again, once."""
    monkeypatch.setattr(turns_module, "CLOSED_LOOP_CHECK", 0.05)
    store = EventStore()
    asyncio.run(_append(store))
    applied: list[int] = []
    projection = Projection("sum", store, batch_size=100)
    stuck = threading.Event()

    @projection.on("n.add")
    async def add(state: dict[str, Any], event: Event) -> None:
        applied.append(event.data)
        if event.data == 5 and not stuck.is_set():
            stuck.set()
            await asyncio.sleep(3600)  # its loop is closed meanwhile
        state["sum"] = state.get("sum", 0) + event.data

    dead = LoopThread()
    dead.submit(projection.run())
    assert stuck.wait(5)

    async def main() -> None:
        waiting = asyncio.ensure_future(projection.run())  # in line behind the stuck run
        await asyncio.sleep(0.02)
        await asyncio.to_thread(dead.kill)
        report = await asyncio.wait_for(waiting, 5)
        assert report.replayed == EVENTS
        assert (await asyncio.wait_for(projection.run(), 5)).replayed == 0
        dead.bury()
        await store.close()

    asyncio.run(main())
    assert projection.state == {"sum": sum(range(EVENTS))}
    assert sorted(applied) == sorted([*range(6), *range(EVENTS)])


def test_a_later_call_takes_a_turn_held_on_a_closed_loop_at_once() -> None:
    store = EventStore()
    asyncio.run(_append(store))
    projection = Projection("sum", store)
    stuck = threading.Event()

    @projection.on("n.add")
    async def add(state: dict[str, Any], event: Event) -> None:
        if not stuck.is_set():
            stuck.set()
            await asyncio.sleep(3600)
        state["sum"] = state.get("sum", 0) + event.data

    dead = LoopThread()
    dead.submit(projection.run())
    assert stuck.wait(5)
    dead.kill()

    async def main() -> None:
        started = time.monotonic()
        report = await asyncio.wait_for(projection.run(), 5)
        assert time.monotonic() - started < 0.5
        assert report.replayed == EVENTS
        dead.bury()
        await store.close()

    asyncio.run(main())
