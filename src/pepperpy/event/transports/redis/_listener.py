"""Ungrouped subscriptions: one live ``XREAD`` over every partition, filtered locally.

Ungrouped subscribers are listeners, not durable consumers: they leave no state in
Redis (no consumer group, nothing pending), so nothing piles up after the process
exits. All ungrouped subscriptions of a transport share one reader; a
:class:`~pepperpy.event.PatternIndex` picks the subscriptions each entry goes to.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from ..._errors import PatternError, SerializationError
from ..._handlers import outcomes, start
from ..._patterns import PatternIndex
from ..base import Subscription
from ._config import RedisOptions
from ._wire import (
    Backoff,
    connection_errors,
    decode_event,
    entry_topic,
    logger,
    pool_errors,
    pool_exhausted,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Listener"]


class Listener:
    """Reads every partition from "now" on and fans entries out to matching subscriptions."""

    def __init__(self, client: Redis, options: RedisOptions, exceptions: Any) -> None:
        self._client = client
        self._options = options
        self._unreachable = connection_errors(exceptions)
        self._pool_full = pool_errors(exceptions)
        self._index: PatternIndex[Subscription] = PatternIndex()
        self._streams = [options.stream(p) for p in range(options.partitions)]
        self._names = {name.encode(): name for name in self._streams}
        self._positions: dict[Any, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._idle = False

    async def add(self, sub: Subscription) -> None:
        """Register ``sub``; events published after this returns reach it."""
        if self._task is None:
            await self._mark_positions()
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name="pepperpy-redis-listener"
            )
        self._index.add(sub.pattern, sub)

    async def _mark_positions(self) -> None:
        """Remember each stream's last entry id: reading starts right after it."""
        pipe = self._client.pipeline(transaction=False)
        for stream in self._streams:
            pipe.xrevrange(stream, count=1)
        for stream, last in zip(self._streams, await pipe.execute(), strict=True):
            self._positions[stream] = last[0][0] if last else b"0-0"

    async def close(self) -> None:
        """Stop reading; an event being delivered is finished first."""
        self._stopping = True
        task = self._task
        if task is None:
            return
        if self._idle:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _loop(self) -> None:
        backoff = Backoff(self._options.max_backoff)
        while not self._stopping:
            self._idle = True
            try:
                reply: Any = await self._client.xread(
                    self._positions, count=self._options.batch_size, block=1000
                )
            except self._pool_full:
                logger.warning(
                    "listener: no free Redis connection to read with: %s; backing off",
                    pool_exhausted(self._client),
                )
                await asyncio.sleep(backoff.next())
                continue
            except self._unreachable as exc:
                logger.warning("listener: Redis unreachable (%s); reconnecting", exc)
                await asyncio.sleep(backoff.next())
                continue
            finally:
                self._idle = False
            backoff = Backoff(self._options.max_backoff)
            if not reply:
                continue
            runs = []
            for name, entries in reply:
                if entries:
                    self._positions[self._names[name]] = entries[-1][0]
                    runs.append(entries)
            if len(runs) == 1:
                await self._dispatch(runs[0])
            elif runs:
                await asyncio.gather(*(self._dispatch(entries) for entries in runs))

    async def _dispatch(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        for entry_id, fields in entries:
            if self._stopping:
                return
            topic = entry_topic(fields)
            if topic is None:
                logger.warning("listener: skipping entry %s without a readable event", entry_id)
                continue
            try:
                subs = self._index.match(topic)
            except PatternError:
                logger.warning(
                    "listener: skipping entry %s with malformed topic %r", entry_id, topic
                )
                continue
            if not subs:
                continue
            try:
                event = decode_event(fields)
            except SerializationError as exc:
                logger.error(
                    "listener: skipping unreadable entry %s of %s: %s", entry_id, topic, exc
                )
                continue
            running: list[asyncio.Future[Any]] = []
            for sub in subs:
                try:
                    # a Task of its own: a handler's asyncio.timeout or TaskGroup must not
                    # act on this loop, which every ungrouped subscription shares
                    running.append(start(sub.deliver(event)))
                except Exception:
                    logger.exception("listener: delivery of %s (%s) failed", topic, event.id)
            if running:
                for failure in await outcomes(running):
                    if failure is not None:  # e.g. a handler's own CancelledError
                        logger.error(
                            "listener: delivery of %s (%s) failed",
                            topic,
                            event.id,
                            exc_info=failure,
                        )
