"""Redis groups deal partitions to members by a fixed shuffle, not by ``p % n``.

A key's partition is ``crc32(key) % partitions``, and CRC-32 is linear over GF(2): keys
that differ only in their last character's low bits (``customer-0`` .. ``customer-3``)
land on partitions with equal low bits (11, 13, 7, 1: all odd). Member ``i`` of ``n``
owned the partitions ``p % n == i``, so with two members one of them got every event of
those keys (a new user's two workers split 18 events 0/18, every time, whatever the
prefix). Member ``i`` now owns the partitions whose rank in a fixed pseudo-random
permutation is ``i`` modulo ``n``: still ``partitions // n`` or one more each.

While a member of an earlier version (which assigns ``p % n``) is in the group, every
member assigns as it does, so the group always follows one rule: no partition is wanted
by nobody, and leases keep two members from reading one partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import string
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pepperpy.event import Event, EventBus
from pepperpy.event.transports.redis import RedisTransport
from pepperpy.event.transports.redis._assignment import partition_ranks
from pepperpy.event.transports.redis._config import partition_of
from pepperpy.event.transports.redis._group import GroupMember
from tests.helpers import eventually

#: the heartbeat script of the versions that assigned ``p % n`` (a member of such a
#: version is played by the test in a rolling upgrade)
EARLIER_HEARTBEAT = """
local me = ARGV[1]
local ttl = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local joined = redis.call('ZADD', KEYS[1], now + ttl, me)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
if expired > 0 or joined > 0 then redis.call('INCR', KEYS[2]) end
redis.call('PEXPIRE', KEYS[2], ttl * 2)
local epoch = redis.call('GET', KEYS[2]) or ''
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
table.sort(members)
local index = 0
for i, member in ipairs(members) do
  if member == me then index = i - 1 end
end
local held, target = {}, {}
for p = 0, #KEYS - 3 do
  local key = KEYS[p + 3]
  local ours = (p % #members) == index
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

#: sorts after any real member id (host-pid-hex): the last member
EARLIER_MEMBER = "~earlier-version"

PARTITIONS = 16


def keys(prefix: str, first: int, last: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(first, last + 1)]


def split(routing: list[str], members: int, partitions: int = PARTITIONS) -> list[int]:
    """How many of ``routing`` each member's partitions take."""
    ranks = partition_ranks(partitions)
    counts = [0] * members
    for key in routing:
        counts[ranks[partition_of(key, partitions)] % members] += 1
    return counts


# -- the rule -----------------------------------------------------------------------------


@pytest.mark.parametrize("partitions", [1, 2, 3, 7, 16, 100, 1024])
def test_every_member_owns_the_floor_or_the_ceiling_of_its_share(partitions: int) -> None:
    ranks = partition_ranks(partitions)
    assert sorted(ranks) == list(range(partitions))
    for members in range(1, min(partitions, 40) + 1):
        owned = [0] * members
        for rank in ranks:
            owned[rank % members] += 1
        assert set(owned) <= {partitions // members, -(-partitions // members)}


def test_keys_differing_in_their_last_digit_are_split_over_two_members() -> None:
    # p % 2 gave all four to one member, for every prefix
    assert [partition_of(k, PARTITIONS) % 2 for k in keys("customer-", 0, 3)] == [1, 1, 1, 1]
    assert min(split(keys("customer-", 0, 3), 2)) > 0


#: prefixes of sequential keys, none of them among those the rank's tag was chosen on
PREFIXES = [
    "".join(random.Random(2026 + n).choices(string.ascii_letters + "-_:/.", k=n % 17))
    for n in range(400)
]


@pytest.mark.parametrize("partitions", [8, 16, 32, 64])
def test_four_sequential_keys_rarely_all_go_to_one_of_two_members(partitions: int) -> None:
    # p % n: every set of four; a random permutation: about one in ten
    alone = sum(min(split(keys(prefix, 0, 3), 2, partitions)) == 0 for prefix in PREFIXES)
    assert alone / len(PREFIXES) <= 0.2


@pytest.mark.parametrize("members", [2, 3, 4, 5])
def test_sequential_keys_are_split_about_as_evenly_as_random_ones(members: int) -> None:
    idle = 0
    busiest: list[float] = []
    for prefix in PREFIXES:
        counts = split(keys(prefix, 0, 17), members)
        idle += min(counts) == 0
        busiest.append(max(counts) * members / 18)
    # partitions dealt by a random permutation: an idle member in 0-9% of the sets, the
    # busiest with 1.12-1.45 times its share on average (p % n: 1.46 and 1.54 for 3, 5)
    assert idle / len(PREFIXES) <= 0.1
    assert statistics.mean(busiest) <= 1.4


# -- on Redis -----------------------------------------------------------------------------


def member_of(bus: EventBus) -> GroupMember:
    members: list[GroupMember] = bus.transport._members  # type: ignore[attr-defined]
    assert len(members) == 1
    return members[0]


async def owners(client: Any, member: GroupMember) -> list[str | None]:
    """Each partition's lease holder."""
    raw = await client.mget(member.lease_keys)
    return [None if owner is None else owner.decode() for owner in raw]


async def live_members(client: Any, member: GroupMember) -> list[str]:
    return sorted(m.decode() for m in await client.zrange(member.members_key, 0, -1))


async def settled_on(
    client: Any, buses: list[EventBus], rule: Callable[[int, int], int] | None, count: int
) -> None:
    """Wait until the group's ``count`` members hold their shares by ``rule(p, n) -> member
    index`` (None: any shares of ``partitions // n`` or one more): every partition held,
    and none of ``buses`` handing one over."""
    group = [member_of(bus) for bus in buses]
    shares = {PARTITIONS // count, -(-PARTITIONS // count)}

    async def settled() -> bool:
        ids = await live_members(client, group[0])
        held = await owners(client, group[0])
        if len(ids) != count or None in held:
            return False
        if rule is not None and held != [ids[rule(p, count)] for p in range(PARTITIONS)]:
            return False
        if rule is None and {held.count(i) for i in ids} - shares:
            return False
        return all(
            m._assigned == {p for p, owner in enumerate(held) if owner == m.consumer}
            and not m._releasing
            for m in group
        )

    for _ in range(500):
        if await settled():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(
        f"the group did not settle: members {await live_members(client, group[0])}, "
        f"leases {await owners(client, group[0])}"
    )


def by_rank(p: int, n: int) -> int:
    return partition_ranks(PARTITIONS)[p] % n


def by_modulo(p: int, n: int) -> int:
    return p % n


@contextlib.asynccontextmanager
async def group_of(
    redis_url: str, namespace: str, count: int, handled: list[list[str]], **options: Any
) -> AsyncIterator[list[EventBus]]:
    """``count`` members of group ``workers`` on ``jobs.*``; member ``i`` records the key of
    each event it handles in ``handled[i]``."""
    buses = []
    for index in range(count):
        handled.append([])
        bus = EventBus(
            transport=RedisTransport(
                redis_url, namespace=namespace, partitions=PARTITIONS, **options
            )
        )

        def handler(mine: list[str]) -> Callable[[Event], Any]:
            async def work(event: Event) -> None:
                mine.append(event.data)

            return work

        bus.subscribe("jobs.*", group="workers")(handler(handled[index]))
        buses.append(bus)
    async with contextlib.AsyncExitStack() as stack:
        for bus in buses:
            await stack.enter_async_context(bus)
        yield buses


@pytest.mark.redis
@pytest.mark.parametrize(
    ("routing", "count"),
    [
        (keys("customer-", 0, 3), 2),
        (keys("customer-", 0, 17), 2),
        (keys("customer-", 0, 17), 3),
        (keys("customer-", 0, 17), 4),
        (keys("customer-", 0, 17), 5),
        (keys("order-", 0, 9), 3),
        (keys("user-", 100, 111), 4),
        (keys("", 1, 20), 5),
    ],
)
async def test_every_member_gets_work_from_sequential_keys(
    redis_url: str, namespace: str, client: Any, routing: list[str], count: int
) -> None:
    handled: list[list[str]] = []
    async with group_of(redis_url, namespace, count, handled) as buses:
        await settled_on(client, buses, None, count)
        total = max(18, len(routing))
        for n in range(total):
            key = routing[n % len(routing)]
            await buses[0].publish("jobs.run", key, key=key)
        await eventually(lambda: sum(map(len, handled)) == total)
    assert all(handled), f"split {[len(mine) for mine in handled]}"
    # each key's events went to one member: the one its partition is dealt to
    ids = sorted(member_of(bus).consumer for bus in buses)
    for bus, mine in zip(buses, handled, strict=True):
        index = ids.index(member_of(bus).consumer)
        assert {by_rank(partition_of(k, PARTITIONS), count) for k in mine} == {index}


@pytest.mark.redis
async def test_a_member_of_an_earlier_version_makes_the_group_assign_as_it_does(
    redis_url: str, namespace: str, client: Any
) -> None:
    # A rolling upgrade: two members of this version, then one that assigns p % n joins,
    # then it goes away (killed: its leases expire). While it is there every member
    # assigns p % n, so each partition has one member that wants it and all are held;
    # afterwards the two deal by rank again.
    handled: list[list[str]] = []
    async with group_of(redis_url, namespace, 2, handled, lease_ttl=0.6) as buses:
        await settled_on(client, buses, by_rank, 2)
        first = member_of(buses[0])
        earlier = client.register_script(EARLIER_HEARTBEAT)
        stop = asyncio.Event()

        async def earlier_member() -> None:
            while not stop.is_set():
                await earlier(
                    keys=[first.members_key, first._leases.epoch_key, *first.lease_keys],
                    args=[EARLIER_MEMBER, 600],
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)

        task = asyncio.create_task(earlier_member())
        try:
            assert all(member_of(bus).consumer < EARLIER_MEMBER for bus in buses)  # member 2
            await settled_on(client, buses, by_modulo, 3)
        finally:
            stop.set()
            await task
        await settled_on(client, buses, by_rank, 2)  # it expired: by rank again
