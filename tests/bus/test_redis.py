"""The bus conformance suite on Redis Streams, plus what is specific to Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from pepperpy.event import Transport
from pepperpy.event.transports.redis import RedisTransport
from tests.bus.conformance import BusConformance
from tests.conftest import unique_name

pytestmark = pytest.mark.redis


async def delete_namespace(url: str, namespace: str) -> None:
    """Remove every key a test's transports created under ``namespace``."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def namespace(redis_url: str) -> AsyncIterator[str]:
    name = unique_name("pep")
    yield name
    await delete_namespace(redis_url, name)


class TestRedisBus(BusConformance):
    @pytest.fixture
    def transport_factory(self, redis_url: str, namespace: str) -> Callable[[], Transport | str]:
        return lambda: RedisTransport(redis_url, namespace=namespace)


class TestRedisBusFromUrl(BusConformance):
    @pytest.fixture
    def transport_factory(self, redis_url: str, namespace: str) -> Callable[[], Transport | str]:
        return lambda: f"{redis_url}?namespace={namespace}&partitions=4&lease_ttl=2"
