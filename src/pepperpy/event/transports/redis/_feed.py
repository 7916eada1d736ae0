"""One ungrouped subscription's side of the shared reader: its :class:`Feed`.

The shared reader (``Listener``, in ``_listener``) reads every partition once for all
ungrouped subscriptions and hands each entry to the feed of every matching
subscription. A feed keeps a lane per partition, at most ``batch_size`` events each,
delivered one after another by a worker of the lane's own; lanes and feeds run
concurrently, so a slow handler holds up only its own subscription (and within it only
its partition).

When a lane is full the reader waits at most ``ROOM_WAIT`` seconds for it, then lets it
*fall behind*: the feed catches up by itself, reading that partition from the last entry
it took with non-blocking ``XREAD`` calls as room frees up, until it has reached the
shared reader's position and rejoins it. A feed catching up checks its own count against
the reader's numbers wherever its reads meet a position the reader had reached (what the
reader got and the feed did not is what the feed lost), and reads one entry more than it
hands out, so that a gap a read jumps is reported at once.

A feed joining a running reader starts from the reader's position (where its numbers
are known) but delivers only what follows the streams' last ids taken as it subscribed:
the entries in between were published before. Until it knows those ids it is behind on
every partition, and it reads back by itself what the reader read meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from ..._bus_logging import log_fields
from ..._event import Event
from ..._handlers import cut_off, outcome, start
from ..base import NotDelivered, Subscription, cancelled_by_caller, resume_cancellation
from ._config import RedisOptions
from ._trimmed import id_text
from ._wire import (
    Backoff,
    Entries,
    TopicFilter,
    as_text,
    decode_event,
    entry_topic,
    logger,
    parse_id,
    pool_exhausted,
    stream_names,
    unreadable,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._listener import Listener

__all__ = ["ROOM_WAIT", "Anchor", "Feed", "StreamId"]

#: longest time (seconds) the shared reader waits for a full lane to free a slot before
#: letting it fall behind: a handler that keeps up frees one within microseconds (no
#: re-reading then), while a slow one delays the other subscriptions by this much at most
ROOM_WAIT = 0.02

StreamId = tuple[int, int]
#: an entry known to exist, with the reader's number for it
Anchor = tuple[StreamId, int]


class Feed:
    """One ungrouped subscription's buffered events: a bounded, ordered lane per partition."""

    def __init__(
        self,
        sub: Subscription,
        listener: Listener,
        client: Redis,
        options: RedisOptions,
        unreachable: tuple[type[BaseException], ...],
        pool_full: tuple[type[BaseException], ...],
        *,
        joining: bool = False,
    ) -> None:
        self.sub = sub
        self._listener = listener
        self._client = client
        self._options = options
        self._unreachable = unreachable
        self._pool_full = pool_full
        self._capacity = options.batch_size
        self._filter = TopicFilter(sub.pattern)
        #: per partition, the last entry this feed took (delivered, queued or skipped)
        self._taken: list[StreamId] = list(listener.ids)
        self._taken_raw: list[bytes] = [b"%d-%d" % position for position in listener.ids]
        #: per partition, the shared reader's number for that entry (Listener.numbers)
        self._numbers: list[int] = list(listener.numbers)
        #: per partition, where the subscription starts: entries up to it were published
        #: before it subscribed, and are taken but not delivered (see start_after)
        self._starts_after: list[StreamId] = list(listener.ids)
        self._lanes: list[deque[Event]] = [deque() for _ in listener.streams]
        self._workers: dict[int, asyncio.Task[None]] = {}
        #: partitions whose lane overflowed: read them here. Every one while the feed
        #: joins a running reader, until it knows where it starts (see start_after)
        self._behind: set[int] = set(range(len(listener.streams))) if joining else set()
        #: per partition behind, an entry known to exist that it must read next (the one
        #: it could not take, then the one after each catch-up read): finding a later
        #: entry first means the stream was trimmed under it
        self._expected: list[StreamId | None] = [None] * len(listener.streams)
        #: per partition behind, a position the shared reader had reached (with its number)
        #: beyond what this feed has read: the catch-up read that gets there checks the count
        self._anchor: list[Anchor | None] = [None] * len(listener.streams)
        #: per partition, where this feed's count last matched the shared reader's
        self._checked_at: list[StreamId] = list(listener.ids)
        self._room = asyncio.Event()  # a lane of a partition behind has room again
        #: the shared reader waits for room in this lane: (partition, its future)
        self._room_waiter: tuple[int, asyncio.Future[bool]] | None = None
        self._catching_up: asyncio.Task[None] | None = None
        self._refusal: str | None = None  # the last refusal of a catch-up read logged
        self._reading: list[str] = []  # the streams of the last catch-up read
        self._waiting = False  # the catch-up task waits for room (safe to cancel)
        self.key = 0  # its key in the listener's pattern index
        #: how many times it found entries it had to read trimmed away (each logged)
        self.trimmed_unread = 0
        #: how many entries it lost that way, where counted (a lower bound elsewhere)
        self.lost_entries = 0
        self.stopping = False  # unsubscribed: read nothing more
        #: catching up keeps failing unexpectedly: since when (monotonic), and why
        self.failing: tuple[float, str] | None = None

    def wants(self, p: int, position: StreamId) -> bool:
        """True if the shared reader's entry at ``position`` of ``p`` is for this feed."""
        return p not in self._behind and position > self._taken[p]

    def full(self, p: int) -> bool:
        return len(self._lanes[p]) >= self._capacity

    async def room(self, p: int) -> bool:
        """Wait up to ``ROOM_WAIT`` seconds for room in lane ``p``; True if there is some.

        Waits for the lane to be half empty rather than for one slot, so a lane kept full
        by a quick handler costs one wake-up per half lane, not one per event.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._room_waiter = (p, waiter)
        timer = loop.call_later(ROOM_WAIT, _settle, waiter, False)
        try:
            await waiter
        finally:
            timer.cancel()
            self._room_waiter = None
        return not self.full(p)

    def start_after(self, last: list[StreamId]) -> None:
        """Deliver what follows ``last`` (each partition's last id, taken as it subscribed).

        A feed joining a running reader is made behind on every partition: the reader
        may be short of the streams' ends, and what lies before them was published before
        the subscription. It takes from the reader's position on but delivers only what
        follows ``last``; a partition the reader read on meanwhile (skipping this feed) is
        read back here from that position, so that nothing after ``last`` is skipped.
        """
        self._starts_after = last
        listener = self._listener
        for p in list(self._behind):
            if self._taken[p] >= listener.ids[p]:
                self._behind.discard(p)  # nothing read meanwhile: the reader feeds it
        self._catch_up_soon()

    def fall_behind(self, p: int, position: StreamId) -> None:
        """Stop taking ``p`` from the shared reader at ``position``; read it here instead."""
        self._behind.add(p)
        self._expected[p] = position
        self._catch_up_soon()

    def _catch_up_soon(self) -> None:
        if (
            self._behind
            and self._catching_up is None
            and not (self._listener.stopping or self.stopping)
        ):
            self._catching_up = asyncio.get_running_loop().create_task(
                self._catch_up(), name=f"pepperpy-redis-catch-up-{self.sub.pattern}"
            )

    def take(
        self, p: int, position: StreamId, entry_id: bytes, event: Event | None, number: int
    ) -> None:
        """Queue ``event`` (None: an entry for others) as the next of partition ``p``.

        ``number`` is the shared reader's number for the entry (Listener.numbers).
        """
        self._taken[p] = position
        self._taken_raw[p] = entry_id
        self._numbers[p] = number
        # unsubscribed: drop what it did not start; published before it subscribed: skip
        if event is None or self.sub.removed or position <= self._starts_after[p]:
            return
        if p in self._workers:
            self._lanes[p].append(event)
        else:  # an idle lane: the handler starts now, its worker follows it
            running = self._start(event)
            self._workers[p] = asyncio.get_running_loop().create_task(
                self._deliver(p, event, running)
            )

    def _start(self, event: Event) -> asyncio.Future[Any] | Exception:
        try:
            # a Task of its own: a handler's asyncio.timeout or TaskGroup must not act on
            # the lane's worker
            return start(self.sub.deliver(event))
        except Exception as exc:
            return exc

    async def _deliver(
        self, p: int, event: Event, running: asyncio.Future[Any] | Exception
    ) -> None:
        """Finish ``event``, then deliver lane ``p`` in order, one at a time, until empty."""
        lane = self._lanes[p]
        try:
            while True:
                failure = running if isinstance(running, Exception) else await outcome(running)
                if not (failure is None or isinstance(failure, NotDelivered) or cut_off(failure)):
                    logger.error(
                        "listener: delivery of %s (%s) failed",
                        event.type,
                        event.id,
                        exc_info=failure,
                        extra=log_fields(
                            "delivery_failed", event_id=event.id, event_type=event.type
                        ),
                    )
                if self.sub.removed:  # unsubscribed: drop what it did not start
                    lane.clear()
                    waiting = self._room_waiter
                    if waiting is not None and waiting[0] == p:
                        _settle(waiting[1], True)
                if not lane:
                    return
                event = lane.popleft()
                if len(lane) <= self._capacity // 2:
                    waiting = self._room_waiter
                    if waiting is not None and waiting[0] == p:
                        _settle(waiting[1], True)
                    elif p in self._behind:
                        self._room.set()
                running = self._start(event)
        finally:
            del self._workers[p]

    async def _catch_up(self) -> None:
        """Read the partitions behind from where this feed stopped until they rejoin.

        No failure ends it (ending would leave those partitions read by nobody, for
        good): each round that fails, whatever the error, is logged and tried again
        after a pause, from the last entry the feed took."""
        backoff = Backoff(self._options.max_backoff)
        listener = self._listener
        try:
            while self._behind and not (listener.stopping or self.stopping):
                resume_cancellation()  # one a read of the last round swallowed
                try:
                    if await self._catch_up_round():
                        backoff = Backoff(self._options.max_backoff)
                        self.failing = None
                        continue
                except asyncio.CancelledError:
                    if cancelled_by_caller() or listener.stopping or self.stopping:
                        raise
                    # not ours: a driver failed a future of its with it (a lost connection)
                    logger.warning(
                        "ungrouped subscription %r: a catch-up read was cut off; retrying",
                        self.sub.pattern,
                    )
                except self._unreachable as exc:  # a full pool too: the outage's doing if one
                    if listener.outages.pool_blamed(exc, self._pool_full):
                        logger.warning(
                            "listener: no free Redis connection to catch up with: %s; backing off",
                            pool_exhausted(self._client),
                        )
                    else:
                        listener.outages.lost(
                            self, f"ungrouped subscription {self.sub.pattern!r} catching up", exc
                        )
                except self._listener.response_error as exc:
                    listener.outages.reached(self)  # refused, but answered
                    await self._refused(exc)
                except Exception as exc:  # ending here would leave them unread for good
                    cause = f"{type(exc).__name__}: {exc}"
                    failing = self.failing
                    if failing is None or failing[1] != cause:  # once per cause
                        logger.error(
                            "ungrouped subscription %r: catching up on streams %s failed; retrying",
                            self.sub.pattern,
                            stream_names([listener.streams[p] for p in sorted(self._behind)]),
                            exc_info=exc,
                        )
                        since = time.monotonic() if failing is None else failing[0]
                        self.failing = (since, cause)
                    else:
                        logger.debug(
                            "ungrouped subscription %r: failed again: %s", self.sub.pattern, cause
                        )
                await self._pause(asyncio.sleep(backoff.next()))
        finally:
            self._catching_up = None
            self.failing = None
            listener.outages.forget(self)

    async def _catch_up_round(self) -> bool:
        """Read the partitions behind that have room, once; False when there was nothing
        to read from (every one of them unreadable): the caller pauses then."""
        listener = self._listener
        for p in list(self._behind):
            if self._taken[p] >= listener.ids[p]:
                self._behind.discard(p)  # caught up: the shared reader feeds it again
        room = {p: self._capacity - len(self._lanes[p]) for p in self._behind}
        ready = {p: n for p, n in room.items() if n >= (self._capacity + 1) // 2}
        if not ready:
            if self._behind:
                self._room.clear()
                await self._pause(self._room.wait())
            return True
        # a partition whose key is no stream fails the whole read: read the
        # others, and that one once the shared reader finds it a stream again
        ready = {p: n for p, n in ready.items() if not listener.broken(p)}
        if not ready:
            return False
        streams: dict[Any, Any] = {listener.streams[p]: self._taken_raw[p] for p in ready}
        marks = {p: (listener.ids[p], listener.numbers[p]) for p in ready}
        self._reading = list(streams)
        count = min(ready.values())
        # one entry more than it takes: that one is the next it must find
        reply: Any = await self._client.xread(streams, count=count + 1)
        listener.outages.reached(self)
        self._refusal = None
        for name, entries in reply or ():
            if entries:
                p = listener.partitions[name]
                ids = [parse_id(entry_id) for entry_id, _ in entries]
                number = self._check_read(p, ids, marks.pop(p))
                self._expected[p] = ids[count] if len(ids) > count else None
                self._read_back(p, entries[:count], ids, number)
        for p, mark in marks.items():
            # nothing after what we took: the entries the shared reader had passed
            # when we asked are gone (deleted or trimmed); later ones come next time
            if self._taken[p] < mark[0]:
                self._all_gone(p, mark)
        return True

    async def _refused(self, exc: Exception) -> None:
        """A catch-up read was refused: set aside the streams that are no streams any
        more (logged by the listener), else log the refusal (once, not at every retry)."""
        streams = self._reading
        try:
            if await self._listener.find_broken(streams):
                return
        except (*self._unreachable, *self._pool_full, self._listener.response_error):
            pass
        if str(exc) != self._refusal:
            self._refusal = str(exc)
            logger.error(
                "ungrouped subscription %r: Redis refused to read streams %s: %s; retrying "
                "(backing off up to %gs)",
                self.sub.pattern,
                stream_names(streams),
                exc,
                self._options.max_backoff,
            )

    async def _pause(self, waiting: Awaitable[Any]) -> None:
        """Await ``waiting`` (for room, or a backoff), which close() may cancel."""
        self._waiting = True
        try:
            await waiting
        finally:
            self._waiting = False

    def _check_read(self, p: int, ids: list[StreamId], mark: Anchor) -> int:
        """Look for entries of ``p`` trimmed before this catch-up read (entry ``ids``) got
        to them, and log them; return the shared reader's number for its first entry.

        The feed numbers what it reads on from the last entry it took. Where a read gets
        to an anchor (a position the shared reader had reached, with the reader's number
        for it) the counts must agree: what the reader numbered and the feed did not find
        was trimmed in between. And the entry remembered after a full read must come
        first, or the read jumped a gap (known at once, counted at the next anchor).
        """
        first = ids[0]
        number = self._numbers[p] + 1  # the first entry's, if nothing was lost
        expected = self._expected[p]
        jumped = expected if expected is not None and first > expected else None
        anchor = self._anchor[p]
        if anchor is None and mark[0] > self._taken[p]:
            anchor = mark
        self._anchor[p] = None
        lost = 0
        at_least = False
        if anchor is not None:
            position, anchor_number = anchor
            if position < first:  # trimmed as well, with everything up to it
                lost, at_least = max(0, anchor_number + 1 - number), True
                number = anchor_number + 1
            elif position > ids[-1]:
                self._anchor[p] = anchor  # beyond this read: a later one gets there
            else:
                i = bisect_left(ids, position)
                if ids[i] == position:  # (absent: deleted with XDEL, nothing to count)
                    lost = max(0, anchor_number - i - number)
                    number = anchor_number - i
        if jumped is not None or lost:
            self._report(p, lost, at_least, jumped, first, inclusive=False)
        if anchor is not None and self._anchor[p] is None:
            self._checked_at[p] = anchor[0]  # the counts agree there now
        return number

    def _all_gone(self, p: int, mark: Anchor) -> None:
        """Nothing follows the last entry of ``p`` this feed took, yet the shared reader
        had read up to ``mark`` when it asked: those entries were trimmed before the feed
        got to them. Log them and go on from ``mark``."""
        position, number = mark
        lost = max(0, number - self._numbers[p])
        if lost or self._expected[p] is not None:
            self._report(p, lost, False, self._expected[p], position, inclusive=True)
        self._expected[p] = None
        anchor = self._anchor[p]
        if anchor is not None and anchor[0] <= position:
            self._anchor[p] = None
        self._checked_at[p] = position
        self.take(p, position, b"%d-%d" % position, None, number)

    def _report(
        self,
        p: int,
        lost: int,
        at_least: bool,
        start: StreamId | None,
        end: StreamId,
        *,
        inclusive: bool,
    ) -> None:
        """Warn that entries of ``p`` this feed had to read were trimmed before it could.

        With ``lost`` (counted since the count last matched; ``at_least``: a lower
        bound) the warning gives their number, else where they start (``start``).
        ``end`` is the first entry the stream still has after them (with ``inclusive``,
        the last one known to be gone).
        """
        self.trimmed_unread += 1
        self.lost_entries += lost
        if lost:
            bound = "at least " if at_least else ""
            what = f"{bound}{lost} of its entries after {id_text(self._checked_at[p])}"
        else:
            what = "its entries from " + id_text(start or self._taken[p])
        logger.warning(
            "ungrouped subscription %r fell further behind than stream %s keeps: %s %s %s "
            "were trimmed (retention or maxlen) before it read them, and are skipped; use "
            "a group for events that must not be missed",
            self.sub.pattern,
            as_text(self._listener.streams[p]),
            what,
            "up to and including" if inclusive else "up to before",
            id_text(end),
        )

    def _read_back(self, p: int, entries: Entries, ids: list[StreamId], number: int) -> None:
        """Take ``entries`` (at ``ids``, numbered from ``number`` on) as read back."""
        for i, ((entry_id, fields), position) in enumerate(zip(entries, ids, strict=False)):
            if position <= self._taken[p]:
                continue
            event = None
            try:  # as in Listener._dispatch: one entry never ends the catch-up
                if self._filter(entry_topic(fields)):
                    event = decode_event(fields)
            except Exception as exc:
                stream = as_text(self._listener.streams[p])
                unreadable(
                    f"ungrouped subscription {self.sub.pattern!r}",
                    stream,
                    entry_id,
                    exc,
                    "skipping",
                )
            self.take(p, position, entry_id, event, number + i)

    def read_ahead(self) -> int:
        """Events read and queued in the lanes, not yet handed to the handler."""
        return sum(len(lane) for lane in self._lanes)

    async def close(self) -> None:
        """Stop catching up; deliver every event already read (the listener stopped)."""
        task = self._catching_up
        if task is not None:
            if self._waiting:
                task.cancel()  # waits for room or backs off: nothing read is lost
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while self._workers:
            await asyncio.wait(list(self._workers.values()))


def _settle(waiter: asyncio.Future[bool], result: bool) -> None:
    if not waiter.done():
        waiter.set_result(result)
