"""How a group's members share its partitions through Redis: names, member set, leases.

A group (group name + pattern) is a Redis consumer group on every partition stream.
Its members agree through a sorted set of live members (each renewed every heartbeat)
on who should own which partition: member ``i`` of ``n`` (sorted by id) owns the
partitions whose rank ``r`` (a fixed shuffle, see ``_assignment``) has ``r % n == i``.
Ownership is a lease key per partition (``SET NX PX``). A member that gives a partition
back with entries still pending marks the handover as clean (it finished its event in
progress), which tells the next owner how to count their deliveries (see
``GroupMember._claim``).

Members of earlier versions assign ``p % n == i`` and know nothing of ranks. So that
both kinds agree during a rolling upgrade, each member of this version also keeps
itself in a second sorted set, the *ranked* members; while any live member is missing
from it (an earlier version is in the group), every member assigns ``p % n == i`` as
they do. When the last one leaves, the member set changes, the epoch moves, and the
members rebalance by rank. The rule is always one for the whole group, so every
partition has exactly one member that should own it.

The assignment is computed at each heartbeat, every ``lease_ttl / 3`` seconds. So that a
member joining does not wait for two of them (the holder's, to give its share back, then
its own, to take it), the group has an epoch key, a counter bumped whenever the member
set changes (a member joins, leaves or expires) and whenever a lease is given back.
Every member reads it between heartbeats (``REBALANCE_POLL``) and runs a heartbeat at
once when it moved: the holder gives back what is no longer its share (once its
deliveries in progress finished, as at any heartbeat), the joiner takes it.

This module holds the names (of the consumer group, of a member, of the group's keys),
the Lua scripts that renew and give back leases atomically (and the one that deletes a
group), and :class:`Leases`, which runs them for one member. What a member does with the
partitions it holds is ``_group``'s.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
from typing import TYPE_CHECKING

from ..base import Subscription
from ._assignment import partition_ranks
from ._config import RedisOptions

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "DELETE_GROUP",
    "HANDOVER_MARK_TTL_MS",
    "HEARTBEAT",
    "REBALANCE_POLL",
    "RELEASE",
    "Leases",
    "delete_group",
    "group_id",
    "group_keys",
    "group_name",
    "member_id",
]

#: seconds between two looks of a member at its group's epoch (see the module's docstring)
REBALANCE_POLL = 0.25

#: join/refresh the member set (and the ranked members), renew held leases, take free
#: partitions that are ours; bump the epoch when a member joined or expired.
#: KEYS[1] = member set, KEYS[2] = epoch, KEYS[3] = ranked members, KEYS[4..] = lease
#: keys (partition p at KEYS[p + 4]); ARGV = member id, lease TTL in ms, then each
#: partition's rank (partition p's at ARGV[p + 3]).
#: Returns {held partitions, target partitions, epoch ('' when there is none)}.
HEARTBEAT = """
local me = ARGV[1]
local ttl = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local joined = redis.call('ZADD', KEYS[1], now + ttl, me)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
redis.call('ZADD', KEYS[3], now + ttl, me)
redis.call('PEXPIRE', KEYS[3], ttl * 2)
if expired > 0 or joined > 0 then redis.call('INCR', KEYS[2]) end
redis.call('PEXPIRE', KEYS[2], ttl * 2)
local epoch = redis.call('GET', KEYS[2]) or ''
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
table.sort(members)
local index = 0
local ranked = true
for i, member in ipairs(members) do
  if member == me then index = i - 1 end
  if not redis.call('ZSCORE', KEYS[3], member) then ranked = false end
end
local held, target = {}, {}
for p = 0, #KEYS - 4 do
  local key = KEYS[p + 4]
  local slot = p
  if ranked then slot = tonumber(ARGV[p + 3]) end
  local ours = (slot % #members) == index
  if ours then target[#target + 1] = p end
  local owner = redis.call('GET', key)
  if owner == me then
    redis.call('PEXPIRE', key, ttl)
    held[#held + 1] = p
  elseif ours and not owner then
    redis.call('SET', key, me, 'PX', ttl)
    held[#held + 1] = p
  end
end
return {held, target, epoch}
"""

#: give back leases (only those still ours), marking each partition that has pending
#: entries as handed over cleanly, and, with ARGV[2] == '1', leave the group; bump the
#: epoch if either happened (deleted with the member set once no member is left).
#: KEYS[1] = member set, KEYS[2] = ranked members, then the n lease keys, the n handover
#: keys, the n streams, and the epoch; ARGV = member id, leave flag, how long a handover
#: mark lasts (ms), group name.
RELEASE = """
local n = (#KEYS - 3) / 3
local released = 0
for i = 3, n + 2 do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    local ok, summary = pcall(redis.call, 'XPENDING', KEYS[i + 2 * n], ARGV[4])
    if ok and tonumber(summary[1]) > 0 then
      redis.call('SET', KEYS[i + n], '1', 'PX', ARGV[3])
    else
      redis.call('DEL', KEYS[i + n])
    end
    released = released + 1
  end
end
if ARGV[2] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
if released > 0 or ARGV[2] == '1' then
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 then
    redis.call('INCR', KEYS[#KEYS])
    redis.call('PEXPIRE', KEYS[#KEYS], left)
  else
    redis.call('DEL', KEYS[#KEYS], KEYS[2])
  end
end
return released
"""

#: how long (ms) a clean-handover mark waits for the partition's next owner
HANDOVER_MARK_TTL_MS = 7 * 24 * 3600 * 1000

#: delete a group: ``XGROUP DESTROY`` on each partition stream (a missing key, or one
#: another client replaced with something else, has no group of ours), then its keys.
#: KEYS = the n streams, then the group's keys; ARGV = group name, n. Returns on how many
#: streams the consumer group existed.
DELETE_GROUP = """
local n = tonumber(ARGV[2])
local destroyed = 0
for i = 1, n do
  if redis.call('TYPE', KEYS[i])['ok'] == 'stream' then
    destroyed = destroyed + redis.call('XGROUP', 'DESTROY', KEYS[i], ARGV[1])
  end
end
for i = n + 1, #KEYS do redis.call('DEL', KEYS[i]) end
return destroyed
"""


def member_id() -> str:
    """A consumer name unique to this subscription in this process: host, pid, random."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


def group_name(group: str, pattern: str) -> str:
    """The Redis consumer-group name of ``group`` on ``pattern``; distinct pairs never share one.

    It is ``"<group>:<pattern>"`` when neither part contains ``:`` (the name earlier
    versions used for every pair), else ``"<len(group)>:<group>:<pattern>"``: that has at
    least three colons, so it can equal neither a plain name nor another pair's.
    """
    if ":" not in group and ":" not in pattern:
        return f"{group}:{pattern}"
    return f"{len(group)}:{group}:{pattern}"


def group_id(sub: Subscription) -> str:
    """The stable identity of a group in key names (leases, member set).

    The bus's subscription digest of ``"<group>|<pattern>"`` where that is unambiguous
    (neither part contains ``|``), else a digest of the length-prefixed pair.
    """
    group = sub.group or ""
    if "|" not in group and "|" not in sub.pattern:
        if sub.name:
            return sub.name
        text = f"{group}|{sub.pattern}"
    else:
        text = f"{len(group)}|{group}|{sub.pattern}"
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


def group_keys(options: RedisOptions, gid: str) -> tuple[str, str, list[str], list[str], str]:
    """A group's keys: its member set, its ranked members (see the module's docstring),
    a lease and a handover mark per partition, and its epoch."""
    partitions = range(options.partitions)
    return (
        options.group_key(gid, "members"),
        options.group_key(gid, "ranked"),
        [options.group_key(gid, f"lease:{p}") for p in partitions],
        [options.group_key(gid, f"handover:{p}") for p in partitions],
        options.group_key(gid, "epoch"),
    )


async def delete_group(client: Redis, options: RedisOptions, sub: Subscription) -> int:
    """Destroy the consumer group ``sub`` names on every partition stream (with what it
    has pending) and delete its keys, in one step; returns on how many streams it was."""
    members, ranked, leases, handovers, epoch = group_keys(options, group_id(sub))
    streams = [options.stream(p) for p in range(options.partitions)]
    script = client.register_script(DELETE_GROUP)
    destroyed = await script(
        keys=[*streams, members, ranked, *leases, *handovers, epoch],
        args=[group_name(sub.group or "", sub.pattern), len(streams)],
    )
    return int(destroyed)


class Leases:
    """One member's part in its group's shared state: its place in the member set, the
    partition leases it renews and gives back, its consumer entries on the streams."""

    def __init__(
        self,
        client: Redis,
        options: RedisOptions,
        gid: str,
        group: str,
        consumer: str,
        streams: list[str],
    ) -> None:
        self._client = client
        self._group = group
        self._consumer = consumer
        self._streams = streams
        #: the handover keys are set when a member gives a partition back gracefully
        #: (see GroupMember._claim)
        (
            self.members_key,
            self.ranked_key,
            self.lease_keys,
            self.handover_keys,
            self.epoch_key,
        ) = group_keys(options, gid)
        #: each partition's rank, which the heartbeat assigns by (see ``_assignment``)
        self._ranks = partition_ranks(options.partitions)
        #: the group's epoch as this member last saw it (see the module's docstring)
        self.epoch = ""
        self._heartbeat_script = client.register_script(HEARTBEAT)
        self._release_script = client.register_script(RELEASE)

    async def renew(self, ttl_ms: int) -> tuple[set[int], set[int]]:
        """Join or stay in the member set, renew our leases, take the free partitions
        assigned to us; return the partitions held and those assigned to us."""
        held_raw, target_raw, epoch = await self._heartbeat_script(
            keys=[self.members_key, self.epoch_key, self.ranked_key, *self.lease_keys],
            args=[self._consumer, ttl_ms, *self._ranks],
        )
        self.epoch = _text(epoch)
        return {int(p) for p in held_raw}, {int(p) for p in target_raw}

    async def moved(self) -> bool:
        """Whether the group's epoch moved since we last saw it: a member joined, left or
        expired, or a lease was given back, since our last heartbeat (one ``GET``)."""
        epoch = _text(await self._client.get(self.epoch_key))
        moved, self.epoch = epoch != self.epoch, epoch
        return moved

    async def give_back(self, p: int) -> None:
        """Give partition ``p``'s lease back (if still ours), marking a clean handover."""
        keys = [
            self.members_key,
            self.ranked_key,
            self.lease_keys[p],
            self.handover_keys[p],
            self._streams[p],
            self.epoch_key,
        ]
        args: list[str | int] = [self._consumer, "0", HANDOVER_MARK_TTL_MS, self._group]
        await self._release_script(keys=keys, args=args)

    async def leave(self) -> None:
        """Give every lease back (marking clean handovers), leave the member set, and
        delete our consumer entries where they hold nothing pending."""
        keys = [
            self.members_key,
            self.ranked_key,
            *self.lease_keys,
            *self.handover_keys,
            *self._streams,
            self.epoch_key,
        ]
        args: list[str | int] = [self._consumer, "1", HANDOVER_MARK_TTL_MS, self._group]
        await self._release_script(keys=keys, args=args)
        await self._forget_consumer()

    async def _forget_consumer(self) -> None:
        """Delete our consumer entry where it holds no pending event (deleting would drop them)."""
        pipe = self._client.pipeline(transaction=False)
        for stream in self._streams:
            pipe.xpending(stream, self._group)
        summaries = await pipe.execute(raise_on_error=False)
        pipe = self._client.pipeline(transaction=False)
        me = self._consumer.encode()
        for stream, summary in zip(self._streams, summaries, strict=True):
            if isinstance(summary, Exception):
                continue
            mine = [c for c in summary.get("consumers") or () if c["name"] == me and c["pending"]]
            if not mine:
                pipe.xgroup_delconsumer(stream, self._group, self._consumer)
        await pipe.execute(raise_on_error=False)


def _text(value: object) -> str:
    """A reply of Redis's (bytes, str, a number, or None for no key) as text."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
