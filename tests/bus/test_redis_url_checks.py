"""Redis URLs the transport refuses when it is made (audit 13, finding 5, finding 6 and
the IPv6 remark).

A database in both the path and ``?db=`` was accepted, the query silently winning; a
redis-py option redis-py itself refuses (``?protocol=5``) passed, and start() then took
redis-py's error for Redis being unreachable, for the whole ``connect_timeout``; an
unclosed IPv6 bracket raised urllib's bare ``ValueError``.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from pepperpy.event import ConfigurationError, Event, EventBus
from pepperpy.event.transports.redis import RedisTransport


@pytest.mark.parametrize("query", ["db=2", "namespace=x&db=0"])
def test_a_database_in_both_path_and_query_that_differ_is_refused(query: str) -> None:
    with pytest.raises(ConfigurationError, match=r"names two databases, 1 \(its path\)"):
        RedisTransport(f"redis://127.0.0.1:6379/1?{query}")
    with pytest.raises(ConfigurationError, match="names two databases"):
        EventBus(transport=f"rediss://127.0.0.1:6379/1/?{query}")


@pytest.mark.parametrize(
    ("url", "db"),
    [
        ("redis://127.0.0.1:6379/1?db=1", 1),  # the same number twice: no conflict
        ("redis://127.0.0.1:6379?db=2", 2),  # redis-py's own way, with no path
        ("redis://127.0.0.1:6379/?db=3", 3),
        ("unix:///run/redis.sock?db=4", 4),  # the path is the socket
    ],
)
def test_a_database_given_once_is_taken(url: str, db: int) -> None:
    assert RedisTransport(url)._url_options["db"] == db


@pytest.mark.redis
async def test_the_same_database_in_path_and_query_is_the_one_written(
    redis_url: str, namespace: str
) -> None:
    import redis.asyncio as aioredis

    url = f"redis://127.0.0.1:6379/1?db=1&namespace={namespace}&partitions=1"
    bus = EventBus(transport=url)
    other: Any = aioredis.Redis(db=1)
    try:
        async with asyncio.timeout(15), bus:
            await bus.publish("urls.db", {"n": 1})
        assert await other.xlen(f"{namespace}:stream:0") == 1
    finally:
        await bus.transport.delete_topology()  # in database 1
        await other.aclose()


@pytest.mark.parametrize("protocol", ["5", "0", "1", "-3"])
def test_a_protocol_other_than_2_or_3_is_refused_when_made(protocol: str) -> None:
    with pytest.raises(ConfigurationError, match=f"protocol .* must be 2 or 3.*got {protocol}"):
        RedisTransport(f"redis://127.0.0.1:6379/0?protocol={protocol}")


def test_what_redis_py_refuses_in_a_connection_is_refused_when_made() -> None:
    # redis-py checks this when it makes a connection object: at start() it was taken
    # for an unreachable Redis (a TransportError after connect_timeout)
    with pytest.raises(ConfigurationError, match="ssl_cert_reqs.*none, optional or required"):
        RedisTransport("rediss://127.0.0.1:6379/0?ssl_cert_reqs=bogus")


def test_protocol_2_is_accepted() -> None:
    # protocol=3 is refused too: see test_redis_reply_options
    assert RedisTransport("redis://h/0?protocol=2")._url_options["protocol"] == 2


@pytest.mark.parametrize("url", ["redis://[::1/0", "redis://u:secret@[::1:6379/0"])
def test_an_unclosed_ipv6_bracket_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="bad Redis URL.*Invalid IPv6 URL") as raised:
        RedisTransport(url)
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize("name", ["a%20b", "a%0Ab", "caf%C3%A9"])
def test_a_client_name_redis_refuses_is_refused_when_made(name: str) -> None:
    # Redis refuses it in CLIENT SETNAME, at every connection: start() failed with
    # "refused connecting", delete_topology() with "refused deleting namespace"
    with pytest.raises(ConfigurationError, match="client_name in the Redis URL must be"):
        RedisTransport(f"redis://127.0.0.1:6379/0?client_name={name}")


@pytest.mark.redis
async def test_a_client_name_redis_takes_names_the_connections(
    redis_url: str, namespace: str, client: Any
) -> None:
    name = f"{namespace}-conn"
    bus = EventBus(transport=f"{redis_url}?namespace={namespace}&partitions=1&client_name={name}")
    async with asyncio.timeout(15), bus:
        await bus.publish("urls.named", {"n": 1})
        names = [entry.get("name") for entry in await client.client_list()]
        assert name in names


@pytest.mark.parametrize(
    "url", ["redis://:6379/0", "redis:///0", "redis://", "rediss://app:s3cret@:6380/0"]
)
def test_a_url_without_a_host_is_refused_when_made(url: str) -> None:
    """redis-py connects to localhost then: ``redis://${REDIS_HOST}:6379/0`` with the
    variable unset reached whatever Redis this machine runs, silently (NATS and
    RabbitMQ URLs without a host are refused)."""
    message = "names no host: give it (redis://HOST:6379/0, redis://localhost:6379/0"
    with pytest.raises(ConfigurationError, match=re.escape(message)) as raised:
        RedisTransport(url)
    assert "s3cret" not in str(raised.value)
    with pytest.raises(ConfigurationError, match="names no host"):
        EventBus(transport=url)


@pytest.mark.redis
async def test_a_host_given_as_redis_py_s_host_option_is_taken(
    redis_url: str, namespace: str, client: Any
) -> None:
    assert RedisTransport("redis://localhost:6379/0")._url_options["host"] == "localhost"
    transport = RedisTransport(f"redis:///0?host=127.0.0.1&namespace={namespace}&partitions=1")
    async with asyncio.timeout(15), transport:
        await transport.publish(Event("url.host", {"n": 1}))
    assert await client.xlen(f"{namespace}:stream:0") == 1
