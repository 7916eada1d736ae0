"""Redis under network faults: the transport's connections go through a fault proxy.

The proxy (``tests/bus/faultproxy.py``) breaks only this test's connections; the shared
Redis is never restarted. Keys live under a namespace of the test's own, deleted after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import EventBus, TransportError
from pepperpy.event.transports.redis import RedisTransport
from tests.bus.faultproxy import FaultProxy, finishes
from tests.helpers import eventually

pytestmark = pytest.mark.redis


async def test_publish_during_a_partition_gives_up_after_connect_timeout(
    proxy: FaultProxy, through_proxy: Callable[..., RedisTransport]
) -> None:
    got: list[Any] = []
    bus = EventBus(transport=through_proxy(partitions=2, connect_timeout=0.5))
    bus.subscribe("jobs.*", group="workers")(lambda event: got.append(event.data))
    async with bus:
        await bus.publish("jobs.run", "before")
        proxy.pause()
        # redis-py alone waits for its 5 s socket timeout, then retries once
        started = time.monotonic()
        with pytest.raises(TransportError, match="unreachable"):
            await finishes(bus.publish("jobs.run", "lost"), 8)
        assert time.monotonic() - started < 2
        # concurrent publishes are pipelined together; that round trip is bounded too
        attempts = [bus.publish("jobs.run", n, key=str(n)) for n in range(20)]
        outcomes = asyncio.ensure_future(asyncio.gather(*attempts, return_exceptions=True))
        assert await finishes(outcomes, 8) < 2
        assert all(isinstance(outcome, TransportError) for outcome in outcomes.result())
        proxy.resume()
        proxy.drop()  # the connections cut off mid-command are useless now anyway
        # afterwards the pool works, and no reply is read for the wrong command
        for n in range(20):
            await bus.publish("jobs.run", {"n": n}, key=str(n))
        await eventually(lambda: sum(isinstance(data, dict) for data in got) == 20)
    assert "before" in got
    assert sorted(data["n"] for data in got if isinstance(data, dict)) == list(range(20))


async def test_start_against_a_silent_server_gives_up_after_connect_timeout(
    proxy: FaultProxy, through_proxy: Callable[..., RedisTransport]
) -> None:
    proxy.blackhole()  # accepts connections, never answers
    for silence in ("blackhole", "pause"):
        if silence == "pause":  # a server that answered before, then went silent
            proxy.heal()
            proxy.pause()
        bus = EventBus(transport=through_proxy(connect_timeout=0.5))
        started = time.monotonic()
        with pytest.raises(TransportError, match="unreachable while connecting"):
            await finishes(bus.start(), 8)
        assert time.monotonic() - started < 2
        await finishes(bus.close(), 2)


async def test_an_unreachable_server_is_reported_with_its_error(
    proxy: FaultProxy, through_proxy: Callable[..., RedisTransport]
) -> None:
    proxy.refuse()
    bus = EventBus(transport=through_proxy(connect_timeout=0.5))
    started = time.monotonic()
    with pytest.raises(TransportError, match="unreachable while connecting") as caught:
        await finishes(bus.start(), 8)
    assert time.monotonic() - started < 2
    # the last attempt, cut off at the deadline, does not hide what went wrong before it
    assert "no answer" not in str(caught.value)
    await finishes(bus.close(), 2)
