"""A group member's partition workers: the task that consumes one held partition.

Each partition a member holds has a worker task of its own (see ``_group``). The worker
reads with a connection of its own, outside the shared pool, and goes round after
round while the partition is ours: it learns the group's position on the partition,
claims what is pending there (after a previous owner, or after a failure of its own),
sweeps orphaned entries every ``lease_ttl`` seconds, and otherwise reads new entries
with a blocking ``XREADGROUP`` and delivers them. A failed round is retried after a
pause: Redis unreachable (reported once per outage), its reader's pool full, a command
refused (a consumer group destroyed is made anew), or a bug. When the worker ends,
whatever ended it, its reader is closed and the member decides what becomes of the
partition (``GroupMember._worker_done``).

What is claimed and delivered, and the leases, are ``GroupMember``'s; this mixin only
runs the rounds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..base import resume_cancellation
from ._trimmed import GroupTally
from ._wire import Backoff, logger, parse_id

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._acks import Acks
    from ._config import RedisOptions
    from ._outage import Outages
    from ._positions import GroupPositions

__all__ = ["PartitionWorkers"]


class PartitionWorkers:
    """``GroupMember``'s partition workers: read, claim and deliver rounds, with retries."""

    if TYPE_CHECKING:  # what GroupMember provides
        group: str
        consumer: str
        _options: RedisOptions
        _streams: list[str]
        _positions: GroupPositions
        _acks: Acks
        _outages: Outages
        _new_reader: Callable[[], Redis]
        _unreachable: tuple[type[BaseException], ...]
        _pool_full: tuple[type[BaseException], ...]
        _response_error: type[Exception]
        _assigned: set[int]
        _stopping: bool
        _readers: dict[int, Redis]
        _blocked: dict[int, int]
        _sleeping: set[int]
        _failing_workers: dict[int, tuple[float, str]]

        def _ours(self, p: int) -> bool: ...
        async def _claim(self, p: int, client: Redis, suspect: bool) -> bool: ...
        async def _sweep(self, p: int, client: Redis) -> bool: ...
        async def _run(
            self,
            p: int,
            entries: list[tuple[bytes, dict[bytes, bytes]]],
            deliveries: dict[bytes, int] | None,
        ) -> bool: ...
        async def _worker_done(self, p: int, restart: bool) -> None: ...

    async def _consume(self, p: int) -> None:
        """A partition's worker: claim what is pending, then read and deliver, in order."""
        # a connection of its own for blocking reads, outside the shared pool: pinning one
        # of the shared pool's per held partition would let a few group subscriptions use
        # up its limit (docs/transport-redis.md, "Connections")
        reader = self._readers[p] = self._new_reader()
        # cancelled from outside (asyncio.run ending with the bus open): no new worker.
        # Started again, it outlived asyncio.run's one cancel-and-wait, and the loop
        # closed with it pending ("Task was destroyed but it is pending!")
        outside = False
        try:
            try:
                if p in self._assigned:
                    await self._consume_assigned(p, reader)
            except asyncio.CancelledError:
                if not self._stopping and p in self._assigned:
                    outside = True
                    raise  # cancelled from outside while still ours: let it propagate
            finally:
                self._sleeping.discard(p)
                self._blocked.pop(p, None)
                if self._readers.get(p) is reader:
                    del self._readers[p]
                await self._close_reader(p, reader)
        finally:
            self._outages.forget((self, p))
            self._failing_workers.pop(p, None)
            # whatever the cleanup above did: close() waits until every worker got here
            await self._worker_done(p, restart=not outside)

    async def _close_reader(self, p: int, reader: Redis) -> None:
        """Disconnect a worker's reader; a failure is logged, the worker ends all the same."""
        try:
            await reader.aclose()
        except (*self._unreachable, self._response_error):
            pass  # its connection is gone or going: nothing is left to release
        except Exception:
            logger.exception("group %r: closing partition %d's reader failed", self.group, p)

    async def _consume_assigned(self, p: int, reader: Redis) -> None:
        stream = self._streams[p]
        key = (self, p)  # this worker, to the transport's outage log
        backoff = Backoff(self._options.max_backoff)
        failures = 0
        claim = True
        # the next claim counts one more delivery of the oldest pending entry (see
        # _claim): it may have been in progress when a previous owner went away, or our
        # delivery of it failed. Not after a failed command of this worker: it was not
        # delivering then, and a connection cut must not count towards dead letters
        suspect = True
        reader_id: int | None = None
        refused: str | None = None  # the refusal last logged, until a round succeeds
        tally = GroupTally()  # entries trimmed before the group read them
        next_sweep = time.monotonic() + self._options.lease_ttl
        located = False  # the group's position on the partition is learnt
        while self._ours(p):
            resume_cancellation()  # one a driver call of the last round swallowed
            try:
                if not located:
                    await self._positions.locate(p, reader)
                    located = True
                if claim or p in self._acks.reclaim:
                    self._acks.reclaim.discard(p)
                    done = await self._claim(p, reader, suspect)
                    suspect = not done
                elif time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self._options.lease_ttl
                    done = await self._sweep(p, reader)
                else:
                    if reader_id is None:
                        reader_id = int(await reader.client_id())
                    if not self._ours(p):
                        break
                    self._blocked[p] = reader_id
                    try:
                        if tally.due():
                            reply: Any = await self._positions.read_counted(p, reader, tally)
                        else:
                            reply = await reader.xreadgroup(
                                self.group,
                                self.consumer,
                                {stream: ">"},
                                count=self._options.batch_size,
                                block=1000,
                            )
                    finally:
                        self._blocked.pop(p, None)
                    # cancelled as the read completed: leave what it read pending (claimed
                    # by whoever holds the partition next), deliver nothing more
                    resume_cancellation()
                    self._outages.reached(key)
                    if reply and reply[0][1]:
                        self._positions.read_to(p, parse_id(reply[0][1][-1][0]))
                    done = not reply or await self._run(p, reply[0][1], None)
                self._outages.reached(key)
                backoff = Backoff(self._options.max_backoff)
                if self._failing_workers.pop(p, None) is not None:
                    logger.info("group %r: partition %d is consumed again", self.group, p)
                if refused is not None:
                    refused = None
                    logger.warning(
                        "group %r: stream %s (partition %d) is read again", self.group, stream, p
                    )
                if done:
                    claim = False
                    failures = 0
                    continue
                # a delivery failed: retry it (and what follows) after a pause
                claim = suspect = True
                failures += 1
                delay = min(self._options.max_backoff, 0.05 * 2 ** (failures - 1))
            except self._pool_full as exc:  # the worker's own reader: one command at a time
                logger.warning(
                    "group %r: partition %d's reader has no free connection (%s: its pool's"
                    " max_connections is reached); backing off",
                    self.group,
                    p,
                    exc,
                )
                claim, delay = True, backoff.next()
            except self._unreachable as exc:
                # what a lost reply carried is pending with us now: the claim delivers it
                self._outages.lost(key, f"group {self.group!r} (partition {p})", exc)
                claim, delay, reader_id = True, backoff.next(), None
            except self._response_error as exc:
                self._outages.reached(key)  # refused, but answered
                text = str(exc)
                if text.startswith("NOGROUP"):  # destroyed, or the stream deleted
                    try:
                        await self._positions.recreate(p, reader)
                    except (*self._unreachable, self._response_error) as failure:
                        text = f"{text}; recreating the group failed: {failure}"
                    else:
                        text = ""  # logged by recreate
                if text and text != refused:  # once, not at every retry
                    logger.error(
                        "group %r: Redis refused a command on stream %s (partition %d): %s; "
                        "retrying, backing off up to %gs",
                        self.group,
                        stream,
                        p,
                        text,
                        self._options.max_backoff,
                    )
                refused = text or refused
                claim, delay = True, backoff.next()
            except Exception as exc:
                cause = f"{type(exc).__name__}: {exc}"
                failing = self._failing_workers.get(p)
                if failing is None or failing[1] != cause:  # once per cause, not per retry
                    logger.exception(
                        "group %r: unexpected error while consuming stream %s (partition "
                        "%d); retrying, backing off up to %gs",
                        self.group,
                        stream,
                        p,
                        self._options.max_backoff,
                    )
                    since = time.monotonic() if failing is None else failing[0]
                    self._failing_workers[p] = (since, cause)
                else:
                    logger.debug("group %r (partition %d): failed again: %s", self.group, p, cause)
                claim, delay = True, backoff.next()
            if not self._ours(p):
                return
            self._sleeping.add(p)
            try:
                await asyncio.sleep(delay)
            finally:
                self._sleeping.discard(p)
