"""Turns: a first come, first served lock for calls on any event loop, in any thread.

A :class:`~pepperpy.event.Projection` takes turns on one: ``run``, ``rebuild`` and
``load`` for their whole duration, ``follow`` for each live event. An ``asyncio.Lock``
belongs to one loop, and calls running at once on two loops each took a lock of their
own.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from ._loops import resolve, wake

__all__ = ["CLOSED_LOOP_CHECK", "Turns"]

#: seconds between two looks, by a call waiting for its turn, for a holder whose event
#: loop was closed while it held the turn
CLOSED_LOOP_CHECK = 1.0


class _Turn:
    """One call's claim on a :class:`Turns`: holding it, or waiting on ``loop``."""

    __slots__ = ("granted", "loop", "wake")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.wake: asyncio.Future[None] | None = None
        self.granted = False

    def wake_up(self) -> bool:
        """Resolve ``wake`` on its own loop, from any thread; False if that loop is closed."""
        assert self.wake is not None
        return wake(self.loop, self.wake)


class Turns:
    """A first come, first served lock for calls on any event loop, in any thread.

    The turn passes straight to the first call in line, woken on its own loop. A turn
    held on a loop that was closed without finishing its task is abandoned: the next
    call takes it (one already waiting looks every :data:`CLOSED_LOOP_CHECK` seconds),
    after ``on_abandoned()``.
    """

    def __init__(self, *, on_abandoned: Callable[[], None]) -> None:
        self._on_abandoned = on_abandoned
        self._lock = threading.Lock()
        self._holder: _Turn | None = None
        self._line: deque[_Turn] = deque()

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        turn = await self._acquire()
        try:
            yield
        finally:
            with self._lock:
                if self._holder is turn:  # not if taken over after its loop closed
                    self._pass_on()

    async def _acquire(self) -> _Turn:
        loop = asyncio.get_running_loop()
        turn = _Turn(loop)
        with self._lock:
            self._drop_abandoned()
            if self._holder is None:
                self._holder = turn
                return turn
            turn.wake = loop.create_future()
            self._line.append(turn)
        try:
            while True:
                timer = loop.call_later(CLOSED_LOOP_CHECK, resolve, turn.wake)
                try:
                    await turn.wake
                finally:
                    timer.cancel()
                with self._lock:
                    if not turn.granted:
                        self._drop_abandoned()  # woken to look: may hand the turn here
                    if turn.granted:
                        return turn
                    turn.wake = loop.create_future()
        except BaseException:
            with self._lock:
                if turn.granted:
                    if self._holder is turn:
                        self._pass_on()
                elif turn in self._line:
                    self._line.remove(turn)
            raise

    def _drop_abandoned(self) -> None:
        """Take the turn from a holder whose loop was closed (call with the lock)."""
        if self._holder is not None and self._holder.loop.is_closed():
            self._on_abandoned()
            self._pass_on()

    def _pass_on(self) -> None:
        """Hand the turn to the first call in line, or free it (call with the lock)."""
        self._holder = None
        while self._line:
            turn = self._line.popleft()
            if turn.wake_up():
                turn.granted = True
                self._holder = turn
                return
            # its loop is closed: it will never run again
