"""One member of a consumer group: partition leases, claims, ordered delivery, acks.

A group (group name + pattern) is a Redis consumer group on every partition stream.
Its members share the partitions out through a member set and a lease per partition
(see ``_leases``); a member reads only the partitions it holds, so each partition is
consumed by one member at a time and events of one key (one partition) are handled in
order.

Each held partition has a worker task of its own (see ``_worker``): it first claims the
partition's pending entries (read by a previous owner that died or gave the partition
away before acknowledging them) and handles those, oldest first, then reads new ones
with a blocking ``XREADGROUP`` and handles them one after another. Partitions never wait
for each other: a slow handler holds up only its own partition. An entry delivered more
than ``max_deliveries`` times is published to ``deadletter.<topic>`` and acknowledged.
Acknowledgements leave in the background, batched over all partitions (see ``_acks``).

Entries that ``maxlen`` trims before the group read them are reported: every
``CHECK_EVERY`` seconds a worker's read carries a snapshot of the stream's and the
group's counters, which tell how many entries the group passed without reading them
(see ``_trimmed`` and ``_positions``). Pending entries trimmed before they were handled
are reported when they are claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..._bus_logging import log_fields
from ..._event import Event
from ..._handlers import cut_off, outcome, start
from ..base import (
    CONSUMER_FAILED,
    NotDelivered,
    Subscription,
    cancelled_by_caller,
    resume_cancellation,
)
from ._acks import Acks
from ._config import RedisOptions
from ._leases import REBALANCE_POLL, Leases, group_id, group_name, member_id
from ._outage import Outages
from ._pending import PendingEntries
from ._positions import GroupPositions
from ._unblock import Unblocks
from ._wire import (
    POOL_POLL,
    Backoff,
    TopicFilter,
    as_text,
    connection_errors,
    decode_event,
    entry_topic,
    logger,
    pool_errors,
    unreadable,
)
from ._worker import PartitionWorkers

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["GroupMember", "group_name", "member_id"]

DeadLetterPublisher = Callable[[Event, str, int], Awaitable[None]]

#: longest time (seconds) a worker holds a finished entry's ack before handing it to the
#: background sender, even in the middle of a batch (see GroupMember._run)
ACK_HOLD = 0.005


class GroupMember(PartitionWorkers):
    """Consumes one group subscription: leases, claims, delivers in order, acknowledges."""

    def __init__(
        self,
        sub: Subscription,
        client: Redis,
        options: RedisOptions,
        exceptions: Any,
        dead_letter: DeadLetterPublisher,
        new_reader: Callable[[], Redis],
        outages: Outages,
    ) -> None:
        self.sub = sub
        self.group = group_name(sub.group or "", sub.pattern)
        self.consumer = member_id()
        self._client = client
        self._options = options
        self._response_error: type[Exception] = exceptions.ResponseError
        self._unreachable = connection_errors(exceptions)
        self._pool_full = pool_errors(exceptions)
        self._dead_letter_publisher = dead_letter
        self._new_reader = new_reader
        self._outages = outages
        self._streams = [options.stream(p) for p in range(options.partitions)]
        self._leases = Leases(
            client, options, group_id(sub), self.group, self.consumer, self._streams
        )
        #: the group's keys in Redis: member set, a lease and a handover mark per partition
        self.members_key = self._leases.members_key
        self.lease_keys = self._leases.lease_keys
        self.handover_keys = self._leases.handover_keys
        self._pending = PendingEntries(self._streams, self.group, self.consumer, self.members_key)
        self._filter = TopicFilter(sub.pattern)
        self._positions = GroupPositions(
            client,
            self._streams,
            self.group,
            self.consumer,
            options.batch_size,
            self._response_error,
        )
        self._assigned: set[int] = set()  # held and ours: a worker consumes each
        self._releasing: set[int] = set()  # held but assigned elsewhere: give back
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._readers: dict[int, Redis] = {}  # each worker's connection for blocking reads
        self._blocked: dict[int, int] = {}  # partition -> Redis client id of its blocked read
        self._sleeping: set[int] = set()  # partitions whose worker pauses (safe to cancel)
        #: the CLIENT UNBLOCKs that wake blocked workers: one in flight per partition
        self._unblocks = Unblocks(
            client,
            options.connect_timeout,
            (*self._unreachable, self._response_error),
            self.group,
        )
        self._acks = Acks(
            client,
            self._streams,
            self.group,
            self._unreachable,
            self._pool_full,
            self._response_error,
            outages,
            options.connect_timeout,
        )
        self._lock = asyncio.Lock()
        self._stopping = False
        #: our subscription is being removed: deliver nothing more, keep the leases until
        #: close() gives the partitions (and what is pending) back with a clean handover
        self._leaving = False
        self._beater: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None  # close(), once started
        #: the heartbeat fails by something unexpected (a bug, an unreadable reply): since
        #: when (monotonic) and why, for health(); None once a heartbeat succeeds
        self._failing: tuple[float, str] | None = None
        #: partitions whose worker keeps failing unexpectedly: since when, and why
        self._failing_workers: dict[int, tuple[float, str]] = {}
        #: monotonic time until which our leases are surely valid (renewal sent + TTL)
        self._lease_deadline = 0.0

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Create the consumer group on every partition, join, start consuming."""
        await self.create_groups()
        await self._heartbeat()
        self._beater = asyncio.get_running_loop().create_task(
            self._heartbeat_loop(), name=f"pepperpy-redis-lease-{self.group}"
        )

    async def create_groups(self) -> None:
        """``XGROUP CREATE ... $ MKSTREAM`` on each partition, with the group's count of
        entries read (see ``CREATE_GROUP``); existing groups keep their place."""
        await self._positions.create_groups()

    async def close(self) -> None:
        """Finish the events in progress, acknowledge, give the partitions back, leave.

        Against a silent Redis (a network partition) this takes at most the socket
        timeout (the workers' blocking reads end by then) plus ``connect_timeout`` (the
        acknowledgements and the leave are cut off after that, and the leases expire by
        themselves); it leaves no task behind.

        One close runs, whoever asks (an unsubscribe, then the transport's close()): a
        caller cancelled meanwhile leaves it running, and the next caller waits for it.
        """
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(
                self._close(), name=f"pepperpy-redis-leave-{self.group}"
            )
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        self._stopping = True
        if self._beater is not None:
            self._beater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beater
        try:
            while self._workers:  # wake waiting workers; busy ones finish their event first
                for p in list(self._workers):
                    self._interrupt(p)
                await asyncio.wait(list(self._workers.values()), timeout=0.1)
        finally:
            await self._unblocks.cancel()
        try:
            async with asyncio.timeout(self._options.connect_timeout):
                await self._acks.flush()
                await self._leave()
        except (*self._unreachable, self._response_error) as exc:
            logger.warning(
                "group %r: could not leave cleanly (%s); its leases expire within %gs, and "
                "the other members take its partitions then",
                self.group,
                self._leave_failure(exc),
                self._options.lease_ttl,
            )
        finally:
            await self._acks.cancel()

    async def _leave(self) -> None:
        """Leave the group, waiting for a free connection while the pool has none (every
        member of a bus closes at once, and wakes its workers on the same pool): giving
        up then left the leases to expire, and the other members waited ``lease_ttl``
        for the partitions. Bounded by close()'s timeout."""
        pool_wait = Backoff(POOL_POLL, first=0.001)
        while True:
            try:
                await self._leases.leave()
                return
            except self._pool_full:
                if self._outages.down:  # the outage holds the connections: no use waiting
                    raise
                await asyncio.sleep(pool_wait.next())

    def _leave_failure(self, exc: BaseException) -> str:
        if isinstance(exc, (*self._pool_full, self._response_error)):
            return self._explain(exc)
        reason = str(exc) or f"no answer within {self._options.connect_timeout:g}s"
        return f"Redis at {self._outages.where} is unreachable: {reason}"

    def _explain(self, exc: BaseException) -> str:
        return self._outages.explain(exc, self._pool_full, self._client)

    @property
    def trimmed_unread(self) -> int:
        """How many times entries were trimmed before the group read or handled them
        (each logged)."""
        return self._positions.trimmed_unread

    @property
    def lost_entries(self) -> int:
        """How many entries were trimmed before the group read or handled them."""
        return self._positions.lost_entries

    # -- leases -----------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        async with self._lock:
            sent = time.monotonic()
            if sent >= self._lease_deadline:  # our leases may have lapsed meanwhile, and
                self._positions.forget_all()  # another member read on: what we knew is stale
            held, target = await self._leases.renew(self._options.lease_ttl_ms)
            self._lease_deadline = sent + self._options.lease_ttl * 0.95
            self._apply(held, target)

    def _apply(self, held: set[int], target: set[int]) -> None:
        """Bring partition states in line with the leases held and the assignment."""
        lost = sorted((self._assigned | self._releasing) - held)
        if lost:  # one line for all: a stall costs a member every lease at once
            logger.warning(
                "group %r lost its lease on partition%s %s",
                self.group,
                "s" if len(lost) > 1 else "",
                ", ".join(map(str, lost)),
            )
        for p in lost:
            self._assigned.discard(p)
            self._releasing.discard(p)
            self._positions.forget(p)  # others read on: what we knew goes stale
            self._interrupt(p)
        for p in held:
            if p in target:
                self._releasing.discard(p)
                self._assigned.add(p)
            else:
                self._assigned.discard(p)
                self._releasing.add(p)
                self._interrupt(p)
        if self._stopping:
            return
        for p in self._assigned | self._releasing:
            if p not in self._workers and (p in self._releasing or self._ours(p)):
                self._spawn(p)

    def _interrupt(self, p: int) -> None:
        """Wake a waiting worker so it notices the partition is no longer its to read.

        A worker in a blocking read is woken with ``CLIENT UNBLOCK`` (its read returns
        empty), never by cancelling the read: a cancelled read may still be served by
        Redis after we gave the partition away, leaving an entry pending with a consumer
        that will never handle it. A pausing worker is cancelled; a busy one finishes
        its event first.
        """
        worker = self._workers.get(p)
        if worker is None:
            return
        if p in self._sleeping:
            worker.cancel()
        elif p in self._blocked:  # at most one CLIENT UNBLOCK in flight for it (_unblock)
            self._unblocks.send(p, self._blocked[p])

    def abandon(self) -> list[Redis]:
        """Forget the workers (their loop ended); return the reader clients they held."""
        self._stopping = True
        self._workers.clear()
        readers, self._readers = list(self._readers.values()), {}
        return readers

    def _spawn(self, p: int) -> None:
        self._workers[p] = asyncio.get_running_loop().create_task(
            self._consume(p), name=f"pepperpy-redis-{self.group}-{p}"
        )

    async def _heartbeat_loop(self) -> None:
        """A heartbeat every ``heartbeat`` seconds, and one as soon as the group's epoch
        moved (a member joined or left, a lease was given back): see ``_leases``."""
        last_ok = time.monotonic()
        key = (self, "leases")
        due = time.monotonic() + self._options.heartbeat
        pool_wait: Backoff | None = None  # the pool had no free connection: poll it
        try:
            while not self._stopping:
                resume_cancellation()  # one the last renewal's driver call swallowed
                await asyncio.sleep(max(0.0, min(REBALANCE_POLL, due - time.monotonic())))
                if time.monotonic() < due and not await self._rebalance_asked():
                    continue
                due = time.monotonic() + self._options.heartbeat
                try:
                    await self._heartbeat()
                    last_ok = time.monotonic()
                    pool_wait = None
                    self._outages.reached(key)
                    if self._failing is not None:
                        self._failing = None
                        logger.info("group %r: its leases are renewed again", self.group)
                except asyncio.CancelledError as exc:
                    if cancelled_by_caller() or self._stopping:
                        raise
                    # not ours: a driver failed a future of its with it
                    self._unexpected(exc)
                except (*self._unreachable, self._response_error) as exc:
                    pool = self._outages.pool_blamed(exc, self._pool_full)
                    if pool:
                        # a connection comes back within a round trip: try again soon
                        # rather than at the next heartbeat, when the leases may have
                        # lapsed (warned once while the pool stays full)
                        if pool_wait is None:
                            pool_wait = Backoff(POOL_POLL, first=0.001)
                            logger.warning(
                                "group %r: lease renewal failed: %s; trying again as soon "
                                "as a connection is free",
                                self.group,
                                self._explain(exc),
                            )
                        due = time.monotonic() + pool_wait.next()
                    elif isinstance(exc, self._response_error):
                        self._outages.reached(key)  # refused, but answered
                        logger.warning(
                            "group %r: lease renewal failed: %s", self.group, self._explain(exc)
                        )
                    else:
                        self._outages.lost(key, f"group {self.group!r} renewing its leases", exc)
                except Exception as exc:  # ending here would stop the member for good
                    self._unexpected(exc)
                if time.monotonic() - last_ok > self._options.lease_ttl:
                    self._apply(set(), set())  # our leases have expired by now
        finally:
            self._outages.forget(key)

    def _unexpected(self, exc: BaseException) -> None:
        """A heartbeat failed by something else than Redis unreachable or refusing: log
        it with its traceback (once per cause, not at every heartbeat), let health() say
        so; the next heartbeat tries again."""
        cause = f"{type(exc).__name__}: {exc}"
        failing = self._failing
        if failing is not None and failing[1] == cause:
            logger.debug("group %r: lease renewal failed again (%s)", self.group, cause)
            return
        self._failing = (time.monotonic() if failing is None else failing[0], cause)
        logger.error(
            "group %r: lease renewal failed unexpectedly (%s); retrying at every heartbeat. "
            "The member delivers nothing once its leases lapse, until a renewal succeeds",
            self.group,
            cause,
            exc_info=exc,
        )

    def failure(self) -> tuple[float, tuple[str, str]] | None:
        """Since when (monotonic) and why this member's heartbeat, or a partition
        worker's rounds, keep failing unexpectedly, for health(); None while all run."""
        if self._stopping:
            return None
        failing = self._failing
        if failing is not None:
            return failing[0], (
                CONSUMER_FAILED,
                f"the lease heartbeat of Redis group {self.group!r} keeps failing ({failing[1]})",
            )
        workers = dict(self._failing_workers)
        if not workers:
            return None
        p = min(workers, key=lambda p: workers[p][0])
        return workers[p][0], (
            CONSUMER_FAILED,
            f"Redis group {self.group!r} consumes nothing from partition {p}: its worker "
            f"keeps failing ({workers[p][1]})",
        )

    async def _rebalance_asked(self) -> bool:
        """Whether the group's epoch moved since our last heartbeat. A failure says no:
        the heartbeat, when due, meets it and reports it."""
        try:
            return await self._leases.moved()
        except (*self._unreachable, self._response_error):
            return False
        except asyncio.CancelledError:
            if cancelled_by_caller() or self._stopping:
                raise
            return False  # not ours: a driver failed a future of its with it
        except Exception as exc:  # the heartbeat, when due, meets it and reports it
            logger.debug("group %r: reading the group's epoch failed: %r", self.group, exc)
            return False

    # -- consuming --------------------------------------------------------------------

    def _ours(self, p: int) -> bool:
        """True while we may deliver ``p``'s events: assigned, and the lease surely valid.

        The local deadline is the fence against a stalled member: if our loop was held up
        so long that the lease may have expired (and another member may have taken the
        partition), we deliver nothing more until a heartbeat has renewed it.
        """
        return (
            not self._stopping
            and not self._leaving
            and p in self._assigned
            and time.monotonic() < self._lease_deadline
        )

    async def _worker_done(self, p: int, restart: bool) -> None:
        """Give a partition back once its worker stopped; restart it if it is ours again
        (unless not ``restart``: the worker was cancelled from outside, and the next
        heartbeat starts one if the member lives on)."""
        async with self._lock:
            if self._workers.get(p) is asyncio.current_task():
                del self._workers[p]
            if self._stopping:
                return
            if p in self._releasing:
                try:
                    await self._acks.flush()  # the next owner must not see them as pending
                    await self._leases.give_back(p)
                except (*self._unreachable, self._response_error) as exc:
                    logger.warning(
                        "group %r: could not give back partition %d: %s",
                        self.group,
                        p,
                        self._explain(exc),
                    )
                    return  # the lease expires by itself
                self._releasing.discard(p)
                self._positions.forget(p)  # the next owner reads on: ours goes stale
            elif restart and self._ours(p) and p not in self._workers:
                self._spawn(p)

    async def _claim(self, p: int, client: Redis, suspect: bool) -> bool:
        """Take over partition ``p``'s pending entries and handle them; True when all done.

        Taking an entry over does not count as a delivery of it (``XCLAIM ... JUSTID``):
        most pending entries were only read ahead by a previous owner, never started, and
        counting them would dead-letter healthy events after ``max_deliveries`` handovers.
        A partition's entries are handled one at a time, oldest first, so at most one of
        them (the oldest pending) may have been in progress when its owner went away. That
        one is counted, unless the previous owner handed the partition over cleanly (it
        finished its event in progress and marked the handover, see ``_leases.RELEASE``): a
        consumer that crashes the process on an event every time thus still has that
        event dead-lettered after ``max_deliveries`` tries, while members joining and
        leaving count nothing. The same count applies when our own delivery failed. Without
        ``suspect`` (this worker claims after one of its own commands failed, or its acks
        did: it was delivering nothing then) nothing is counted.
        """
        stream = self._streams[p]
        await self._acks.flush()
        clean: Any = await client.getdel(self.handover_keys[p])
        count_oldest = suspect and clean is None
        start = "-"
        while self._ours(p):
            resume_cancellation()
            rows: Any = await client.xpending_range(
                stream, self.group, start, "+", self._options.batch_size
            )
            if not rows:
                await self._prune_consumers(p, client)
                return True
            taken = await self._pending.take(p, client, rows, count_oldest)
            count_oldest = False  # counted (with the first page) or not, once
            if taken.gone:  # trimmed away while pending: nothing to deliver
                self._acks.later(p, taken.gone)
            if taken.gone or taken.dropped:
                self._positions.trimmed_pending(p, taken.gone + taken.dropped)
            if taken.entries and not await self._run(p, taken.entries, taken.deliveries):
                return False
            if len(rows) < self._options.batch_size:
                await self._prune_consumers(p, client)
                return True
            start = "(" + as_text(rows[-1]["message_id"])
        return False

    async def _sweep(self, p: int, client: Redis) -> bool:
        """Claim entries pending with *other* consumers of a partition we hold, and handle them.

        Holding the lease means no one else may be handling them: they are orphans (a
        member that lost its lease while a read of its was under way). Rare, so this
        runs every ``lease_ttl`` seconds and only takes entries idle that long.
        """
        idle_ms = self._options.lease_ttl_ms
        orphans = await self._pending.orphans(p, client, idle_ms, self._options.batch_size)
        if not orphans:
            return True
        logger.warning(
            "group %r: claiming %d orphaned entries of partition %d", self.group, len(orphans), p
        )
        taken = await self._pending.take_orphans(p, client, orphans, idle_ms)
        if taken.gone:
            self._acks.later(p, taken.gone)  # still pending where Redis returned them empty
            self._positions.trimmed_pending(p, taken.gone)
        return await self._run(p, taken.entries, taken.deliveries)

    async def _prune_consumers(self, p: int, client: Redis) -> None:
        """Delete consumers of dead members that hold nothing (killed processes leave them)."""
        await self._pending.prune_consumers(p, client)

    async def _run(
        self,
        p: int,
        entries: list[tuple[bytes, dict[bytes, bytes]]],
        deliveries: dict[bytes, int] | None,
    ) -> bool:
        """Deliver ``entries`` of partition ``p`` in order, acknowledging each one done.

        Returns False when a delivery failed (that entry and the ones after it stay
        pending, to be claimed and delivered again) or the partition is no longer ours.

        The acks of finished entries are handed to the background sender when the batch
        ends, or ``ACK_HOLD`` seconds after the first of them was held, whichever comes
        first (a timer, so a slow handler that follows quick ones does not hold their
        acks back). A burst of quick events thus costs one ``XACK`` per batch even though
        each delivery, a Task of its own, lets the loop run in between.
        """
        loop = asyncio.get_running_loop()
        done: list[bytes] = []  # finished, ack not handed over yet
        timer: asyncio.TimerHandle | None = None

        def hand_over() -> None:
            nonlocal timer
            timer = None
            self._acks.later(p, done)
            done.clear()

        try:
            for entry_id, fields in entries:
                if not self._ours(p) or not await self._handle(p, entry_id, fields, deliveries):
                    return False
                done.append(entry_id)
                if timer is None:
                    timer = loop.call_later(ACK_HOLD, hand_over)
            return True
        finally:
            if timer is not None:
                timer.cancel()
            if done:
                hand_over()

    async def _handle(
        self,
        p: int,
        entry_id: bytes,
        fields: dict[bytes, bytes],
        deliveries: dict[bytes, int] | None,
    ) -> bool:
        """Deliver one entry (or skip or dead-letter it); True when it may be acknowledged."""
        try:  # an entry that cannot be read is acknowledged, never retried (see unreadable)
            if not self._filter(entry_topic(fields)):
                return True
            event = decode_event(fields)
        except Exception as exc:
            unreadable(f"group {self.group!r}", self._streams[p], entry_id, exc, "acknowledging")
            return True
        if self.sub.removed:  # unsubscribed (maybe by its own handler): left pending
            self._leaving = True
            return False
        delivered = deliveries.get(entry_id, 1) if deliveries else 1
        if delivered > self._options.max_deliveries:
            await self._dead_letter_publisher(event, self.sub.group or "", delivered - 1)
            return True
        # a Task of its own, so that the handler's asyncio.timeout or TaskGroup acts on
        # it and not on this worker; a CancelledError it raises is its own failure
        failure = await outcome(start(self.sub.deliver(event)))
        if isinstance(failure, NotDelivered):
            self._leaving = True
            return False
        if cut_off(failure):  # serve()'s shutdown_timeout: it logged that
            logger.debug(
                "group %r: delivery of %s (%s) cancelled", self.group, event.type, event.id
            )
            return False
        if failure is not None:
            logger.error(
                "group %r: delivery of %s (%s) failed; it will be redelivered",
                self.group,
                event.type,
                event.id,
                exc_info=failure,
                extra=log_fields(
                    "delivery_failed",
                    event_id=event.id,
                    event_type=event.type,
                    group=self.sub.group,
                ),
            )
            return False
        return True
