"""Deduplication by event id, with bounded memory and a time to live."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from .._event import Event
from .._processor import NextHandler

__all__ = ["DeduplicateMiddleware"]

logger = logging.getLogger("pepperpy.event.processor")


class DeduplicateMiddleware:
    """Skip events whose id was processed successfully in the last ``ttl`` seconds.

    At-least-once sources (brokers, store subscriptions after a restart) redeliver; this
    makes handlers see each id once. At most ``max_size`` ids are remembered (the oldest
    are forgotten first), so memory stays bounded. An event whose processing failed is
    forgotten, so its redelivery runs again; a duplicate that arrives while the first
    copy is still being processed is skipped.
    """

    def __init__(self, *, ttl: float = 3600.0, max_size: int = 100_000) -> None:
        if not isinstance(ttl, int | float) or isinstance(ttl, bool) or ttl <= 0:
            raise ValueError(f"ttl must be a number of seconds > 0, got {ttl!r}")
        if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 1:
            raise ValueError(f"max_size must be an int >= 1, got {max_size!r}")
        self.ttl = float(ttl)
        self.max_size = max_size
        self.skipped = 0
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, event_id: str) -> bool:
        """True when ``event_id`` is remembered and has not expired."""
        expires = self._seen.get(event_id)
        return expires is not None and expires > time.monotonic()

    async def __call__(self, event: Event, next_handler: NextHandler) -> None:
        event_id = event.id
        now = time.monotonic()
        seen = self._seen
        expires = seen.get(event_id)
        if expires is not None:
            if expires > now:
                self.skipped += 1
                logger.debug("skipping duplicate %s (%s)", event.type, event_id)
                return
            del seen[event_id]
        self._evict(now)
        seen[event_id] = now + self.ttl
        try:
            await next_handler(event)
        except BaseException:
            seen.pop(event_id, None)
            raise

    def _evict(self, now: float) -> None:
        seen = self._seen
        while seen:
            oldest, expires = next(iter(seen.items()))
            if expires > now and len(seen) < self.max_size:
                return
            del seen[oldest]
