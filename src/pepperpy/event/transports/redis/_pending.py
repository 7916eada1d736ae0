"""Taking over a partition's pending entries: Redis's side of a group member's claims.

An entry stays pending with the consumer that read it until it is acknowledged. A member
that takes a partition over claims what is pending there (``XCLAIM``) and reads each
claimed entry back (``XRANGE``): ``XCLAIM ... JUSTID`` does not count as a delivery,
and an entry trimmed away while pending has nothing left to deliver. Entries pending
with another consumer of a partition the member holds (orphans: a member lost its lease
while a read of its was under way) are claimed the same way, counted as delivered once
more. Consumers of members that are gone and hold nothing are deleted.

What is delivered, counted or reported is decided by ``GroupMember`` (``_claim``,
``_sweep``); this module only runs the commands and sorts their replies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._wire import Entries

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Claimed", "PendingEntries"]


@dataclass(slots=True)
class Claimed:
    """What a claim took over, in order: the entries to deliver, with how many times
    each was delivered, and those trimmed away while pending."""

    entries: Entries
    deliveries: dict[bytes, int]
    #: trimmed while pending, still on the pending list: acknowledge them
    gone: list[bytes]
    #: the same, already taken off the pending list by XCLAIM (Redis 7)
    dropped: list[bytes]


class PendingEntries:
    """Claims a group's pending entries on the partition streams for one member."""

    def __init__(self, streams: list[str], group: str, consumer: str, members_key: str) -> None:
        self._streams = streams
        self._group = group
        self._consumer = consumer
        self._members_key = members_key

    async def take(self, p: int, client: Redis, rows: Any, count_oldest: bool) -> Claimed:
        """Claim the pending entries ``rows`` (an ``XPENDING`` page) of partition ``p``;
        with ``count_oldest``, count one more delivery of the first of them."""
        stream = self._streams[p]
        ids = [row["message_id"] for row in rows]
        deliveries = {row["message_id"]: row["times_delivered"] for row in rows}
        pipe = client.pipeline(transaction=False)
        pipe.xclaim(stream, self._group, self._consumer, 0, ids, justid=True)
        if count_oldest:  # one more delivery of the one that may have been in progress
            pipe.xclaim(
                stream,
                self._group,
                self._consumer,
                0,
                ids[:1],
                justid=True,
                retrycount=deliveries[ids[0]] + 1,
            )
            deliveries[ids[0]] += 1
        for entry_id in ids:
            pipe.xrange(stream, entry_id, entry_id, count=1)
        results: Any = await pipe.execute()
        claimed = set(results[0])
        taken = Claimed([], deliveries, [], [])
        for entry_id, found in zip(ids, results[-len(ids) :], strict=True):
            present = bool(found) and found[0][1] is not None
            if entry_id not in claimed:
                if not present:
                    taken.dropped.append(entry_id)
            elif present:
                taken.entries.append((entry_id, found[0][1]))
            else:
                taken.gone.append(entry_id)
        return taken

    async def orphans(self, p: int, client: Redis, idle_ms: int, count: int) -> dict[bytes, int]:
        """Entries of partition ``p`` pending with other consumers and idle ``idle_ms`` or
        longer (at most ``count``), with how many times each was delivered."""
        rows: Any = await client.xpending_range(
            self._streams[p], self._group, "-", "+", count, idle=idle_ms
        )
        me = self._consumer.encode()
        return {row["message_id"]: row["times_delivered"] for row in rows if row["consumer"] != me}

    async def take_orphans(
        self, p: int, client: Redis, orphans: dict[bytes, int], idle_ms: int
    ) -> Claimed:
        """Claim ``orphans`` (see ``orphans``), each counted as delivered once more."""
        stream = self._streams[p]
        found_entries: Any = await client.xclaim(
            stream, self._group, self._consumer, idle_ms, list(orphans)
        )
        entries = [(entry_id, fields) for entry_id, fields in found_entries if fields is not None]
        deliveries = {entry_id: orphans[entry_id] + 1 for entry_id, _ in entries}
        taken = Claimed(entries, deliveries, [], [])
        missing = [entry_id for entry_id in orphans if entry_id not in deliveries]
        if missing:  # trimmed (XCLAIM drops those, or returns them empty), or taken meanwhile
            pipe = client.pipeline(transaction=False)
            for entry_id in missing:
                pipe.xrange(stream, entry_id, entry_id, count=1)
            found: list[Any] = await pipe.execute()
            taken.gone = [
                entry_id for entry_id, rows in zip(missing, found, strict=True) if not rows
            ]
        return taken

    async def prune_consumers(self, p: int, client: Redis) -> None:
        """Delete consumers of dead members that hold nothing (killed processes leave them)."""
        stream = self._streams[p]
        consumers = await client.xinfo_consumers(stream, self._group)
        members: Any = await client.zrange(self._members_key, 0, -1)
        live = {m.decode() for m in members}
        for consumer in consumers:
            name = consumer["name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            if not consumer["pending"] and name not in live and name != self._consumer:
                await client.xgroup_delconsumer(stream, self._group, name)
