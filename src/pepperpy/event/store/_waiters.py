"""Waiting for news on any number of event loops, woken from any thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading

__all__ = ["LoopWaiters"]


class LoopWaiters:
    """Tasks waiting for news, on any number of event loops, woken from any thread.

    An ``asyncio.Event`` belongs to the loop that first waits on it, so each loop gets
    its own. A waiter registers first and checks its condition after; a waker changes
    the condition first and wakes after, so no wake-up falls between the two. Shared by
    the memory and SQLite backends.
    """

    __slots__ = ("_events", "_lock")

    def __init__(self) -> None:
        self._events: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}
        self._lock = threading.Lock()

    def register(self) -> asyncio.Event:
        """The event the running loop's waiters wait on until the next :meth:`wake`."""
        loop = asyncio.get_running_loop()
        with self._lock:
            event = self._events.get(loop)
            if event is None:
                event = self._events[loop] = asyncio.Event()
        return event

    def wake(self) -> None:
        """Wake every registered waiter: directly on this loop, thread-safely on others."""
        if not self._events:  # the usual case: nobody waits
            return
        with self._lock:
            events, self._events = self._events, {}
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, event in events.items():
            if loop is current:
                event.set()
            else:
                with contextlib.suppress(RuntimeError):  # that loop is closed
                    loop.call_soon_threadsafe(event.set)
