"""Closing a bus with many group subscriptions leaves every group cleanly.

``close()`` closes every group member at once, and each wakes its blocked partition
workers with a ``CLIENT UNBLOCK`` per partition, all on the transport's shared pool: a
bus of many groups used up the pool, and the members whose acknowledgements or leave
then found no free connection gave up at once ("could not leave cleanly (all 100
connections ... are in use)", 3 of 30 groups on a default pool): their leases were left
to expire, so the other members of those groups waited ``lease_ttl`` before taking
their partitions over, on every rolling deploy. A full pool frees up within a round
trip, so closing now waits for a connection (at most ``connect_timeout``), as a
publish does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import redis.asyncio as aioredis

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.redis import RedisTransport
from tests.helpers import eventually

pytestmark = pytest.mark.redis

LOGGER = "pepperpy.event.transports.redis"


async def test_closing_many_groups_on_a_small_pool_leaves_each_cleanly(
    redis_url: str, namespace: str, client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    transport = RedisTransport(
        f"{redis_url}?max_connections=8",
        namespace=namespace,
        partitions=8,
        trim_interval=None,
    )
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    seen: dict[str, list[int]] = {}

    def handler(name: str) -> Any:
        def handle(event: Event) -> None:
            seen.setdefault(name, []).append(event.data)

        return handle

    for n in range(12):
        bus.subscribe("o.*", handler(f"g{n}"), group=f"g{n}")
    async with asyncio.timeout(90), bus:
        await bus.publish_many("o.made", list(range(8)), key=lambda m: f"k{m}")
        await eventually(
            lambda: all(len(seen.get(f"g{n}", [])) >= 8 for n in range(12)), timeout=30
        )
        await asyncio.sleep(0.5)  # time for any redelivery
    # a full pool is no reason to deliver anything twice
    assert all(sorted(seen[f"g{n}"]) == list(range(8)) for n in range(12)), seen
    unclean = [r.getMessage() for r in caplog.records if "could not leave" in r.getMessage()]
    assert not unclean, unclean[:2]
    # every lease given back, every member set left
    left = [key async for key in client.scan_iter(match=f"{namespace}:group:*")]
    assert [k for k in left if b":lease:" in k or k.endswith(b":members")] == []


async def hog(transport: RedisTransport, connections: int, seconds: int) -> list[asyncio.Task[Any]]:
    """Hold every connection of the transport's pool with a blocking read for ``seconds``
    (as commands in flight do, when the pool is small for the load)."""
    shared: Any = transport._client
    key = f"{transport.options.namespace}:hog"
    tasks = [
        asyncio.ensure_future(shared.blpop([key], timeout=seconds)) for _ in range(connections)
    ]
    await asyncio.sleep(0.2)  # each has taken its connection
    return tasks


async def test_an_ack_waits_for_a_free_connection_rather_than_delivering_again(
    redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    transport = RedisTransport(
        f"{redis_url}?max_connections=3", namespace=namespace, partitions=1, trim_interval=None
    )
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    seen: list[int] = []
    hogs: list[asyncio.Task[Any]] = []

    @bus.subscribe("o.*", group="g")
    async def handle(event: Event) -> None:
        seen.append(event.data)
        if not hogs:  # its ack finds every connection busy for a second
            hogs.extend(await hog(transport, 3, 1))

    async with asyncio.timeout(60), bus:
        await bus.publish("o.made", 1)
        await eventually(lambda: bool(hogs))
        await asyncio.gather(*hogs)
        await bus.publish("o.made", 2)
        await eventually(lambda: 2 in seen)
        await asyncio.sleep(0.5)  # time for any redelivery
    assert seen == [1, 2]
    assert not [r for r in caplog.records if "acknowledgement failed" in r.getMessage()]


async def test_close_waits_for_a_free_connection_to_leave_the_group(
    redis_url: str, namespace: str, client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    transport = RedisTransport(
        f"{redis_url}?max_connections=3", namespace=namespace, partitions=2, trim_interval=None
    )
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    seen: list[int] = []
    bus.subscribe("o.*", seen.append, group="g")
    async with asyncio.timeout(60):
        await bus.start()
        await bus.publish("o.made", 1)
        await eventually(lambda: len(seen) == 1)
        hogs = await hog(transport, 3, 2)  # every connection busy as close() begins
        await bus.close()
        await asyncio.gather(*hogs, return_exceptions=True)
    assert not [r.getMessage() for r in caplog.records if "could not leave" in r.getMessage()]
    left = [key async for key in client.scan_iter(match=f"{namespace}:group:*")]
    assert [k for k in left if b":lease:" in k or k.endswith(b":members")] == []


async def test_a_heartbeat_on_a_busy_pool_keeps_the_leases(
    redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    transport = RedisTransport(
        f"{redis_url}?max_connections=3",
        namespace=namespace,
        partitions=1,
        trim_interval=None,
        lease_ttl=1.5,  # a renewal every 0.5 s
    )
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    seen: list[int] = []
    bus.subscribe("o.*", lambda event: seen.append(event.data), group="g")
    async with asyncio.timeout(60), bus:
        await bus.publish("o.made", 1)
        await eventually(lambda: seen == [1])
        # every connection busy, but for a moment every second: a pool too small for its
        # load, whose commands in flight come back now and then
        for _ in range(4):
            await asyncio.gather(*await hog(transport, 3, 1))
            await asyncio.sleep(0.1)
        await bus.publish("o.made", 2)
        await eventually(lambda: seen == [1, 2])
    lost = [r.getMessage() for r in caplog.records if "lost its lease" in r.getMessage()]
    assert not lost, lost
