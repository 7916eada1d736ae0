"""Deduplication by event id, with bounded memory and a time to live."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from .._event import Event
from .._options import check_count
from .._processor import NextHandler
from .._seconds import check_seconds

__all__ = ["DeduplicateMiddleware"]

logger = logging.getLogger("pepperpy.event.processor")


class DeduplicateMiddleware:
    """Skip events whose id was processed successfully in the last ``ttl`` seconds.

    At-least-once sources (brokers, store subscriptions) redeliver; this makes handlers
    see each id once *within this process's lifetime*: the ids are kept in memory, so a
    restart (or another consumer process) starts with none, and what a crashed process
    handled but did not checkpoint runs again. Across restarts and processes, make the
    handler idempotent (an upsert, the notification system's ``idempotency=`` store) or
    keep its effect with its position (a ``TableProjection``). The ``ttl`` counts from
    the moment processing
    succeeded. At most ``max_size`` processed ids are remembered (the oldest are
    forgotten first), so memory stays bounded; ids still being processed are kept apart
    and never forgotten, so a duplicate that arrives while the first copy is still being
    processed is skipped however long that takes. An event whose processing failed is
    forgotten, so its redelivery runs again.
    """

    def __init__(self, *, ttl: float = 3600.0, max_size: int = 100_000) -> None:
        ttl = check_seconds(ttl, "ttl", error=ValueError)
        check_count(max_size, "max_size", error=ValueError)
        self.ttl = ttl
        self.max_size = max_size
        self.skipped = 0
        self._seen: OrderedDict[str, float] = OrderedDict()  # processed: id -> expiry
        self._running: set[str] = set()  # ids being processed right now

    def __len__(self) -> int:
        return len(self._seen) + len(self._running)

    def seen(self, event_id: str) -> bool:
        """True when ``event_id`` is being processed, or was and has not expired."""
        if event_id in self._running:
            return True
        expires = self._seen.get(event_id)
        return expires is not None and expires > time.monotonic()

    async def __call__(self, event: Event, next_handler: NextHandler) -> None:
        event_id = event.id
        if self.seen(event_id):
            self.skipped += 1
            logger.debug("skipping duplicate %s (%s)", event.type, event_id)
            return
        running = self._running
        running.add(event_id)
        try:
            await next_handler(event)
        finally:
            running.discard(event_id)
        # only a success is remembered, for ttl seconds from now
        seen = self._seen
        now = time.monotonic()
        seen.pop(event_id, None)
        seen[event_id] = now + self.ttl
        self._evict(now)

    def _evict(self, now: float) -> None:
        seen = self._seen
        while seen:
            oldest, expires = next(iter(seen.items()))
            if expires > now and len(seen) <= self.max_size:
                return
            del seen[oldest]
