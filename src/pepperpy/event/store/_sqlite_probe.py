"""One read of the head for every idle subscription of a SQLite store.

Other processes' commits wake nobody here, so an idle subscription looks for them every
poll. Each used to read a page of the log for that: 400 idle tails of one store read 800
pages a second (17% of a core, audit 8). They now share one read of the head a poll
(:class:`HeadProbe`), and only those it shows news to read a page.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

__all__ = ["HeadProbe", "answer"]


class HeadProbe:
    """The latest read of the head, shared by the waiters on any loop and thread."""

    __slots__ = ("_lock", "_probe", "_started")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._probe: Future[int | None] | None = None
        self._started = 0.0

    def since(self, began: float, start: Callable[[], Future[int | None]]) -> Future[int | None]:
        """A read of the head that started at or after ``began`` (``time.monotonic()``),
        so that it sees every commit made before then: the one under way or done, or a
        new one from ``start()``."""
        with self._lock:
            probe = self._probe
            if probe is None or self._started < began:
                started = time.monotonic()
                probe = start()
                self._probe, self._started = probe, started
            return probe


def answer(probe: Future[int | None]) -> asyncio.Future[int | None]:
    """``probe``'s outcome on the running loop. Unlike ``asyncio.wrap_future``, a waiter
    cancelled meanwhile does not cancel the probe, which other waiters share."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[int | None] = loop.create_future()

    def settle(done: Future[int | None]) -> None:
        if waiter.done():
            return  # its waiter was cancelled
        error = done.exception()
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(done.result())

    def arrived(done: Future[int | None]) -> None:
        try:
            loop.call_soon_threadsafe(settle, done)
        except RuntimeError:  # that loop is closed: nobody waits
            pass

    probe.add_done_callback(arrived)
    return waiter
