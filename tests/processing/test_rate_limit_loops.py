"""One RateLimitMiddleware used from several event loops (threads) at once.

The limiter's clock is replaced by one the test moves by hand, and another loop's
thread is made to run at the exact points where the GIL may switch threads, so what two
threads interleaving there would do is shown deterministically, not by timing.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType, SimpleNamespace
from typing import Any

import pytest

from pepperpy.event import RateLimitMiddleware
from pepperpy.event.middleware import resilience
from tests.helpers import LoopThread

RATE = 1000.0  # a waiter looks at the (frozen) clock again every millisecond


class Clock:
    """A monotonic clock that stands still until :meth:`advance` or :meth:`flow`."""

    def __init__(self) -> None:
        self.now = 0.0
        self.step = 0.0  # added on every call once flowing
        self.calls: dict[int, int] = {}  # calls per thread
        #: called (once) on the first call from ``hook_thread``, before answering
        self.hook: Callable[[], None] | None = None
        self.hook_thread = threading.get_ident()
        #: set when the thread ``watch`` asked the time ``watch_calls`` times
        self.watch: int | None = None
        self.watch_calls = 0
        self.watched = threading.Event()
        self.lock = threading.Lock()

    def __call__(self) -> float:
        me = threading.get_ident()
        hook = self.hook
        if hook is not None and me == self.hook_thread:
            self.hook = None
            hook()
        with self.lock:
            self.now += self.step
            self.calls[me] = count = self.calls.get(me, 0) + 1
            if me == self.watch and count >= self.watch_calls:
                self.watched.set()
            return self.now

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds

    def flow(self) -> None:
        """From now on, a whole second passes between two calls: the bucket is full."""
        with self.lock:
            self.step = 1.0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(resilience, "time", SimpleNamespace(monotonic=clock))
    return clock


@pytest.fixture
def other() -> Iterator[LoopThread]:
    """Another event loop, running in a thread of its own."""
    thread = LoopThread()
    yield thread
    thread.end()


class Contended:
    """Wraps a threading lock: sets ``signal`` when an acquire has to wait for it."""

    def __init__(self, lock: Any, signal: threading.Event) -> None:
        self.lock = lock
        self.signal = signal

    def __enter__(self) -> None:
        if not self.lock.acquire(blocking=False):
            self.signal.set()  # the other thread holds it: this one waits from here on
            self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def watch_contention(limit: RateLimitMiddleware, signal: threading.Event) -> None:
    """Set ``signal`` when a thread has to wait for the bucket's lock (if it has one)."""
    lock = getattr(limit, "_bucket_lock", None)
    if lock is not None:
        setattr(limit, "_bucket_lock", Contended(lock, signal))  # noqa: B010


async def test_waiters_stay_first_come_first_served_when_another_loop_takes_a_token(
    clock: Clock, other: LoopThread
) -> None:
    # the waiting line used to be reset by any call from another loop: the next call
    # here then passed at once, ahead of a waiter queued before it
    limit = RateLimitMiddleware(RATE, burst=1)
    await limit.acquire()  # the bucket is empty now
    first = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0)  # ``first`` is waiting for a token
    assert not first.done()
    clock.advance(1.0)
    other.run(limit.acquire())  # another loop takes that token, while ``first`` waits
    clock.advance(1.0)  # one token more: ``first``'s
    second = asyncio.create_task(limit.acquire())
    try:
        done, _ = await asyncio.wait((first, second), return_when=asyncio.FIRST_COMPLETED)
        assert done == {first}
        assert not second.done()  # one token: one of them
        clock.advance(1.0)
        await asyncio.wait_for(second, 10)
    finally:
        for task in (first, second):
            task.cancel()
        await asyncio.gather(first, second, return_exceptions=True)


async def test_a_token_taken_on_another_loop_mid_refill_is_not_given_out_twice(
    clock: Clock, other: LoopThread
) -> None:
    # the bucket's arithmetic was not atomic: another thread taking the last token
    # between this one's reading the count and writing it back was overwritten, and
    # both events passed with a burst of one
    limit = RateLimitMiddleware(RATE, burst=1)
    progress = threading.Event()  # the other thread finished or waits for this one
    watch_contention(limit, progress)
    started: list[Any] = []

    def finished(_: object) -> None:
        progress.set()
        clock.watched.set()

    def start_other() -> None:
        future = other.submit(limit.acquire())
        future.add_done_callback(finished)
        started.append(future)
        progress.wait(10)

    def switch(frame: FrameType, event: str, arg: Any) -> None:
        # the GIL may switch threads as ``min`` is called, its arguments read
        if (
            event == "c_call"
            and arg is min
            and frame.f_code.co_filename == resilience.__file__
            and not started
        ):
            start_other()

    clock.watch = other.thread.ident
    clock.watch_calls = 2  # looked at the bucket twice: it did not pass the first time
    previous = sys.getprofile()
    sys.setprofile(switch)
    try:
        await limit.acquire()
    finally:
        sys.setprofile(previous)
    (future,) = started
    try:
        assert progress.is_set()
        # the other thread passed, or found the bucket empty and waits: one token is
        # one event, however the threads interleaved
        assert clock.watched.wait(10)
        assert not future.done()
    finally:
        clock.flow()
    future.result(10)


async def test_a_loop_never_waits_in_another_loops_line(clock: Clock, other: LoopThread) -> None:
    # another loop could replace the waiting line between this loop's check and its
    # use: this loop then waited on the other loop's asyncio.Lock -> RuntimeError
    limit = RateLimitMiddleware(RATE, burst=1)
    await limit.acquire()  # the bucket is empty now
    progress = threading.Event()  # the other loop has waiters, or waits for this one
    watch_contention(limit, progress)
    queued = threading.Event()  # the other loop has two waiters

    async def two_waiters() -> None:
        waiters = [asyncio.create_task(limit.acquire()) for _ in range(2)]
        await asyncio.sleep(0)  # both are waiting for a token
        queued.set()
        progress.set()
        await asyncio.gather(*waiters)

    started: list[Any] = []

    def start_other() -> None:
        started.append(other.submit(two_waiters()))
        progress.wait(10)

    clock.hook = start_other  # runs as this loop's next call looks at the clock
    mine = asyncio.create_task(limit.acquire())
    try:
        assert await asyncio.to_thread(queued.wait, 10)
        assert started
        # three waiters on two loops and an empty bucket: none is served yet, and none
        # failed (a RuntimeError is shown in ``mine``'s repr)
        assert not mine.done(), mine
        assert not started[0].done()
    finally:
        clock.flow()
    await asyncio.wait_for(mine, 10)  # on this loop: no RuntimeError
    started[0].result(10)


async def test_a_cancelled_waiter_leaves_the_line_without_taking_a_token(clock: Clock) -> None:
    limit = RateLimitMiddleware(RATE, burst=1)
    await limit.acquire()  # the bucket is empty now
    first, second, third = (asyncio.create_task(limit.acquire()) for _ in range(3))
    try:
        await asyncio.sleep(0)  # all three wait, in that order
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        clock.advance(1.0)  # one token: the next in line gets it
        done, _ = await asyncio.wait((second, third), return_when=asyncio.FIRST_COMPLETED)
        assert done == {second}
        assert not third.done()
        clock.advance(1.0)
        await asyncio.wait_for(third, 10)
    finally:
        for task in (first, second, third):
            task.cancel()
        await asyncio.gather(first, second, third, return_exceptions=True)
