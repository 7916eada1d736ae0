"""When the Redis transport's own connection pool runs out (``max_connections``).

redis-py raises ``MaxConnectionsError`` (a ``ConnectionError``) when every connection of
a pool is in use. That is not an unreachable server: publish waits up to
``connect_timeout`` for a connection to come free and then names the limit; consumers
log the limit and back off. Each test holds the only connection of a pool of one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import redis.asyncio as aioredis

from pepperpy.event import Event, TransportError
from pepperpy.event.transports import Subscription
from pepperpy.event.transports.redis import RedisTransport
from tests.helpers import eventually

pytestmark = pytest.mark.redis

LOGGER = "pepperpy.event.transports.redis"


def tiny_pool(redis_url: str, namespace: str, **options: Any) -> RedisTransport:
    """A transport whose shared pool has a single connection."""
    return RedisTransport(f"{redis_url}?max_connections=1", namespace=namespace, **options)


async def hold_the_connection(transport: RedisTransport) -> Any:
    """Take the shared pool's only connection, as a long command in flight would."""
    pool = transport._require_client().connection_pool
    assert pool.max_connections == 1
    return await pool.get_connection()


async def release(transport: RedisTransport, connection: Any) -> None:
    await transport._require_client().connection_pool.release(connection)


def pool_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "max_connections=1" in r.getMessage()]


async def test_publish_names_the_pool_limit_when_no_connection_comes_free(
    redis_url: str, namespace: str
) -> None:
    async with tiny_pool(redis_url, namespace, connect_timeout=0.3) as transport:
        held = await hold_the_connection(transport)
        try:
            with pytest.raises(TransportError) as raised:
                await transport.publish(Event("a.b", 1))
        finally:
            await release(transport, held)
    message = str(raised.value)
    assert "unreachable" not in message
    assert "no free Redis connection while publishing 'a.b' (waited 0.3s)" in message
    assert "all 1 connections of the transport's Redis connection pool are in use" in message
    assert "max_connections=<n> in the transport's URL" in message
    assert isinstance(raised.value.__cause__, aioredis.ConnectionError)


async def test_publish_waits_for_a_connection_to_come_free(redis_url: str, namespace: str) -> None:
    async with tiny_pool(redis_url, namespace, connect_timeout=5) as transport:
        held = await hold_the_connection(transport)
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, lambda: loop.create_task(release(transport, held)))
        started = loop.time()
        await transport.publish(Event("a.b", 1))
        assert 0.15 < loop.time() - started < 2
        client = transport._require_client()
        assert await client.xlen(transport.stream_for("a.b")) == 1


async def test_a_listener_names_the_pool_limit_backs_off_and_resumes(
    redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    got: list[Event] = []

    async def collect(event: Event) -> None:
        got.append(event)

    async with (
        tiny_pool(redis_url, namespace, max_backoff=0.05) as transport,
        RedisTransport(redis_url, namespace=namespace) as publisher,
    ):
        await transport.subscribe(Subscription("a.*", collect))
        # the listener's first read has not started yet: it finds the pool empty
        held = await hold_the_connection(transport)
        try:
            await eventually(lambda: bool(pool_messages(caplog)), timeout=5)
        finally:
            await release(transport, held)
        await publisher.publish(Event("a.b", 1))
        await eventually(lambda: len(got) == 1, timeout=5)
    message = pool_messages(caplog)[0]
    assert message.startswith("listener: no free Redis connection to read with: all 1 connections")
    assert "backing off" in message
    assert not [r for r in caplog.records if "unreachable" in r.getMessage()]


async def test_a_group_member_names_the_pool_limit_and_keeps_its_group(
    redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    got: list[Event] = []

    async def collect(event: Event) -> None:
        got.append(event)

    async with tiny_pool(redis_url, namespace, partitions=2, lease_ttl=0.3) as transport:
        await transport.subscribe(Subscription("a.*", collect, group="g", name="g"))
        held = await hold_the_connection(transport)  # lease renewals need the shared pool
        try:
            await eventually(lambda: bool(pool_messages(caplog)), timeout=5)
        finally:
            await release(transport, held)
        await transport.publish(Event("a.b", 1))
        await eventually(lambda: len(got) == 1, timeout=5)
    message = pool_messages(caplog)[0]
    assert message.startswith("group 'g:a.*': lease renewal failed: all 1 connections")
    assert not [r for r in caplog.records if "unreachable" in r.getMessage()]
