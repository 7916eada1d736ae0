"""EventManager's backpressure and draining, as a mixin (:class:`Backpressure`).

With a ``buffer_size``, every emit holds a buffer slot while its handlers run: slots are
counted per event loop, and emits that find none wait for one in order, each woken on its
own loop (:class:`_Waiter`). What ``emit_nowait`` scheduled is tracked until it is done,
so that ``drain()`` can wait for it. Deliveries abandoned on an event loop that was
closed while they ran give back what they held (``_reap``).

A handler that ``await``s ``emit`` on its own manager holds its event's slot while it
waits for another. When every slot is held by an emit waiting that way for its handlers,
none can ever be given back: ``_enter`` sees this as the last of them starts to wait, and
raises :class:`~pepperpy.event.BufferFullError` in it instead (``_block``). Nothing is
kept per emit for this: which emits a waiting one runs within is read, only then, from
the frames of its task (and of the tasks whose emit awaits it, ``_owners``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextvars import ContextVar
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any

from ._errors import BufferFullError
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
    #: the code of the calls that hold a buffer slot while their handlers run (emit, a
    #: scheduled delivery): their frames are the slots a waiting emit runs within
    _slot_codes: frozenset[CodeType]
    #: emits waiting for a slot within emits of this manager -> the frames of those emits
    _blocked: dict[_Waiter, list[FrameType]]
    #: handler Tasks of a buffered emit with several handlers -> the task awaiting them
    _owners: dict[asyncio.Future[Any], asyncio.Task[Any] | None]

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
            self._block(waiter, asyncio.current_task(loop))
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
        finally:
            if self._blocked:
                with self._lock:
                    self._blocked.pop(waiter, None)

    def _block(self, waiter: _Waiter, task: asyncio.Task[Any] | None) -> None:
        """An emit is about to wait for a slot: if it runs within emits of this manager
        that await it (a handler's ``await emit``), note them as blocked, and refuse with
        BufferFullError if every slot is now held by a blocked emit: none would ever be
        given back (call with the lock). Only a full buffer gets here."""
        within = list(self._within(sys._getframe(3), task))
        if not within:
            return
        for gone in [other for other in self._blocked if other.loop.is_closed()]:
            del self._blocked[gone]  # its loop was closed as it waited: its slots reaped
        self._blocked[waiter] = within
        stuck = {frame for frames in self._blocked.values() for frame in frames}
        assert self.buffer_size is not None
        if len(stuck) < self._in_flight or self._in_flight < self.buffer_size:
            return  # a slot is free, or held by an emit that can still finish
        del self._blocked[waiter]
        raise BufferFullError(
            f"await emit() from a handler would wait forever: all {self._in_flight} "
            f"buffer slots (buffer_size={self.buffer_size}) are held by emits whose "
            "handlers are themselves waiting in emit() on this EventManager, and an emit "
            "gives its slot back only once its handlers have finished. Emit from "
            "handlers with emit_nowait() (it fails fast when the buffer is full), use a "
            "larger buffer_size, or a second EventManager for the events handlers emit"
        )

    def _within(
        self, frame: FrameType | None, task: asyncio.Task[Any] | None
    ) -> Iterator[FrameType]:
        """The frames of this manager's slot-holding calls (emits, scheduled deliveries)
        that await the code running in ``frame``: those below it on the stack (the task's
        own, and on 3.12+ those of the emit running a handler's eager first step), then,
        for a handler Task, those its emit's task is suspended in, and so on."""
        frames: Iterator[FrameType] = _below(frame)
        seen: set[asyncio.Task[Any]] = set()
        while True:
            for each in frames:
                if each.f_code in self._slot_codes and each.f_locals.get("self") is self:
                    yield each
            if task is None or task in seen or task not in self._owners:
                return
            seen.add(task)
            task = self._owners[task]
            frames = iter(()) if task is None else _suspended_in(task)

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


def _below(frame: FrameType | None) -> Iterator[FrameType]:
    """``frame`` and those that called it."""
    while frame is not None:
        yield frame
        frame = frame.f_back


def _suspended_in(task: asyncio.Task[Any]) -> Iterator[FrameType]:
    """The frames a suspended task waits in, outermost first (its coroutines' chain)."""
    coro: Any = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            return
        yield frame
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)


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
