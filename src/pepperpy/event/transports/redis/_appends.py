"""Sending a transport's ``XADD`` s: concurrent publishes coalesced into pipelines.

A publisher awaiting each publish pays one round trip, nothing more: with nothing in
flight its ``XADD`` goes out at once. Publishes that arrive while another is in flight
queue up, and a sender task ships everything queued in one pipeline on the next loop
iteration, so a burst of 100 concurrent publishes costs about one round trip, not 100.
What is sent, and what a lost reply leaves unknown, is ``_dedupe``'s; retrying a failed
publish is the transport's.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ._config import RedisOptions
from ._dedupe import Publication, send_xadds

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Appends"]

_Queued = tuple[Publication, "asyncio.Future[None]"]


class Appends:
    """The ``XADD`` s of one transport: sent at once, or queued for the next pipeline."""

    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        self._queue: list[_Queued] = []  # publishes waiting for the next pipeline
        self._sender: asyncio.Task[None] | None = None  # ships the queue next iteration
        self._in_flight = 0  # publish round trips under way

    def abandon(self) -> None:
        """Forget the queue and its sender (their event loop ended)."""
        self._sender = None
        self._queue = []

    async def send(self, client: Redis, publication: Publication, deadline: float) -> None:
        """``XADD``, coalescing concurrent publishes into pipelined round trips.

        With nothing in flight the command goes out at once; otherwise it is queued for
        the pipeline the sender task ships on the next loop iteration. Either way the
        round trip ends by ``deadline`` (loop time) with :class:`TimeoutError` if Redis
        has not answered: redis-py's own socket timeouts and retry would take longer
        than ``connect_timeout``. Sent by
        :func:`~._dedupe.send_xadds`: never twice by redis-py, and recorded in
        ``publication`` when it went out and no reply came.
        """
        if not self._in_flight:
            self._in_flight += 1
            try:
                async with asyncio.timeout_at(deadline):
                    (result,) = await send_xadds(client, [publication], self.options.maxlen)
            finally:
                self._in_flight -= 1
            if result is not None:
                raise result
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((publication, future))
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send_queued(client))
        await future

    async def _send_queued(self, client: Redis) -> None:
        batch, self._queue, self._sender = self._queue, [], None
        self._in_flight += 1
        try:
            # one timer per pipeline, not per publish: queued publishers waited no more
            # than a loop iteration for it
            async with asyncio.timeout(self.options.connect_timeout):
                results: list[Exception | None] = await send_xadds(
                    client, [publication for publication, _ in batch], self.options.maxlen
                )
        except Exception as exc:
            results = [exc] * len(batch)
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        finally:
            self._in_flight -= 1
        for (publication, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if result is not None and not publication.appended:
                future.set_exception(result)
            else:
                future.set_result(None)
