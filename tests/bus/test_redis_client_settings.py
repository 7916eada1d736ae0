"""The Redis transport's clients time out and size their pools as documented.

redis-py's defaults changed between the releases the transport supports (5.0.x: no
socket timeout, a pool of 2**31 connections; later: 5 s and 100), and the transport's
bounds rest on them: a silent server fails a consumer's command (and close()) after the
socket timeout, and the pool's limit is what "When the connection pool runs out" is
about. So the transport sets both itself, unless the URL does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, TransportError
from pepperpy.event.transports.redis import RedisTransport
from tests.helpers import eventually

pytestmark = pytest.mark.redis


def settings(client: Any) -> tuple[Any, Any]:
    """(socket timeout, max connections) of a redis-py client's pool."""
    pool = client.connection_pool
    return pool.connection_kwargs.get("socket_timeout"), pool.max_connections


@pytest.mark.parametrize(
    ("query", "shared", "reader_timeout"),
    [("", (5.0, 100), 5.0), ("&socket_timeout=3.5&max_connections=7", (3.5, 7), 3.5)],
    ids=["defaults", "from-the-url"],
)
async def test_clients_get_the_documented_timeout_and_pool_unless_the_url_sets_them(
    redis_url: str,
    namespace: str,
    query: str,
    shared: tuple[float, int],
    reader_timeout: float,
) -> None:
    transport = RedisTransport(f"{redis_url}?namespace={namespace}&partitions=1{query}")
    bus = EventBus(transport=transport)
    bus.subscribe("c.*", group="g")(lambda event: None)
    async with asyncio.timeout(15), bus:
        assert settings(transport._require_client()) == shared
        member = transport._members[0]
        await eventually(lambda: 0 in member._readers)
        timeout, _ = settings(member._readers[0])  # a group worker's own reader
        assert timeout == reader_timeout


async def test_waiting_for_replicas_outlasts_the_socket_timeout(
    redis_url: str, namespace: str
) -> None:
    # WAIT blocks on the server: asked for 3 s at once, the 2 s socket timeout cut it
    # off (redis-py sent it again, then the transport gave up: "could not learn whether")
    transport = RedisTransport(
        f"{redis_url}?socket_timeout=2", namespace=namespace, replicas=1, connect_timeout=3
    )
    async with asyncio.timeout(15), transport:  # the shared test server has no replica
        with pytest.raises(TransportError, match=r"only 0 of 1 replicas confirmed .* within 3"):
            await transport.publish(Event("c.x", 1))
