"""``RedisTransport.trim()`` called by hand: its argument, a long retention and an
unreachable Redis.

``trim(older_than=-1)`` trimmed everything the groups had acknowledged, the newest
entries included, and ``older_than=nan`` failed in ``int()``; a ``retention`` (or
``older_than``) reaching back before 1970 sent a negative ``MINID``, and redis-py's
``ResponseError: Invalid stream ID`` came out of ``trim()`` (the trimming task logged it
every ``trim_interval``); with Redis unreachable, ``trim()`` raised redis-py's own
``ConnectionError``, where every other call of the transport retries for
``connect_timeout`` and raises a ``TransportError``. A retention of 1e306 s or more
raised ``OverflowError`` (its milliseconds are no int), and the retention was counted by
this host's clock, not by Redis's, which gives entries their ids.
"""

from __future__ import annotations

import asyncio
import math
import time
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


@pytest.mark.parametrize("ages", [1e12, 1e306, 1e308])  # 30,000 years, and past it
@pytest.mark.parametrize("how", ["retention", "older_than"])
async def test_a_retention_reaching_back_before_1970_keeps_everything(
    redis_url: str, namespace: str, client: Any, how: str, ages: float
) -> None:
    # 1e306 s and more in ms is no int (inf): trim() raised OverflowError, and the
    # trimming task logged it with its traceback every trim_interval
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


async def test_retention_is_counted_by_the_clock_of_redis_not_of_this_host(
    redis_url: str, namespace: str, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entry ids are Redis's clock. A host whose clock ran ten minutes fast trimmed an
    entry published a moment ago as older than a one-minute retention; one ten minutes
    slow would keep entries ten minutes past it. This host's clock is set fast here for
    the trim only (the one thing of the transport's it could have reached)."""
    transport = RedisTransport(
        redis_url, namespace=namespace, partitions=1, trim_interval=None, retention=60
    )
    async with asyncio.timeout(15), transport:
        await transport.publish(Event("trim.calls", {"n": 1}))
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 600)
        try:
            trimmed = await transport.trim()
        finally:
            monkeypatch.setattr(time, "time", real)
        assert trimmed == 0
        assert await client.xlen(f"{namespace}:stream:0") == 1
        # once Redis's clock is past the entry's millisecond, a retention of 0 trims it
        ((entry_id, _),) = await client.xrange(f"{namespace}:stream:0")
        entry_ms = int(entry_id.split(b"-")[0])
        while True:
            seconds, micros = await client.time()
            if seconds * 1000 + micros // 1000 > entry_ms:
                break
            await asyncio.sleep(0.001)
        assert await transport.trim(older_than=0) == 1
