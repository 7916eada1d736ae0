"""Where a group stands on each partition stream, as one of its members knows it.

A member creates the consumer group on every partition stream when it joins. On each
partition it holds it follows how far the group has read (learnt when it takes the
partition, then from its reads and the counter snapshots that ride with them), so that
a consumer group destroyed or lost with its stream is made anew where it had read, not
at the end of the stream. The snapshots also tell how many entries ``maxlen`` trimmed
before the group read them (see ``_trimmed``); those and the pending entries trimmed
before they were handled are logged and counted here.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ._trimmed import CHECK_EVERY, CREATE_GROUP, GROUP_COUNTERS, GroupTally, id_text
from ._wire import as_text, logger, parse_id

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["GroupPositions", "StreamId"]

StreamId = tuple[int, int]


class GroupPositions:
    """One member's view of its consumer group on the partition streams: how far the group
    has read each partition held, and what was trimmed before the group got to it."""

    def __init__(
        self,
        client: Redis,
        streams: list[str],
        group: str,
        consumer: str,
        batch_size: int,
        response_error: type[Exception],
    ) -> None:
        self._streams = streams
        self._group = group
        self._consumer = consumer
        self._batch_size = batch_size
        self._response_error = response_error
        self._counters = client.register_script(GROUP_COUNTERS)
        self._create_script = client.register_script(CREATE_GROUP)
        self._counters_loaded = False
        #: per partition held, how far the group has read it, as far as this member knows
        #: (the group's position when the partition was taken, then its reads and counter
        #: snapshots): where a vanished group is made anew. Dropped when the partition
        #: goes to another member, whose reads would leave it behind
        self._positions: dict[int, StreamId] = {}
        #: how many times entries were trimmed before the group read or handled them
        #: (each logged), and how many entries that was
        self.trimmed_unread = 0
        self.lost_entries = 0

    async def create_groups(self) -> None:
        """``XGROUP CREATE ... $ MKSTREAM`` on each partition, with the group's count of
        entries read (see ``CREATE_GROUP``); existing groups keep their place."""
        await self._create_script(keys=self._streams, args=[self._group, "$"])

    def get(self, p: int) -> StreamId | None:
        """How far the group has read partition ``p`` as far as we know (None: unknown)."""
        return self._positions.get(p)

    def forget(self, p: int) -> None:
        """Drop what we knew of partition ``p``: another member may read on there (it
        took the partition, or our lease may have lapsed), which would leave it behind."""
        self._positions.pop(p, None)

    def forget_all(self) -> None:
        """Drop what we knew of every partition (see ``forget``)."""
        self._positions.clear()

    async def locate(self, p: int, client: Redis) -> None:
        """Learn where the group stands on partition ``p``, which we have just taken.

        Another member may have read (and acknowledged) up to anywhere since we last
        held it, so what we knew then was dropped (see ``forget``): made anew there, the
        group would deliver those entries again. A group (or stream) already gone leaves
        us knowing nothing: it is then made anew at ``$``.
        """
        stream = self._streams[p]
        try:
            groups: Any = await client.xinfo_groups(stream)
        except self._response_error:
            return  # no stream (or not a stream): the claim that follows says what is wrong
        for info in groups:
            name = info["name"]
            if (name.decode() if isinstance(name, bytes) else str(name)) == self._group:
                self.read_to(p, parse_id(info["last-delivered-id"]))
                return

    def read_to(self, p: int, position: StreamId) -> None:
        """Remember that the group has read partition ``p`` up to ``position`` (or further)."""
        known = self._positions.get(p)
        if known is None or position > known:
            self._positions[p] = position

    async def recreate(self, p: int, client: Redis) -> None:
        """Make the consumer group on partition ``p``'s stream anew (it is gone: destroyed
        with ``XGROUP DESTROY``, or the stream deleted) where this member knows the group
        had read up to, so that what was published since is delivered; at ``$`` if it
        knows nothing. An existing group (made anew by another member) is left alone."""
        stream = self._streams[p]
        known = self.get(p)
        start = "$" if known is None else id_text(known)
        made: Any = await self._create_script(
            keys=[stream], args=[self._group, start], client=client
        )
        if not made[0]:
            return
        logger.error(
            "group %r: the consumer group on stream %s (partition %d) was gone (destroyed "
            "with XGROUP DESTROY, or the stream deleted); made it anew at %s (%s). Entries "
            "it had pending are no longer tracked by Redis",
            self._group,
            stream,
            p,
            start,
            "where the group had read up to, as far as this member knows"
            if known is not None
            else "the end of the stream: the group was gone when this member took the "
            "partition, and it has read nothing there since",
        )

    async def read_counted(self, p: int, reader: Redis, tally: GroupTally) -> Any:
        """Read partition ``p`` behind a snapshot of its counters; log what was trimmed
        before the group read it (the snapshot rides in the read's round trip)."""
        stream = self._streams[p]
        tally.next_check = time.monotonic() + CHECK_EVERY
        if not self._counters_loaded:  # first use, or Redis's script cache was flushed
            await reader.script_load(GROUP_COUNTERS)
            self._counters_loaded = True
        pipe = reader.pipeline(transaction=False)
        pipe.evalsha(self._counters.sha, 1, stream, self._group)
        pipe.xreadgroup(
            self._group, self._consumer, {stream: ">"}, count=self._batch_size, block=1000
        )
        counters, reply = await pipe.execute(raise_on_error=False)
        if counters and not isinstance(counters, Exception):
            self.read_to(p, parse_id(counters[5]))  # before a refused read too
        if isinstance(reply, Exception):
            raise reply
        if isinstance(counters, Exception):
            self._counters_loaded = "NOSCRIPT" not in str(counters)
            logger.debug("group %r: no stream counters: %s", self._group, counters)
        elif counters:
            read = len(reply[0][1]) if reply else 0
            lost, after, before = tally.check(counters, read, read >= self._batch_size)
            if lost:
                self.trimmed_unread += 1
                self.lost_entries += lost
                logger.warning(
                    "group %r: %d entries of stream %s (%sbefore %s) were trimmed before the "
                    "group read them, and are lost to it. Only maxlen (or a trim outside the "
                    "transport) does that: raise maxlen or leave it unset, the transport's "
                    "own trimming keeps what groups have not read",
                    self._group,
                    lost,
                    stream,
                    "" if after is None else f"after {id_text(after)}, ",
                    id_text(before),
                )
        return reply

    def trimmed_pending(self, p: int, gone: list[bytes]) -> None:
        self.trimmed_unread += 1
        self.lost_entries += len(gone)
        shown = ", ".join(as_text(entry_id) for entry_id in gone[:5])
        logger.warning(
            "group %r: %d entries of stream %s were trimmed while pending (read by a member "
            "that went away or gave the partition up, never acknowledged) before they were "
            "handled: %s%s; they are skipped. Only maxlen (or a trim outside the transport) "
            "does that: raise maxlen or leave it unset",
            self._group,
            len(gone),
            self._streams[p],
            shown,
            ", ..." if len(gone) > 5 else "",
        )
