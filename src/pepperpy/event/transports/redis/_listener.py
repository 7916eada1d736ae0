"""Ungrouped subscriptions: one live ``XREAD`` over every partition, a feed per subscription.

Ungrouped subscribers are listeners, not durable consumers: they leave no state in
Redis (no consumer group, nothing pending), so nothing piles up after the process
exits. All ungrouped subscriptions of a transport share one reader; a
:class:`~pepperpy.event.PatternIndex` picks the subscriptions each entry goes to.

The first subscription starts the reader right after each stream's last id; the last
one to leave stops it (no read is sent for nobody), and the next starts it afresh. A
subscription joining a running reader takes the streams' last ids too: the reader may
not have read up to them yet, and what lies before them was published before the
subscription, so its feed skips it (``Feed.start_after``).

The reader never waits for a handler. It hands each entry to the :class:`Feed` of every
matching subscription and reads on. A feed keeps a lane per partition, at most
``batch_size`` events each, delivered one after another by a worker of the lane's own;
lanes and feeds run concurrently, so a slow handler holds up only its own subscription
(and within it only its partition). When a lane is full the reader does not wait for it:
the lane *falls behind* and its feed catches up by itself, reading that partition from
the last entry it took with non-blocking ``XREAD`` calls as room frees up, until it has
reached the shared reader's position and rejoins it. Memory stays bounded, other
subscriptions never wait, and no entry is skipped or handed over twice (entry ids order
each partition; a feed takes only ids above the last one it took). Feeds live in
``_feed``.

Entries trimmed before they were read are reported, never skipped silently. The reader
numbers the entries it reads per partition and checks its count against Redis's stream
counters now and then (see ``_trimmed``): what it never got was trimmed first. A feed
catching up checks its own count against the reader's numbers wherever its reads meet a
position the reader had reached: what the reader got and the feed did not is what the
feed lost. Both also read one entry more than they hand out and remember it, so a gap
that a read jumps is reported at once, with its range (the count follows with the next
check).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from ..._errors import ClosedError
from ..._patterns import PatternIndex
from ..base import CONSUMER_FAILED, Subscription, cancelled_by_caller, resume_cancellation
from ._config import RedisOptions
from ._feed import ROOM_WAIT, Feed, StreamId
from ._outage import Outages
from ._trimmed import CHECK_EVERY, STREAM_COUNTERS, id_text, parse_counters, passed_count
from ._wire import (
    Backoff,
    Entries,
    as_text,
    connection_errors,
    decode_event,
    entry_topic,
    logger,
    parse_id,
    pool_errors,
    pool_exhausted,
    stream_names,
    unreadable,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["ROOM_WAIT", "Feed", "Listener"]

#: seconds a restarted reader must live for its next failure to count as a new one
#: (logged at ERROR again, restarted after the shortest pause again)
_LIVED = 30.0


class Listener:
    """Reads every partition from "now" on and fans entries out to the matching feeds."""

    def __init__(
        self, client: Redis, options: RedisOptions, exceptions: Any, outages: Outages
    ) -> None:
        self._client = client
        self.outages = outages
        self._options = options
        self._unreachable = connection_errors(exceptions)
        self._pool_full = pool_errors(exceptions)
        self.response_error: type[Exception] = exceptions.ResponseError
        self._index: PatternIndex[Feed] = PatternIndex()
        self._feeds: list[Feed] = []
        #: feeds being removed whose handlers in progress have not all finished
        self._leaving: set[Feed] = set()
        self.streams = [options.stream(p) for p in range(options.partitions)]
        self.partitions = {name.encode(): p for p, name in enumerate(self.streams)}
        n = len(self.streams)
        #: per partition, the id of the last entry read (raw for XREAD, parsed to compare)
        self._positions: dict[Any, Any] = {}
        self.ids: list[StreamId] = [(0, 0)] * n
        #: per partition, how many entries it has read: the number of the one at ids[p]
        self.numbers: list[int] = [0] * n
        #: per partition, Redis's logical number of an entry minus ours (None: unknown);
        #: it grows by what was trimmed before we read it
        self._offset: list[int | None] = [None] * n
        #: per partition, where our count last matched Redis's
        self._checked_at: list[StreamId] = [(0, 0)] * n
        self._counters = client.register_script(STREAM_COUNTERS)
        self._script_loaded = True  # by the first check, at start (see _mark_positions)
        self._next_check = 0.0
        #: per partition, the entry after the last full read (read one more than handed
        #: out): the next read must start with it, or the stream was trimmed under us
        self._expected: list[StreamId | None] = [None] * n
        #: how many times entries were trimmed before they were read (each logged)
        self.trimmed_unread = 0
        #: how many entries were trimmed before the reader read them (counted exactly)
        self.lost_entries = 0
        #: partitions whose key another client replaced with something else than a
        #: stream (the type it holds): set aside, so that the others are read on
        self._broken: dict[int, str] = {}
        self._broken_names: set[str] = set()
        self._recheck_backoff = Backoff(options.max_backoff)
        self._recheck_at = 0.0
        #: the last refusal logged (logged once, not at every retry)
        self._refused: str | None = None
        self._task: asyncio.Task[None] | None = None
        #: why the reader ended by itself, and when (monotonic): set from its end until a
        #: reader started after it has read again, for health() (see _ended)
        self._failure: tuple[float, str] | None = None
        #: the automatic restart of a reader that failed, pending
        self._restart: asyncio.TimerHandle | None = None
        #: pauses before each restart of a reader that keeps failing
        self._restarts = Backoff(options.max_backoff)
        self._born = 0.0  # when the reader last started (monotonic)
        self._death_logged: str | None = None  # the cause last logged at ERROR
        self.stopping = False  # the transport closes
        self._halting = False  # the last subscription left: the reader ends
        self._idle = False
        #: starting and stopping the reader, one at a time
        self._lifecycle = asyncio.Lock()

    async def add(self, sub: Subscription) -> None:
        """Register ``sub``; events published after this returns reach it, and none
        published before it was called.

        The first subscription starts the reader right after each stream's last id. A
        later one joins the running reader, which may not have read up to those ids
        yet: it takes them too, and is handed only what follows (see Feed.start_after).
        """
        async with self._lifecycle:
            if self._halting:  # a stop cut short (its caller was cancelled): finish it
                await self._halt()
            if self._task is None:
                await self._mark_positions()
                if self.stopping:  # closed meanwhile: close() saw no reader to stop
                    raise ClosedError("the Redis transport is closed")
                self._register(Feed(sub, self, *self._feed_args()))
                self._spawn()
                return
            if self._task.done():  # it ended by itself: on again now, where it stopped
                self._revive()
            feed = self._register(Feed(sub, self, *self._feed_args(), joining=True))
            try:
                reply: Any = await self._counters(keys=self.streams)
            except BaseException:
                if feed in self._feeds:  # (unless unsubscribed meanwhile)
                    self._unregister(feed)
                raise
            feed.start_after([parse_counters(fields).last for fields in reply])

    def _feed_args(self) -> tuple[Any, ...]:
        return self._client, self._options, self._unreachable, self._pool_full

    def _register(self, feed: Feed) -> Feed:
        self._feeds.append(feed)
        feed.key = self._index.add(feed.sub.pattern, feed)
        return feed

    def _unregister(self, feed: Feed) -> None:
        self._feeds.remove(feed)
        self._index.remove(feed.sub.pattern, feed.key)

    async def remove(self, sub: Subscription) -> None:
        """Take nothing more for ``sub``; return once the events it was handed are done.

        The last subscription to leave stops the reader: no read is sent for nobody.
        """
        for feed in self._feeds:
            if feed.sub is sub:
                self._unregister(feed)
                feed.stopping = True
                # kept until closed: cancelled meanwhile, close() waits for its handlers
                self._leaving.add(feed)
                await feed.close()
                self._leaving.discard(feed)
                break
        else:
            return
        if not self._feeds and not self.stopping:
            async with self._lifecycle:
                if not self._feeds:  # none joined meanwhile
                    await self._halt()

    async def _halt(self) -> None:
        """End the reader and wait until it has ended. It has nobody to read for, so
        nothing it holds is lost: cancelled wherever it is (a blocking read, a check of
        a broken stream against a silent Redis), not waited for."""
        self._cancel_restart()
        self._failure = None  # no reader is wanted: nobody misses anything
        task = self._task
        if task is None:
            return
        self._halting = True  # ends it too if a driver call swallows the cancellation
        task.cancel()
        await asyncio.wait([task])
        self._task = None
        self._halting = False

    # -- the reader's life: started, ended by itself, restarted ------------------------

    def _spawn(self) -> None:
        """Start the reader (from ``_positions``), watched by :meth:`_ended`."""
        self._cancel_restart()
        task = asyncio.get_running_loop().create_task(self._loop(), name="pepperpy-redis-listener")
        task.add_done_callback(self._ended)
        self._task = task
        self._born = time.monotonic()

    def _revive(self) -> None:
        """Start a reader again after the last one ended by itself, reading on right
        after the entries it had handed out: nothing published meanwhile is missed, and
        the feeds take only what follows what they took (nothing twice)."""
        for p, stream in enumerate(self.streams):
            self._positions[stream] = id_text(self.ids[p])
        self._spawn()
        logger.debug("listener: the shared reader is started again")

    def _cancel_restart(self) -> None:
        if self._restart is not None:
            self._restart.cancel()
            self._restart = None

    def _ended(self, task: asyncio.Task[None]) -> None:
        """The reader ended. Unless it was asked to (close, the last unsubscribe), log
        why, let health() say so, and, after a failure, start it again after a pause
        that grows while it keeps failing (up to ``max_backoff``).

        Its loop retries every failure of a round by itself, so this is the death of the
        loop itself: an error in its own recovery, or a cancellation by another task.
        A cancelled reader is not restarted here (``asyncio.run`` ending cancels every
        task, and a new one would outlive it) but by the next subscription.
        """
        if task is not self._task or self.stopping or self._halting:
            return
        if self._born and time.monotonic() - self._born > _LIVED:
            self._restarts = Backoff(self._options.max_backoff)  # a new series of failures
            self._death_logged = None
        if task.cancelled():
            cause = "it was cancelled by another task"
            self._failure = (time.monotonic(), cause)
            # every task cancelled at once: the event loop ends (asyncio.run() with the
            # bus open), nothing to warn about
            ending = all(other.cancelling() for other in asyncio.all_tasks() if not other.done())
            logger.log(
                logging.DEBUG if ending else logging.WARNING,
                "listener: the shared reader of ungrouped subscriptions ended: %s; they "
                "receive nothing until the next ungrouped subscription starts it again",
                cause,
            )
            return
        error = task.exception()
        if error is None:  # (its loop returns only when asked to end)
            return
        cause = f"{type(error).__name__}: {error}"
        self._failure = (time.monotonic(), cause)
        if not self._feeds:
            return
        delay = self._restarts.next()
        if cause != self._death_logged:  # once per cause, not at every restart
            self._death_logged = cause
            logger.error(
                "listener: the shared reader of ungrouped subscriptions failed (%s); "
                "starting it again in %.2fs, reading on where it stopped (backing off up "
                "to %gs while it keeps failing)",
                cause,
                delay,
                self._options.max_backoff,
                exc_info=error,
            )
        else:
            logger.debug("listener: the shared reader failed again (%s)", cause)
        self._restart = asyncio.get_running_loop().call_later(delay, self._restart_due)

    def _restart_due(self) -> None:
        self._restart = None
        task = self._task
        if self.stopping or self._halting or not self._feeds or task is None or not task.done():
            return
        self._revive()

    def failure(self) -> tuple[float, tuple[str, str]] | None:
        """Since when (monotonic) and why ungrouped subscriptions receive nothing (the
        reader ended by itself or keeps failing, or a subscription catching up keeps
        failing), for health(); None if they do."""
        failure = self._failure
        if failure is not None:
            return failure[0], (
                CONSUMER_FAILED,
                f"the Redis transport's shared reader of ungrouped subscriptions fails "
                f"({failure[1]}); it is retried",
            )
        for feed in self._feeds:
            failing = feed.failing
            if failing is not None:
                return failing[0], (
                    CONSUMER_FAILED,
                    f"ungrouped subscription {feed.sub.pattern!r} fails catching up "
                    f"({failing[1]}); it is retried",
                )
        return None

    async def _mark_positions(self) -> None:
        """Remember each stream's last id and count: reading starts right after it
        (counting anew: a reader stopped and started again knows nothing of before)."""
        reply: Any = await self._counters(keys=self.streams)
        for p, (stream, fields) in enumerate(zip(self.streams, reply, strict=True)):
            counters = parse_counters(fields)
            self._positions[stream] = id_text(counters.last)
            self.ids[p] = self._checked_at[p] = counters.last
            self.numbers[p] = 0
            self._offset[p] = counters.added
            self._expected[p] = None

    def read_ahead(self) -> int:
        """Events read for the feeds and not yet handed to a handler (close() delivers
        them before it returns)."""
        return sum(feed.read_ahead() for feed in self._feeds)

    async def close(self) -> None:
        """Stop reading; deliver every event already read, then return."""
        self.stopping = True
        self._cancel_restart()
        self._failure = None
        task = self._task
        if task is not None:
            if self._idle:
                task.cancel()  # a blocked read: nothing of it has been handed out
            # (a reader that failed was logged when it ended: nothing to raise here)
            await asyncio.wait([task])
        await asyncio.gather(*(feed.close() for feed in [*self._feeds, *self._leaving]))

    async def _loop(self) -> None:
        """Read until closed. No failure ends it: each is logged, then retried after a
        pause that grows up to ``max_backoff`` (a lost connection, a refused command, a
        stream key another client replaced, a bug of ours)."""
        backoff = Backoff(self._options.max_backoff)
        try:
            while not (self.stopping or self._halting):
                resume_cancellation()  # one a backoff's driver call swallowed
                try:
                    if await self._round():
                        backoff = Backoff(self._options.max_backoff)
                        continue
                except asyncio.CancelledError as exc:
                    if cancelled_by_caller() or self.stopping or self._halting:
                        raise
                    # not ours: a driver failed a future of its with it (a lost connection)
                    await self._failed(exc)
                except Exception as exc:
                    await self._failed(exc)
                self._idle = True  # a pause: close() may cancel it
                try:
                    await asyncio.sleep(backoff.next())
                finally:
                    self._idle = False
        finally:
            self.outages.forget(self)

    async def _round(self) -> bool:
        """Read once and hand out what came; False when there was nothing to read from
        (every stream unreadable): the caller pauses then."""
        if self._broken and time.monotonic() >= self._recheck_at:
            await self._recheck()
        positions = self._positions
        if self._broken:
            positions = {s: at for s, at in positions.items() if s not in self._broken_names}
            if not positions:
                return False
        if self.stopping or self._halting:  # asked to end while this round was under way
            return True
        self._idle = True
        counters: Any = None
        try:
            if time.monotonic() >= self._next_check:
                counters, reply = await self._read_counted(positions)
            else:
                reply = await self._client.xread(
                    positions, count=self._options.batch_size + 1, block=1000
                )
            # cancelled as the read completed: hand nothing of it out (as when idle)
            resume_cancellation()
        finally:
            self._idle = False
        self.outages.reached(self)
        self._refused = None
        count = self._options.batch_size
        if counters is not None:
            self._check_counts(counters, reply)
        for name, entries in reply or ():
            if entries:
                p = self.partitions[name]
                expected = self._expected[p]
                first = parse_id(entries[0][0])
                if expected is not None and first > expected:
                    self.trimmed_unread += 1
                    logger.warning(
                        "listener: stream %s was trimmed (retention or maxlen) past "
                        "entries not read yet, from %d-%d up to before %d-%d; ungrouped "
                        "subscriptions miss them. Handlers fall further behind than "
                        "the stream keeps: raise retention, or use a group",
                        self.streams[p],
                        *expected,
                        *first,
                    )
                following = entries[count] if len(entries) > count else None
                self._expected[p] = None if following is None else parse_id(following[0])
                entries = entries[:count]
                await self._dispatch(p, entries)
                self._positions[self.streams[p]] = entries[-1][0]
        if self._failure is not None:  # a round went through after a failure
            self._failure = None
            logger.info("listener: the shared reader reads again")
        return True

    async def _failed(self, exc: BaseException) -> None:
        """Log why a round failed (the pause follows); find the streams it could not read."""
        if self.outages.pool_blamed(exc, self._pool_full):
            logger.warning(
                "listener: no free Redis connection to read with: %s; backing off",
                pool_exhausted(self._client),
            )
        elif isinstance(exc, self._unreachable):
            self.outages.lost(self, "the listener", exc)
        elif isinstance(exc, self.response_error):
            self.outages.reached(self)  # refused, but answered
            try:
                found = await self.find_broken(self.streams)
            except (*self._unreachable, *self._pool_full, self.response_error):
                found = False
            text = str(exc)
            if not found and text != self._refused:  # once per error, not per retry
                logger.error(
                    "listener: Redis refused to read streams %s: %s; retrying (backing off "
                    "up to %gs)",
                    stream_names(self.streams),
                    text,
                    self._options.max_backoff,
                )
            self._refused = text
        else:  # a bug, an unreadable reply: ungrouped subscriptions get nothing meanwhile
            cause = f"{type(exc).__name__}: {exc}"
            failure = self._failure
            if failure is None or failure[1] != cause:  # once per cause, not per retry
                logger.error(
                    "listener: reading streams %s failed; retrying, backing off up to %gs",
                    stream_names(self.streams),
                    self._options.max_backoff,
                    exc_info=exc,
                )
                self._failure = (time.monotonic() if failure is None else failure[0], cause)
            else:
                logger.debug("listener: reading failed again: %s", cause)
        # a round cut short may have handed out part of what it read: go on from there
        for p, stream in enumerate(self.streams):
            self._positions[stream] = id_text(self.ids[p])

    async def find_broken(self, streams: list[str]) -> bool:
        """After a refused read of ``streams``: set aside those whose key is no stream
        (another client replaced it: ``WRONGTYPE``), each logged once, so that the other
        partitions are read on. True if any of ``streams`` is set aside now.

        ``XREAD`` fails as a whole for one such key, and its error does not say which:
        one ``TYPE`` per stream (one round trip) tells.
        """
        pipe = self._client.pipeline(transaction=False)
        for stream in streams:
            pipe.type(stream)
        kinds: list[Any] = await pipe.execute()
        found = False
        for stream, kind in zip(streams, kinds, strict=True):
            kind = as_text(kind)
            if kind in ("stream", "none"):
                continue
            found = True
            if stream in self._broken_names:
                continue
            p = self.streams.index(stream)
            self._broken[p] = kind
            self._broken_names.add(stream)
            self._recheck_backoff = Backoff(self._options.max_backoff)
            self._recheck_at = time.monotonic() + self._recheck_backoff.next()
            logger.error(
                "listener: key %s holds a %s, not a stream (another client replaced it); "
                "ungrouped subscriptions get nothing from partition %d until it is a "
                "stream again (DEL it: the next publish makes the stream anew). Checking "
                "it every %gs at most",
                stream,
                kind,
                p,
                self._options.max_backoff,
            )
        return found

    async def _recheck(self) -> None:
        """Read the streams set aside again once their keys are streams (or gone)."""
        broken = sorted(self._broken)
        pipe = self._client.pipeline(transaction=False)
        for p in broken:
            pipe.type(self.streams[p])
        kinds: list[Any] = await pipe.execute()
        self._recheck_at = time.monotonic() + self._recheck_backoff.next()
        for p, kind in zip(broken, kinds, strict=True):
            if as_text(kind) in ("stream", "none"):
                del self._broken[p]
                self._broken_names.discard(self.streams[p])
                logger.warning(
                    "listener: key %s is %s again; reading it on after %s",
                    self.streams[p],
                    "a stream" if as_text(kind) == "stream" else "free (no stream yet)",
                    id_text(self.ids[p]),
                )

    def broken(self, p: int) -> bool:
        """True while partition ``p``'s key is no stream (set aside, see find_broken)."""
        return p in self._broken

    async def _read_counted(self, positions: dict[Any, Any]) -> tuple[Any, Any]:
        """The next read, behind a snapshot of every stream's counters (one round trip)."""
        self._next_check = time.monotonic() + CHECK_EVERY
        if not self._script_loaded:  # Redis's script cache was flushed
            await self._client.script_load(STREAM_COUNTERS)
            self._script_loaded = True
        pipe = self._client.pipeline(transaction=False)
        pipe.evalsha(self._counters.sha, len(self.streams), *self.streams)
        pipe.xread(positions, count=self._options.batch_size + 1, block=1000)
        counters, reply = await pipe.execute(raise_on_error=False)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(counters, Exception):
            self._script_loaded = "NOSCRIPT" not in str(counters)
            logger.debug("listener: no stream counters: %s", counters)
            return None, reply
        return counters, reply

    def _check_counts(self, counters: list[Any], reply: Any) -> None:
        """Compare the entries read with Redis's counters; log those trimmed unread.

        ``counters`` was taken right before ``reply`` was read (see ``passed_count``).
        """
        limit = self._options.batch_size  # a read of more was full: it left some behind
        read = {self.partitions[name]: len(entries) for name, entries in reply or ()}
        for p, fields in enumerate(counters):
            snapshot = parse_counters(fields)
            position = self.ids[p]
            unread = read.get(p, 0)
            passed = passed_count(snapshot, position, unread if unread <= limit else None)
            offset = self._offset[p]
            if passed is None:
                continue
            if offset is None or passed < self.numbers[p] + offset:
                # a first count, or the stream was deleted and made anew: start from here
                # (unless entries were appended between the snapshot and the read: then
                # the count that relies on the read is too low, and proves nothing)
                if offset is None or passed_count(snapshot, position, None) is not None:
                    self._offset[p] = passed - self.numbers[p]
                    self._checked_at[p] = position
                continue
            lost = passed - self.numbers[p] - offset
            trimmed_past = snapshot.length > 0 and position < snapshot.first
            if lost:
                self._offset[p] = offset + lost
                self.trimmed_unread += 1
                self.lost_entries += lost
                logger.warning(
                    "listener: %d entries of stream %s (after %s, before %s) were trimmed "
                    "(retention or maxlen) before they were read; ungrouped subscriptions "
                    "miss them. Handlers fall further behind than the stream keeps: raise "
                    "retention, or use a group",
                    lost,
                    self.streams[p],
                    id_text(self._checked_at[p]),
                    id_text(snapshot.first if trimmed_past else position),
                )
            if trimmed_past:
                self._expected[p] = None  # the read that follows jumps the gap just counted
            self._checked_at[p] = position

    async def _dispatch(self, p: int, entries: Entries) -> None:
        """Hand partition ``p``'s ``entries`` to the feeds that take them, in order.

        Waits only for a full lane, and at most ``ROOM_WAIT`` seconds each time; a lane
        still full after that falls behind (its feed reads on by itself).
        """
        number = self.numbers[p]
        for entry_id, fields in entries:
            position = parse_id(entry_id)
            number += 1
            # read up to here: a feed catching up on p rejoins only once it has this entry
            self.ids[p] = position
            self.numbers[p] = number
            try:  # whatever one entry holds, it never ends the reader (see unreadable)
                takers = [
                    feed
                    for feed in self._index.match(entry_topic(fields))
                    if feed.wants(p, position)
                ]
                if not takers:
                    continue
                event = decode_event(fields)
            except Exception as exc:
                unreadable("listener", self.streams[p], entry_id, exc, "skipping")
                continue
            for feed in takers:
                if feed.full(p) and not await feed.room(p):
                    feed.fall_behind(p, position)  # this entry and what follows: it reads them
                    continue
                if not feed.stopping:  # unsubscribed while we waited for room
                    feed.take(p, position, entry_id, event, number)
