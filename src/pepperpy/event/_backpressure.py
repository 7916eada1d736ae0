"""EventManager's backpressure and draining, as a mixin (:class:`Backpressure`).

With a ``buffer_size``, every emit holds a buffer slot while its handlers run: slots are
counted per event loop, and emits that find none wait for one in order, each woken on its
own loop (:class:`_Waiter`). What ``emit_nowait`` scheduled is tracked until it is done,
so that ``drain()`` can wait for it. Deliveries abandoned on an event loop that was
closed while they ran give back what they held (``_reap``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from contextvars import ContextVar
from typing import TYPE_CHECKING

from ._loops import resolve, wake

if TYPE_CHECKING:
    from ._event import Event

__all__ = ["CLOSED_LOOP_CHECK", "DELIVERING", "Backpressure"]

logger = logging.getLogger("pepperpy.event")

#: most events a warning about abandoned deliveries names one by one
_NAMED = 20

#: seconds between two looks, by a caller waiting for a buffer slot or a drain, for
#: deliveries abandoned on an event loop that was closed while they ran
CLOSED_LOOP_CHECK = 1.0

#: the event an ``emit_nowait`` delivery is handling, in its context (and so in its
#: handlers' Tasks): ``drain()`` called from there does not wait for that delivery
DELIVERING: ContextVar[Event | None] = ContextVar("pepperpy_event_delivering", default=None)


class Backpressure:
    """Buffer slots, the emits waiting for one, scheduled events and ``drain()``, for
    :class:`~pepperpy.event.EventManager`, which sets the attributes below."""

    buffer_size: int | None
    _lock: threading.Lock  # held for all of the bookkeeping below
    _in_flight: int
    _held: dict[asyncio.AbstractEventLoop, int]  # buffer slots per loop
    _space_waiters: deque[_Waiter]  # emits waiting for a slot, in order
    _scheduled: dict[asyncio.Future[Event], Event]  # emit_nowait's tasks -> their events
    _drainers: list[_Waiter]  # drain() calls waiting for _scheduled to empty
    #: id() of each scheduled event with a handler waiting in drain() -> how many wait
    _stuck: dict[int, int]

    # A slot given back goes straight to the first emit in line (no barging), which is
    # woken on its own loop, thread-safely. Slots are counted per event loop (``_held``):
    # a loop closed without shutting its tasks down never finishes the deliveries it
    # held, so ``_reap`` gives their slots back (and drain() stops waiting for them)
    # rather than letting every later emit wait forever.

    async def _enter(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take a buffer slot, first come, first served among the emits that wait."""
        with self._lock:
            if not self._space_waiters and self._has_space():
                self._take_slot(loop)
                return
            waiter = _Waiter(loop)
            self._space_waiters.append(waiter)
        try:
            while True:
                await waiter.wait()
                with self._lock:
                    if waiter.granted:
                        return
                    self._reap()  # woken to look for closed loops: may grant this one
                    if waiter.granted:
                        return
                    waiter.wake = loop.create_future()
        except BaseException:
            with self._lock:
                if waiter.granted:
                    self._release(loop)  # pass the slot on
                elif waiter in self._space_waiters:
                    self._space_waiters.remove(waiter)
            raise

    def _has_space(self) -> bool:
        """True when a slot is free (call with the lock)."""
        assert self.buffer_size is not None
        if self._in_flight >= self.buffer_size:
            self._reap()
        return self._in_flight < self.buffer_size

    def _take_slot(self, loop: asyncio.AbstractEventLoop) -> None:
        self._in_flight += 1
        self._held[loop] = self._held.get(loop, 0) + 1

    def _leave(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._release(loop)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        """Give back a slot ``loop`` held, to the next emit in line (call with the lock)."""
        held = self._held.get(loop)
        if held is None:
            return  # given back already, when its loop was found closed
        if held == 1:
            del self._held[loop]
        else:
            self._held[loop] = held - 1
        self._in_flight -= 1
        self._grant_next()

    def _grant_next(self) -> None:
        """Hand free slots to the emits first in line (call with the lock)."""
        assert self.buffer_size is not None
        while self._space_waiters and self._in_flight < self.buffer_size:
            waiter = self._space_waiters.popleft()
            if waiter.wake_up():
                waiter.granted = True
                self._take_slot(waiter.loop)
            # else its loop is closed: it will never run again

    def _reap(self) -> None:
        """Give back what deliveries on closed event loops held (call with the lock)."""
        closed = [loop for loop in self._held if loop.is_closed()]
        abandoned = [task for task in self._scheduled if task.get_loop().is_closed()]
        if not closed and not abandoned:
            return
        freed = sum(self._held.pop(loop) for loop in closed)
        self._in_flight -= freed
        events = [self._scheduled.pop(task) for task in abandoned]
        named = ", ".join(f"{event.type} ({event.id})" for event in events[:_NAMED])
        if len(events) > _NAMED:
            named += f" and {len(events) - _NAMED} more"
        logger.warning(
            "EventManager: deliveries abandoned on an event loop that was closed while they "
            "ran (%d scheduled event(s) no longer drained%s, %d buffer slot(s) given back)",
            len(abandoned),
            f": {named}" if named else "",
            freed,
        )
        if not self._scheduled:
            for drainer in self._drainers:
                drainer.wake_up()
        if self.buffer_size is not None:
            self._grant_next()

    @property
    def in_flight(self) -> int:
        """Events scheduled or being dispatched that count against ``buffer_size``."""
        with self._lock:
            self._reap()
            return self._in_flight

    def _unschedule(self, task: asyncio.Future[Event]) -> None:
        with self._lock:
            event = self._scheduled.pop(task, None)
            if event is None:
                return  # abandoned with its loop (see _reap)
            if self.buffer_size is not None:
                self._release(task.get_loop())
            for drainer in self._drainers:  # what is left may be theirs or stuck
                drainer.wake_up()
        if task.cancelled():
            # asyncio.run() cancels what is left when its main coroutine returns: an
            # emit_nowait nobody drained ends here, and must not end unseen
            logger.warning(
                "EventManager: event %s (%s) scheduled with emit_nowait was cancelled before "
                "it was handled (its handlers had not finished): its event loop ended "
                "without drain() or close(), or its future was cancelled",
                event.type,
                event.id,
            )

    async def drain(self) -> None:
        """Wait until every event scheduled with :meth:`emit_nowait` has been handled.

        Events scheduled on an event loop that was closed while they ran are not waited
        for: they will never finish. Called from a handler of a scheduled event (an
        ``app.stopping`` handler that closes the manager), it does not wait for that
        event's own delivery, which cannot finish before it returns, nor for a scheduled
        event one of whose handlers is itself waiting in ``drain()`` or ``close()``: that
        delivery cannot finish before that drain returns, and two such drains would each
        wait for the other forever.
        """
        loop = asyncio.get_running_loop()
        own = DELIVERING.get()
        drainer: _Waiter | None = None
        try:
            while True:
                with self._lock:
                    self._reap()
                    if not self._scheduled or (own is not None and self._only(own)):
                        return
                    if drainer is None:
                        drainer = _Waiter(loop)
                        self._drainers.append(drainer)
                        if own is not None:
                            self._stuck[id(own)] = self._stuck.get(id(own), 0) + 1
                            for other in self._drainers:  # what they wait for may be stuck
                                if other is not drainer:
                                    other.wake_up()
                    elif drainer.wake.done():
                        drainer.wake = loop.create_future()
                await drainer.wait()
        finally:
            if drainer is not None:
                with self._lock:
                    self._drainers.remove(drainer)
                    if own is not None:
                        self._unstick(own)

    def _only(self, own: Event) -> bool:
        """Whether every scheduled delivery left handles ``own`` or has a handler waiting
        in drain() (call with the lock)."""
        stuck = self._stuck
        return all(event is own or id(event) in stuck for event in self._scheduled.values())

    def _unstick(self, own: Event) -> None:
        """A drain() from a handler of ``own`` ended (call with the lock)."""
        left = self._stuck[id(own)] - 1
        if left:
            self._stuck[id(own)] = left
        else:
            del self._stuck[id(own)]


class _Waiter:
    """A call waiting on ``loop``; ``wake`` resolves when it should look again."""

    __slots__ = ("granted", "loop", "wake")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.wake: asyncio.Future[None] = loop.create_future()
        self.granted = False  # a buffer slot was handed to it

    async def wait(self) -> None:
        """Wait for ``wake``, or :data:`CLOSED_LOOP_CHECK` seconds at most."""
        timer = self.loop.call_later(CLOSED_LOOP_CHECK, resolve, self.wake)
        try:
            await self.wake
        finally:
            timer.cancel()

    def wake_up(self) -> bool:
        """Resolve ``wake`` on its own loop, from any thread; False if that loop is closed."""
        return wake(self.loop, self.wake)
