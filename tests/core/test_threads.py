"""PatternIndex and EventManager shared by several threads, each with its own event loop.

A manager is set up once (often at import time) and emitted to from several threads, each
running its own ``asyncio.run``. Races are forced where possible: a hook runs the other
thread's step at the exact point of the race, so these tests fail on a racy
implementation every time instead of now and then.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pepperpy.event import Event, EventManager, PatternIndex, _backpressure
from tests.helpers import LoopThread


def in_thread(target: Any, timeout: float = 5) -> threading.Thread:
    """Run ``target()`` in another thread and wait for it, ``timeout`` seconds at most.

    Used inside a hook: a thread-safe implementation may make the other thread wait for
    this one, so it is not required to finish; join the thread returned before asserting.
    """
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    return thread


# -- PatternIndex -----------------------------------------------------------------------


class _EvictionRace(dict[str, Any]):
    """A cache whose eviction lets another thread evict the same key in between.

    Picking the oldest key and deleting it are two steps: another thread's match() runs
    (and evicts) right after this one picked its key.
    """

    other: Any = None

    def __iter__(self) -> Iterator[str]:
        for key in list(dict.keys(self)):
            other, self.other = self.other, None
            if other is not None:
                in_thread(other, timeout=0.5)
            yield key


def test_two_threads_evicting_the_same_cached_topic_both_succeed() -> None:
    index: PatternIndex[str] = PatternIndex(cache_size=2)
    index.add("a.*", "one")
    index.add("a.#", "two")
    # topics of named tokens only are cached by topic (an unnamed one, by shape)
    index.add("1.2.3.4", "names")
    index.match("a.1")
    index.match("a.2")  # the cache is full
    cache = _EvictionRace(index._cache)
    index._cache = cache
    other_result: list[Any] = []
    cache.other = lambda: other_result.append(index.match("a.3"))

    assert index.match("a.4") == ("one", "two")  # a KeyError when both deleted "a.1"
    assert other_result == [("one", "two")]
    assert len(index._cache) <= 3


@pytest.mark.parametrize("change", ["add", "remove"])
def test_a_match_racing_a_change_in_another_thread_caches_no_stale_route(change: str) -> None:
    index: PatternIndex[str] = PatternIndex()
    index.add("x.#", "old")
    key = index.add("x.*", "gone") if change == "remove" else 0
    lookup = index._lookup
    fired = False

    def lookup_then_change(tokens: tuple[str, ...]) -> tuple[str, ...]:
        nonlocal fired
        found = lookup(tokens)  # computed against the index as it was
        if not fired:
            fired = True
            if change == "add":
                in_thread(lambda: index.add("x.*", "new"))
            else:
                in_thread(lambda: index.remove("x.*", key))
        return found

    index._lookup = lookup_then_change  # type: ignore[method-assign]
    first = index.match("x.y")  # raced the change: either answer is fine for this call
    assert first in (("old",), ("old", "gone"))
    expected = ("old", "new") if change == "add" else ("old",)
    assert index.match("x.y") == expected  # but what it found was not kept


# -- EventManager: routing and once ----------------------------------------------------


def test_emits_from_several_event_loops_reach_every_handler() -> None:
    manager = EventManager()
    counts = [0, 0]
    lock = threading.Lock()

    @manager.on("user.*.login")
    def first(event: Event) -> None:
        with lock:
            counts[0] += 1

    @manager.on("user.#")
    def second(event: Event) -> None:
        with lock:
            counts[1] += 1

    errors: list[BaseException] = []

    def worker(k: int) -> None:
        async def main() -> None:
            for i in range(3_000):
                await manager.emit(f"user.{(i * 13 + k * 7919) % 6000}.login")

        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert counts == [9_000, 9_000]


def test_a_once_handler_fires_once_when_two_threads_emit_at_once() -> None:
    manager = EventManager()
    calls: list[int] = []
    manager.once("job.done", lambda event: calls.append(event.data))
    manager.on("job.done", lambda event: None)  # two handlers: the claiming path
    (listener,) = [item for item in manager._index if item.once]
    base = type(listener)
    slot: Any = vars(base)["fired"]  # the slot's descriptor

    class Racing(base):  # type: ignore[misc,valid-type]
        """Reading ``fired`` lets another thread's emit run in between."""

        __slots__ = ()
        other: threading.Thread | None = None

        @property
        def fired(self) -> bool:
            value = bool(slot.__get__(self))
            if Racing.other is None:  # read, then the other thread's emit claims it
                Racing.other = in_thread(
                    lambda: asyncio.run(manager.emit("job.done", 2)), timeout=0.5
                )
            return value

        @fired.setter
        def fired(self, value: bool) -> None:
            slot.__set__(self, value)

    listener.__class__ = Racing
    asyncio.run(manager.emit("job.done", 1))
    assert Racing.other is not None
    Racing.other.join(5)
    assert len(calls) == 1


# -- EventManager: the buffer across loops ---------------------------------------------


def test_an_emit_waiting_on_another_loop_is_woken_as_soon_as_a_slot_frees() -> None:
    """A slot freed on loop A wakes the emit waiting on loop B at once (thread-safely),
    not when something else happens to wake B's loop."""
    manager = EventManager(buffer_size=1)

    @manager.on("job.*")
    async def work(event: Event) -> None:
        if event.data == "a":
            while not manager._space_waiters:  # hold the slot until B waits for it
                await asyncio.sleep(0.001)

    waited: list[float] = []

    def thread_b() -> None:
        async def main() -> None:
            started = time.monotonic()
            await asyncio.wait_for(manager.emit("job.b", "b"), 5)
            waited.append(time.monotonic() - started)

        asyncio.run(main())

    a = LoopThread()
    try:
        a.submit(manager.emit("job.a", "a"))
        deadline = time.monotonic() + 5
        while not manager.in_flight and time.monotonic() < deadline:
            time.sleep(0.001)
        b = threading.Thread(target=thread_b)
        b.start()
        b.join(10)
    finally:
        a.run(asyncio.sleep(0))
        a.kill()
    assert len(waited) == 1
    assert waited[0] < 0.5  # CLOSED_LOOP_CHECK (1 s) is not what woke it
    assert manager.in_flight == 0


def test_drain_on_one_loop_waits_for_events_scheduled_on_another() -> None:
    manager = EventManager()
    release = threading.Event()
    handled: list[int] = []

    @manager.on("job")
    async def work(event: Event) -> None:
        while not release.is_set():
            await asyncio.sleep(0.001)
        handled.append(event.data)

    async def schedule() -> None:
        manager.emit_nowait("job", 1)

    other = LoopThread()
    try:
        other.run(schedule())

        async def main() -> float:
            asyncio.get_running_loop().call_later(0.05, release.set)
            started = time.monotonic()
            await asyncio.wait_for(manager.drain(), 5)
            return time.monotonic() - started

        took = asyncio.run(main())
        assert handled == [1]
        assert took < 0.5  # woken by the other loop when its event was done
    finally:
        other.run(asyncio.sleep(0))
        other.kill()


async def _hang(event: Event) -> None:
    await asyncio.sleep(3600)


def test_slots_held_on_a_loop_closed_without_shutdown_are_given_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = EventManager(buffer_size=2)
    manager.on("a.*", _hang)
    dead = LoopThread()

    async def schedule() -> None:
        manager.emit_nowait("a.b", 1)
        manager.emit_nowait("a.b", 2)

    dead.run(schedule())
    dead.kill()

    async def later() -> None:
        assert manager.in_flight == 0
        await asyncio.wait_for(manager.emit("x.y"), 3)  # no handler, but it needs a slot
        await asyncio.wait_for(manager.drain(), 3)
        await asyncio.wait_for(manager.close(), 3)

    asyncio.run(later())
    dead.bury()
    assert "abandoned on an event loop that was closed" in caplog.text


def test_an_emit_already_waiting_when_the_slot_holders_loop_closes_gets_the_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_backpressure, "CLOSED_LOOP_CHECK", 0.05)
    manager = EventManager(buffer_size=1)
    manager.on("a.*", _hang)
    manager.on("b.*", lambda event: None)
    dead = LoopThread()

    async def schedule() -> None:
        manager.emit_nowait("a.b", 1)

    dead.run(schedule())

    async def main() -> None:
        waiting = asyncio.ensure_future(manager.emit("b.c"))
        drained = asyncio.ensure_future(manager.drain())
        await asyncio.sleep(0.02)  # both are waiting: for the slot, for the event
        await asyncio.to_thread(dead.kill)
        await asyncio.wait_for(waiting, 3)
        await asyncio.wait_for(drained, 3)

    asyncio.run(main())
    dead.bury()
    assert manager.in_flight == 0
