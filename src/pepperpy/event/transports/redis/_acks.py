"""A group member's acknowledgements: queued as entries finish, sent in the background.

Finished entries are queued per partition; one background task sends every queued
acknowledgement in one pipelined round trip (``XACK`` per partition), and whatever was
queued meanwhile in the next. An acknowledgement that fails leaves its entries pending
with the member: their partitions are marked for a new claim, which delivers them again
before the worker reads on (see ``GroupMember._consume_assigned``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..base import cancelled_by_caller
from ._outage import Outages
from ._wire import POOL_POLL, Backoff, logger

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Acks"]


class Acks:
    """Acknowledges a group member's finished entries, all partitions in one round trip."""

    def __init__(
        self,
        client: Redis,
        streams: list[str],
        group: str,
        unreachable: tuple[type[BaseException], ...],
        pool_full: tuple[type[BaseException], ...],
        response_error: type[Exception],
        outages: Outages,
        patience: float,
    ) -> None:
        self._client = client
        self._streams = streams
        self._group = group
        self._unreachable = unreachable
        self._pool_full = pool_full
        self._response_error = response_error
        self._outages = outages
        #: how long acks wait for a free connection of a full pool (``connect_timeout``)
        self._patience = patience
        #: partitions whose acks failed: claim what is pending again before reading
        self.reclaim: set[int] = set()
        self._queued: dict[int, list[bytes]] = {}  # done, acknowledgement not sent yet
        self._task: asyncio.Task[None] | None = None

    def later(self, p: int, entry_ids: list[bytes]) -> None:
        """Queue acknowledgements; one background round trip sends all queued ones."""
        self._queued.setdefault(p, []).extend(entry_ids)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        full_since: float | None = None  # the pool has had no free connection since
        pool_wait = Backoff(POOL_POLL, first=0.001)
        try:
            while self._queued:
                batch, self._queued = self._queued, {}
                pipe = self._client.pipeline(transaction=False)
                for p, ids in batch.items():
                    pipe.xack(self._streams[p], self._group, *ids)
                try:
                    await pipe.execute()
                    full_since = None
                except self._pool_full as exc:
                    # every connection busy: one comes back within a round trip. Giving
                    # up at once delivered these finished events again
                    now = loop.time()
                    full_since = now if full_since is None else full_since
                    if self._outages.down or now - full_since >= self._patience:
                        self._failed(batch, exc)
                        continue
                    for p, ids in batch.items():  # ahead of what was queued meanwhile
                        self._queued[p] = ids + self._queued.get(p, [])
                    await asyncio.sleep(pool_wait.next())
                except (*self._unreachable, self._response_error) as exc:
                    self._failed(batch, exc)
                except asyncio.CancelledError:
                    if cancelled_by_caller():  # cancel(): the next owner redelivers them
                        raise
                    # not ours: a driver failed a future of its with it (a lost connection)
                    logger.warning("group %r: acknowledgement cut off; will redeliver", self._group)
                    self.reclaim.update(batch)
                except Exception:  # left unmarked, they stay pending with us, unclaimed
                    logger.exception(
                        "group %r: acknowledgement failed unexpectedly; will redeliver",
                        self._group,
                    )
                    self.reclaim.update(batch)
        finally:
            self._task = None

    def _failed(self, batch: dict[int, list[bytes]], exc: BaseException) -> None:
        """Report a failed acknowledgement; its partitions claim their entries again."""
        pool = self._outages.pool_blamed(exc, self._pool_full)
        if pool or isinstance(exc, self._response_error):
            logger.warning(
                "group %r: acknowledgement failed (%s); will redeliver",
                self._group,
                self._outages.explain(exc, self._pool_full, self._client),
            )
        else:
            who = f"group {self._group!r} acknowledging (will redeliver)"
            self._outages.lost(None, who, exc)
        self.reclaim.update(batch)

    async def flush(self) -> None:
        """Wait until every queued acknowledgement has reached Redis (or failed)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def cancel(self) -> None:
        """Stop sending (the member's close() gave up waiting for Redis); what was not
        acknowledged stays pending, and the partition's next owner delivers it again."""
        self._queued = {}
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
