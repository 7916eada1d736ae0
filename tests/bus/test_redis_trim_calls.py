"""``RedisTransport.trim()`` called by hand: its argument, a long retention and an
unreachable Redis.

``trim(older_than=-1)`` trimmed everything the groups had acknowledged, the newest
entries included, and ``older_than=nan`` failed in ``int()``; a ``retention`` (or
``older_than``) reaching back before 1970 sent a negative ``MINID``, and redis-py's
``ResponseError: Invalid stream ID`` came out of ``trim()`` (the trimming task logged it
every ``trim_interval``); with Redis unreachable, ``trim()`` raised redis-py's own
``ConnectionError``, where every other call of the transport retries for
``connect_timeout`` and raises a ``TransportError``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import Event, TransportError
from pepperpy.event.transports.redis import RedisTransport
from tests.bus.faultproxy import FaultProxy, finishes

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("older_than", [-1, -0.5, math.nan, math.inf])
async def test_a_bad_older_than_is_refused_and_nothing_is_trimmed(
    redis_url: str, namespace: str, client: Any, older_than: float
) -> None:
    transport = RedisTransport(redis_url, namespace=namespace, partitions=1, trim_interval=None)
    async with asyncio.timeout(15), transport:
        await transport.publish(Event("trim.calls", {"n": 1}))
        with pytest.raises(ValueError, match="older_than must be a finite number of seconds >= 0"):
            await transport.trim(older_than=older_than)
        assert await client.xlen(f"{namespace}:stream:0") == 1


async def test_older_than_of_the_wrong_type_is_a_type_error(redis_url: str, namespace: str) -> None:
    transport = RedisTransport(redis_url, namespace=namespace, partitions=1, trim_interval=None)
    async with asyncio.timeout(15), transport:
        with pytest.raises(TypeError, match="older_than must be a finite number of seconds"):
            await transport.trim(older_than="60")  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["retention", "older_than"])
async def test_a_retention_reaching_back_before_1970_keeps_everything(
    redis_url: str, namespace: str, client: Any, how: str
) -> None:
    ages = 1e12  # some 30,000 years: keep for ever
    kwargs = {"retention": ages} if how == "retention" else {}
    transport = RedisTransport(
        redis_url, namespace=namespace, partitions=1, trim_interval=None, **kwargs
    )
    async with asyncio.timeout(15), transport:
        await transport.publish(Event("trim.calls", {"n": 1}))
        trimmed = await (
            transport.trim() if how == "retention" else transport.trim(older_than=ages)
        )
        assert trimmed == 0
        assert await client.xlen(f"{namespace}:stream:0") == 1


async def test_trim_with_redis_unreachable_raises_a_transport_error(
    proxy: FaultProxy, through_proxy: Callable[..., RedisTransport]
) -> None:
    transport = through_proxy(partitions=2, connect_timeout=0.5, trim_interval=None)
    async with transport:
        assert await transport.trim() == 0
        proxy.refuse()
        proxy.drop()
        with pytest.raises(TransportError, match="unreachable while trimming the streams"):
            await finishes(transport.trim(), 8)
        proxy.heal()
        assert await transport.trim() == 0  # reachable again: trims as before
