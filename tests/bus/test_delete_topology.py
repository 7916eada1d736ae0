"""delete_topology(): the one name every transport has for deleting what it made on its
broker (user audit finding 13). The conformance suite runs it on every transport; here,
what is specific: the contract's default, and Redis deleting exactly its namespace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, TransportError
from pepperpy.event.transports import Subscription, Transport
from pepperpy.event.transports.nats import NatsTransport
from pepperpy.event.transports.redis import RedisTransport
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys


class Minimal(Transport):
    async def publish(self, event: Event, *, key: str | None = None) -> None:
        pass

    async def subscribe(self, subscription: Subscription) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_a_transport_without_it_says_so() -> None:
    with pytest.raises(TransportError, match=r"Minimal does not implement delete_topology\(\)"):
        await Minimal().delete_topology()


@pytest.fixture
async def plain(redis_url: str) -> AsyncIterator[Any]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.mark.redis
async def test_redis_deletes_its_namespace_only_even_one_that_reads_as_a_pattern(
    redis_url: str, plain: Any
) -> None:
    """SCAN's MATCH is a glob: namespace ``x[1]`` unescaped would match ``x1:...`` keys,
    and ``x*`` every namespace starting with ``x``. Each is matched literally."""
    base = unique_name("pep_topo")
    mine, others = f"{base}[1]*", [f"{base}1", f"{base}[1]x", f"{base}[1]"]
    try:
        for namespace in others:
            await plain.set(f"{namespace}:kept", "1")
        transport = RedisTransport(redis_url, namespace=mine, partitions=2)
        async with EventBus(transport=transport) as bus:
            bus.subscribe("jobs.*", group="workers")(lambda event: None)
            await bus.publish("jobs.run", 1, key="k")
        assert [k async for k in plain.scan_iter(match=f"{base}*")] != []
        await transport.delete_topology()
        left = sorted([k.decode() async for k in plain.scan_iter(match=f"{base}*")])
        assert left == sorted(f"{namespace}:kept" for namespace in others)
    finally:
        await delete_redis_keys(redis_url, f"{base}*")


@pytest.mark.redis
async def test_redis_delete_topology_reports_an_unreachable_redis() -> None:
    transport = RedisTransport("redis://127.0.0.1:1/0", connect_timeout=0.5)
    with pytest.raises(TransportError):
        await transport.delete_topology()


@pytest.mark.nats
async def test_nats_delete_stream_stays_a_synonym_that_says_whether_it_existed(
    nats_url: str,
) -> None:
    name = unique_name("pep_topo").upper()
    transport = NatsTransport(nats_url, stream=name, prefix=name.lower())
    async with EventBus(transport=transport) as bus:
        await bus.publish("jobs.run", 1)
    assert await transport.delete_stream() is True
    assert await transport.delete_stream() is False
    await transport.delete_topology()  # nothing there: no error
