"""Deduplication by event id, with bounded memory and a time to live."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import OrderedDict

from .._event import Event
from .._options import check_count
from .._processor import NextHandler
from .._seconds import check_seconds

__all__ = ["DeduplicateMiddleware"]

logger = logging.getLogger("pepperpy.event.processor")

#: (middleware, event id) pairs whose processing the current context is part of: a
#: handler that processes its own event again (itself, or in a task it awaits) must not
#: wait for itself to finish
_inside: contextvars.ContextVar[frozenset[tuple[int, str]]] = contextvars.ContextVar(
    "pepperpy_event_dedupe_inside", default=frozenset()
)


class DeduplicateMiddleware:
    """Skip events whose id was processed successfully in the last ``ttl`` seconds.

    At-least-once sources (brokers, store subscriptions) redeliver; this makes handlers
    see each id once *within this process's lifetime*: the ids are kept in memory, so a
    restart (or another consumer process) starts with none, and what a crashed process
    handled but did not checkpoint runs again. Across restarts and processes, make the
    handler idempotent (an upsert, the notification system's ``idempotency=`` store) or
    keep its effect with its position (a ``TableProjection``). The ``ttl`` counts from
    the moment processing succeeded. At most ``max_size`` processed ids are remembered
    (the oldest are forgotten first), so memory stays bounded; ids still being processed
    are kept apart and never forgotten. A duplicate that arrives while the first copy is
    still being processed waits for its outcome, however long that takes: skipped once
    the first copy succeeded, run (as a redelivery) if it failed. It is never reported
    done before the event was processed, so a source does not acknowledge a copy whose
    event might still fail. An event whose processing failed is forgotten, so its
    redelivery runs again.
    """

    def __init__(self, *, ttl: float = 3600.0, max_size: int = 100_000) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self.skipped = 0
        self._seen: OrderedDict[str, float] = OrderedDict()  # processed: id -> expiry
        # ids being processed right now -> the duplicates waiting for their outcome
        self._running: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]]]] = {}

    # ``ttl`` and ``max_size`` may be set later, checked as the constructor checks them
    # (a ttl of "600" failed the next successful event after its handlers had run)

    @property
    def ttl(self) -> float:
        """Seconds an id is remembered after its processing succeeded (from then on)."""
        return self._ttl

    @ttl.setter
    def ttl(self, value: float) -> None:
        self._ttl = check_seconds(value, "ttl", error=ValueError)

    @property
    def max_size(self) -> int:
        """Most processed ids remembered (the oldest are forgotten first)."""
        return self._max_size

    @max_size.setter
    def max_size(self, value: int) -> None:
        check_count(value, "max_size", error=ValueError)
        self._max_size = value

    def __len__(self) -> int:
        return len(self._seen) + len(self._running)

    def seen(self, event_id: str) -> bool:
        """True when ``event_id`` is being processed, or was and has not expired."""
        if event_id in self._running:
            return True
        return self._done(event_id)

    def _done(self, event_id: str) -> bool:
        expires = self._seen.get(event_id)
        return expires is not None and expires > time.monotonic()

    async def __call__(self, event: Event, next_handler: NextHandler) -> None:
        event_id = event.id
        running = self._running
        while True:
            if self._done(event_id):
                self._skip(event)
                return
            # looked up and claimed in one step: a get() then a store let an event loop
            # in another thread claim the id in between, and both copies ran (a waiter
            # that joined the overwritten claim was never told, and waited for ever)
            mine: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]]] = []
            waiters = running.setdefault(event_id, mine)
            if waiters is mine:
                break
            key = (id(self), event_id)
            if key in _inside.get():  # processing it again from inside its own handling
                self._skip(event)
                return
            loop = asyncio.get_running_loop()
            future: asyncio.Future[bool] = loop.create_future()
            waiters.append((loop, future))
            if running.get(event_id) is not waiters:  # it ended meanwhile (another thread)
                continue
            try:
                # the first copy's outcome: done (even if forgotten since), or failed
                if await future:
                    self._skip(event)
                    return
            finally:
                if (loop, future) in waiters:  # cancelled: withdraw; else harmless
                    waiters.remove((loop, future))
        inside = _inside.set(_inside.get() | {(id(self), event_id)})
        succeeded = False
        try:
            await next_handler(event)
            succeeded = True
        finally:
            _inside.reset(inside)
            if succeeded:  # only a success is remembered, for ttl seconds from now
                seen = self._seen
                now = time.monotonic()
                seen.pop(event_id, None)
                seen[event_id] = now + self._ttl
                self._evict(now)
            for waiting_loop, waiting in running.pop(event_id, ()):
                _tell(waiting_loop, waiting, succeeded)

    def _skip(self, event: Event) -> None:
        self.skipped += 1
        logger.debug("skipping duplicate %s (%s)", event.type, event.id)

    def _evict(self, now: float) -> None:
        seen = self._seen
        while seen:
            oldest, expires = next(iter(seen.items()))
            if expires > now and len(seen) <= self._max_size:
                return
            del seen[oldest]


def _tell(loop: asyncio.AbstractEventLoop, future: asyncio.Future[bool], succeeded: bool) -> None:
    """Give a waiting duplicate the first copy's outcome, on its own loop (any thread)."""
    if loop is asyncio._get_running_loop():
        _resolve(future, succeeded)
        return
    try:
        loop.call_soon_threadsafe(_resolve, future, succeeded)
    except RuntimeError:  # its loop closed: nobody waits there any more
        pass


def _resolve(future: asyncio.Future[bool], succeeded: bool) -> None:
    if not future.done():
        future.set_result(succeeded)
