"""``unix://`` URLs reach Redis over its Unix socket.

The transport takes its own options out of the URL and rebuilds it for redis-py; for
``unix:///path`` the rebuilt URL lost its ``//`` (``unix:/path``), which redis-py
refuses, so every Unix-socket URL was refused with ConfigurationError.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import EventBus
from pepperpy.event.transports.redis import RedisTransport
from tests.helpers import eventually

pytestmark = pytest.mark.redis


def test_a_unix_url_keeps_its_form_for_redis_py() -> None:
    transport = RedisTransport("unix:///run/redis/redis.sock?db=2&namespace=shop")
    assert transport.options.namespace == "shop"
    assert transport._client_url == "unix:///run/redis/redis.sock?db=2"


async def test_events_travel_over_a_unix_socket(redis_socket: Path) -> None:
    transport = RedisTransport(f"unix://{redis_socket}?db=1&namespace=sock&partitions=2")
    bus = EventBus(transport=transport)
    grouped: list[Any] = []
    live: list[Any] = []
    bus.subscribe("s.*", group="g")(lambda event: grouped.append(event.data))
    bus.subscribe("s.*")(lambda event: live.append(event.data))
    async with asyncio.timeout(15), bus:
        for n in range(3):
            await bus.publish("s.x", n, key="k")
        await eventually(lambda: grouped == live == [0, 1, 2])
        client = transport._require_client()
        assert await client.xlen(transport.stream_for("s.x", "k")) == 3


async def test_a_bus_takes_a_unix_url_as_redis(redis_socket: Path) -> None:
    """``EventBus(transport="unix:///path")``, as docs/transport-redis.md says: it was
    refused as an unknown transport URL (only RedisTransport itself took it)."""
    bus = EventBus(transport=f"unix://{redis_socket}?db=3&namespace=bus")
    assert isinstance(bus.transport, RedisTransport)
    seen: list[Any] = []
    bus.subscribe("u.*")(lambda event: seen.append(event.data))
    async with asyncio.timeout(15), bus:
        await bus.publish("u.x", 1)
        await eventually(lambda: seen == [1])
