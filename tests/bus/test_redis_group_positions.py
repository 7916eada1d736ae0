"""A group member makes a destroyed consumer group anew where the *group* had read.

A member remembers, per partition, how far the group has read it, to make a destroyed
group (``XGROUP DESTROY``) anew there. Before, it kept that position after the partition
went to another member; when it took the partition back, a group destroyed meanwhile was
made anew at that old position, and everything the other member had handled and
acknowledged since was delivered a second time. A member now forgets the position when
the partition goes, and learns the group's own position when it takes the partition.

The other member is played by the test: a second entry in the group's member set takes
one partition's share (the member gives that partition back), and the test reads and
acknowledges that partition's events as its consumer would.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.redis import RedisTransport
from pepperpy.event.transports.redis._config import partition_of
from pepperpy.event.transports.redis._group import GroupMember
from tests.helpers import eventually

pytestmark = pytest.mark.redis

LOGGER = "pepperpy.event.transports.redis"

#: sorts after any real member id (host-pid-hex), so it is member 1 of 2: partition 1's
OTHER = "~other-member"


def key_of(partition: int) -> str:
    """A partition key that routes to ``partition`` of 2."""
    return next(k for k in (f"k{n}" for n in range(1000)) if partition_of(k, 2) == partition)


def remade(caplog: pytest.LogCaptureFixture, stream: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if stream in r.getMessage() and "anew" in r.getMessage()]


async def hand_partition_1_to_another(
    client: aioredis.Redis, member: GroupMember, bus: EventBus
) -> list[bytes]:
    """Let the test's member take partition 1; publish three events there, which it reads
    and acknowledges. Returns their ids."""
    seconds, micros = await client.time()
    await client.zadd(member.members_key, {OTHER: seconds * 1000 + micros // 1000 + 600_000})
    # the member gives partition 1 back (its worker ends, the lease is released)
    await eventually(lambda: member._assigned == {0} and not member._releasing)
    await eventually(lambda: 1 not in member._workers)
    stream = member._streams[1]
    for n in range(3):
        await bus.publish("o.made", f"other{n}", key=key_of(1))
    reply: Any = await client.xreadgroup(member.group, OTHER, {stream: ">"}, count=10)
    ids = [entry_id for entry_id, _ in reply[0][1]]
    assert len(ids) == 3
    await client.xack(stream, member.group, *ids)
    return ids


async def test_a_group_destroyed_while_another_member_read_is_not_made_anew_behind_it(
    redis_url: str, namespace: str, client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # The member read partition 1, gave it to another member, which handled three events,
    # then left while an operator destroyed the group there. Before, the member took the
    # partition back and made the group anew at its own old position: the three events
    # were delivered again. It now knows nothing of the group's position, so makes it
    # anew at "$".
    caplog.set_level(logging.WARNING, logger=LOGGER)
    url = f"{redis_url}?namespace={namespace}&partitions=2&trim_interval=off&lease_ttl=0.6"
    transport = RedisTransport(url)
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    seen: list[str] = []

    @bus.subscribe("o.*", group="billing")
    def bill(event: Event) -> None:
        seen.append(event.data)

    async with asyncio.timeout(30), bus:
        (member,) = transport._members
        for p in (0, 1):
            await bus.publish("o.made", f"early{p}", key=key_of(p))
        await eventually(lambda: sorted(seen) == ["early0", "early1"])
        await hand_partition_1_to_another(client, member, bus)
        stream = member._streams[1]
        pipe = client.pipeline(transaction=True)  # it leaves, the group is destroyed
        pipe.xgroup_destroy(stream, member.group)
        pipe.zrem(member.members_key, OTHER)
        await pipe.execute()
        await eventually(lambda: bool(remade(caplog, stream)))
        await bus.publish("o.made", "late", key=key_of(1))
        await eventually(lambda: "late" in seen)
    assert sorted(seen) == ["early0", "early1", "late"]
    [error] = remade(caplog, stream)
    assert "made it anew at $" in error.getMessage()


async def test_a_member_that_takes_a_partition_back_makes_its_group_anew_where_the_group_read(
    redis_url: str,
    namespace: str,
    client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As above, but the group is destroyed only after the member took the partition back
    # and claimed its pending entries, and an event is published right after: the group
    # is made anew where the other member had read up to, so that event is delivered and
    # the three the other member handled are not (before: all four were delivered).
    caplog.set_level(logging.WARNING, logger=LOGGER)
    url = f"{redis_url}?namespace={namespace}&partitions=2&trim_interval=off&lease_ttl=0.6"
    transport = RedisTransport(url)
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    seen: list[str] = []

    @bus.subscribe("o.*", group="billing")
    def bill(event: Event) -> None:
        seen.append(event.data)

    async with asyncio.timeout(30), bus:
        (member,) = transport._members
        for p in (0, 1):
            await bus.publish("o.made", f"early{p}", key=key_of(p))
        await eventually(lambda: sorted(seen) == ["early0", "early1"])
        ids = await hand_partition_1_to_another(client, member, bus)
        stream = member._streams[1]
        armed = True
        real: Callable[[int, Any], Awaitable[None]] = member._prune_consumers

        async def prune(p: int, reader: Any) -> None:  # the claim is done: destroy it now
            nonlocal armed
            await real(p, reader)
            if p == 1 and armed:
                armed = False
                await client.xgroup_destroy(stream, member.group)
                await bus.publish("o.made", "after-destroy", key=key_of(1))

        monkeypatch.setattr(member, "_prune_consumers", prune)
        await client.zrem(member.members_key, OTHER)  # it leaves: the member takes it back
        await eventually(lambda: "after-destroy" in seen)
    assert sorted(seen) == ["after-destroy", "early0", "early1"]
    [error] = remade(caplog, stream)
    assert f"made it anew at {ids[-1].decode()}" in error.getMessage()
