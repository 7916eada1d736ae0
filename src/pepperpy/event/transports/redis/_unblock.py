"""Waking a group member's workers out of their blocking reads with ``CLIENT UNBLOCK``.

A worker in ``XREADGROUP ... BLOCK`` is woken by ``CLIENT UNBLOCK <its connection id>``
sent on the shared client (its read returns empty), never by cancelling the read (see
``GroupMember._interrupt``). close() asks every 0.1 s until its workers have ended, and
a lost lease asks too; each ask used to send a command of its own. Against a silent
Redis (a network partition) each one held a pooled connection until the socket timeout:
16 partitions filled a 100-connection pool in under a second, and the commands outlived
close() (operations audit, finding 2). Here a partition has at most one ``CLIENT
UNBLOCK`` in flight, cut off after ``connect_timeout`` seconds (asked again after that
if the worker still reads), and :meth:`Unblocks.cancel` ends those still in flight.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Unblocks"]


class Unblocks:
    """At most one ``CLIENT UNBLOCK`` in flight per partition, each bounded in time."""

    __slots__ = ("_client", "_errors", "_name", "_tasks", "_timeout")

    def __init__(
        self, client: Redis, timeout: float, errors: tuple[type[BaseException], ...], name: str
    ) -> None:
        self._client = client
        self._timeout = timeout
        #: what a failed unblock raises (Redis unreachable or refusing): the worker's own
        #: read meets the same failure and reports it
        self._errors: tuple[type[BaseException], ...] = (*errors, TimeoutError)
        self._name = name
        self._tasks: dict[int, asyncio.Task[None]] = {}

    def send(self, p: int, client_id: int) -> None:
        """Unblock partition ``p``'s reader (connection ``client_id``), unless one is under way."""
        if p in self._tasks:
            return
        self._tasks[p] = asyncio.get_running_loop().create_task(
            self._unblock(p, client_id), name=f"pepperpy-redis-unblock-{self._name}-{p}"
        )

    async def _unblock(self, p: int, client_id: int) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.client_unblock(client_id)
        except self._errors:
            pass
        finally:
            if self._tasks.get(p) is asyncio.current_task():
                del self._tasks[p]

    async def cancel(self) -> None:
        """End the unblocks still under way (their workers have ended); wait for them."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
