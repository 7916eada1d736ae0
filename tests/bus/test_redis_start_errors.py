"""Redis: what ``start()`` says when it cannot run the bus where it was pointed.

Operations audit, finding 12: a database number the server does not have was refused
without naming the server or the number; a server that is no Redis server (a NATS port)
gave redis-py's "Protocol error" with no address; a host name that does not resolve was
retried for the whole ``connect_timeout``, as if Redis were starting. Each error now
names the address and says what is wrong; the last fails at once. Nothing is written to
Redis (the start fails before the first command).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import ConfigurationError, EventBus
from pepperpy.event.transports.redis import RedisTransport
from tests.bus.faultproxy import finishes
from tests.bus.starting import greeting_server, start_failure


@pytest.mark.redis
async def test_a_database_the_server_lacks_is_refused_naming_server_and_database(
    redis_url: str,
) -> None:
    message = await start_failure(RedisTransport("redis://127.0.0.1:6379/99", connect_timeout=60))
    assert message == (
        "Redis at 127.0.0.1:6379 (database 99) refused connecting: DB index is out of range"
    )


@pytest.fixture
async def nats_like_server() -> AsyncIterator[int]:
    """A loopback server that greets every connection as NATS does (``INFO {...}``), then
    waits; yields its port."""
    async with greeting_server(b'INFO {"server_id":"not-redis"}\r\n') as port:
        yield port


async def test_a_server_that_is_not_redis_is_called_that(nats_like_server: int) -> None:
    port = nats_like_server
    message = await start_failure(RedisTransport(f"redis://127.0.0.1:{port}/0", connect_timeout=60))
    assert message.startswith(
        f"the server at 127.0.0.1:{port} does not speak the Redis protocol (Protocol error"
    ), message
    assert message.endswith("check the host and port in the transport's URL"), message


async def test_a_host_name_that_does_not_resolve_fails_at_once_naming_the_host() -> None:
    """``.invalid`` never resolves (RFC 6761). Retried, the start took ``connect_timeout``
    (60 s here, past ``start_failure``'s 20-s bound)."""
    message = await start_failure(
        RedisTransport("redis://nosuchhost.invalid:6379/0", connect_timeout=60)
    )
    assert message.startswith(
        "cannot connect to Redis at nosuchhost.invalid:6379: the host name "
        "'nosuchhost.invalid' does not resolve ("
    ), message
    assert message.endswith("check the host in the transport's URL"), message


@pytest.mark.redis
async def test_credentials_redis_refuses_fail_at_once_as_refused_not_unreachable(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # a user Redis does not know: it answers "invalid username-password pair", which
    # redis-py raises as a ConnectionError; it was retried for connect_timeout (60 s
    # here) and reported as "unreachable", like an outage
    url = "redis://nosuchuser:wr0ngpass@127.0.0.1:6379/0"
    message = await start_failure(RedisTransport(url, connect_timeout=60))
    assert message.startswith("Redis at 127.0.0.1:6379 refused connecting: ")
    assert "check the user and password" in message
    assert "unreachable" not in message and "wr0ngpass" not in message
    assert "unreachable" not in caplog.text


def test_the_repr_shows_each_setting_once_and_hides_the_password() -> None:
    """``serve()``'s banner and logs show the transport: the namespace given in the URL
    is shown once (operations audit, finding 17), the password never."""
    transport = RedisTransport("redis://:secret@127.0.0.1:6379/0?namespace=orders&partitions=4")
    assert repr(transport) == "RedisTransport('redis://:***@127.0.0.1:6379/0', namespace='orders')"
    keyword = RedisTransport("redis://127.0.0.1:6379/0", namespace="orders")
    assert repr(keyword) == "RedisTransport('redis://127.0.0.1:6379/0', namespace='orders')"


@pytest.mark.redis
@pytest.mark.parametrize("option", ["ssl_ca_certs", "ssl_certfile"])
async def test_a_tls_file_that_does_not_exist_fails_at_once_naming_it(
    redis_url: str, tmp_path: Any, option: str
) -> None:
    # redis-py's "Error 2 connecting to 127.0.0.1:6379. No such file or directory." was
    # retried for the whole connect_timeout and reported as Redis being unreachable
    missing = tmp_path / "absent.pem"
    url = f"rediss://127.0.0.1:6379/0?{option}={missing}"
    message = await start_failure(RedisTransport(url, connect_timeout=60))
    assert message == (
        f"cannot connect to Redis at 127.0.0.1:6379: the file '{missing}' given as {option} "
        "in the transport's URL does not exist"
    )


@pytest.mark.redis
async def test_a_partition_count_another_client_garbled_is_named(
    redis_url: str, namespace: str, client: Any
) -> None:
    # int() raised its bare "invalid literal for int() with base 10: b'sixteen'"
    await client.hset(f"{namespace}:meta", "partitions", "sixteen")
    bus = EventBus(transport=RedisTransport(redis_url, namespace=namespace, partitions=4))
    try:
        with pytest.raises(ConfigurationError) as raised:
            await finishes(bus.start(), 20)
    finally:
        await bus.close()
    assert str(raised.value) == (
        f"namespace {namespace!r} on redis://127.0.0.1:6379/0: {namespace}:meta holds "
        f"partitions=b'sixteen', which is no partition count; another client wrote it (this "
        f"transport was given 4: HSET {namespace}:meta partitions 4 if that is the "
        "namespace's count)"
    )
