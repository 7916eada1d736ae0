"""Closing a Redis group member while Redis is silent (a partition, a paused VM).

Its workers sit in blocking ``XREADGROUP`` calls that close() wakes with ``CLIENT
UNBLOCK``. close() used to send a new ``CLIENT UNBLOCK`` per blocked worker every 0.1 s,
each on a pooled connection that a silent Redis held until the socket timeout: 16
partitions filled the 100-connection pool in under a second, the member then failed to
leave with advice to raise ``max_connections`` (the outage, not the pool, was the cause),
and some 100 unblock tasks outlived close(), so the process exited seconds after serve()
returned (operations audit, finding 2).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import EventBus
from pepperpy.event.transports.redis import RedisTransport
from tests.bus.faultproxy import FaultProxy, finishes, tasks_left
from tests.helpers import eventually

pytestmark = pytest.mark.redis

LOGGER = "pepperpy.event.transports.redis"
PARTITIONS = 16


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[FaultProxy]:
    # room for a full pool of the transport's: past the default limit (64) the proxy
    # resets new connections, which then fail at once instead of waiting on the silence
    async with FaultProxy(6379, max_connections=256) as made:
        yield made


def count_unblocks(client: Any) -> list[int]:
    """A list that gets the connection id of every ``CLIENT UNBLOCK`` ``client`` sends."""
    sent: list[int] = []
    unblock = client.client_unblock

    async def counted(client_id: int, *args: Any, **kwargs: Any) -> Any:
        sent.append(client_id)
        return await unblock(client_id, *args, **kwargs)

    client.client_unblock = counted
    return sent


async def test_close_while_redis_is_silent_leaves_no_task_and_blames_the_outage(
    proxy: FaultProxy, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    before = set(asyncio.all_tasks())
    transport = RedisTransport(
        f"redis://127.0.0.1:{proxy.port}/0?socket_timeout=2",
        namespace=namespace,
        partitions=PARTITIONS,
        connect_timeout=1.0,
        max_backoff=0.2,
        trim_interval=None,
    )
    bus = EventBus(transport=transport)
    got: list[Any] = []
    bus.subscribe("jobs.*", group="workers")(lambda event: got.append(event.data))
    bus.subscribe("jobs.*")(lambda event: got.append(event.data))  # the listener's read too
    await bus.start()
    try:
        member = transport._members[0]
        # every partition's worker is in its blocking read
        await eventually(lambda: len(member._blocked) == PARTITIONS, timeout=10)
        unblocks = count_unblocks(transport._client)
        proxy.pause()
        # the reads time out after socket_timeout (2 s), the leave after connect_timeout
        await finishes(bus.close(), 8)
        left = tasks_left(before)  # while Redis is still silent
    finally:
        proxy.resume()
        await finishes(bus.close(), 10)
    assert left == []
    # one CLIENT UNBLOCK in flight per blocked reader (each bounded by connect_timeout,
    # then sent again if the worker still reads): not one per worker every 0.1 s
    assert len(unblocks) <= 3 * PARTITIONS, len(unblocks)
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "max_connections" in m], messages
    [leaving] = [r for r in caplog.records if "could not leave cleanly" in r.getMessage()]
    assert leaving.levelno == logging.WARNING
    assert f"Redis at 127.0.0.1:{proxy.port}" in leaving.getMessage(), leaving.getMessage()


def test_a_full_pool_during_an_outage_is_reported_as_the_outage() -> None:
    """A silent Redis holds every command's connection until the socket timeout: the
    pool fills because of the outage, and raising ``max_connections`` would not help."""
    import redis.asyncio as aioredis
    from redis.exceptions import MaxConnectionsError

    from pepperpy.event.transports.redis._outage import Outages

    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0", max_connections=7)
    outages = Outages("127.0.0.1:6379", 1.0)
    full = (MaxConnectionsError,)
    assert outages.explain(MaxConnectionsError(), full, client).startswith(
        "all 7 connections of the transport's Redis connection pool are in use"
    )
    assert outages.pool_blamed(MaxConnectionsError(), full)
    outages.lost(None, "a test", TimeoutError("Timeout reading from 127.0.0.1:6379"))
    assert not outages.pool_blamed(MaxConnectionsError(), full)
    explained = outages.explain(MaxConnectionsError(), full, client)
    assert explained.startswith("no free connection: Redis at 127.0.0.1:6379 is unreachable")
    assert "max_connections" not in explained
