"""When a Redis consumer group acknowledges: after the handler, in batches, never late."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.redis import RedisTransport, _group
from tests.helpers import eventually

pytestmark = pytest.mark.redis


def one_partition_bus(redis_url: str, namespace: str) -> EventBus:
    transport = RedisTransport(redis_url, namespace=namespace, partitions=1)
    return EventBus(transport=transport, retry_policy=RetryPolicy.NONE)


async def pending_ids(redis_url: str, namespace: str) -> list[bytes]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        rows: Any = await client.xpending_range(f"{namespace}:stream:0", "g:h.*", "-", "+", 1000)
    finally:
        await client.aclose()
    return [row["message_id"] for row in rows]


async def stream_ids(redis_url: str, namespace: str) -> list[bytes]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        entries: Any = await client.xrange(f"{namespace}:stream:0")
    finally:
        await client.aclose()
    return [entry_id for entry_id, _ in entries]


async def test_a_burst_of_quick_events_costs_one_xack_per_read_batch(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every delivery runs in a Task of its own, so the loop runs between two deliveries:
    # acks must still leave per batch, not one round trip for every event or two
    monkeypatch.setattr(_group, "ACK_HOLD", 60.0)  # only batch ends hand acks over
    stream = f"{namespace}:stream:0".encode()
    xacks: list[int] = []
    execute = Pipeline.execute

    async def counting_execute(self: Pipeline, raise_on_error: bool = True) -> list[Any]:
        for args, _options in self.command_stack:
            if args[0] == "XACK" and str(args[1]).encode() == stream:
                xacks.append(len(args) - 3)
        return await execute(self, raise_on_error)

    monkeypatch.setattr(Pipeline, "execute", counting_execute)
    bus = one_partition_bus(redis_url, namespace)
    gate = asyncio.Event()
    seen: list[Any] = []

    @bus.subscribe("h.*", group="g")
    async def handler(event: Event) -> None:
        if event.data == 0:
            await gate.wait()  # let the others pile up: they are read 100 at a time
        seen.append(event.data)

    async with asyncio.timeout(20):
        async with bus:
            await bus.publish("h.x", 0)
            await asyncio.gather(*(bus.publish("h.x", n) for n in range(1, 300)))
            gate.set()
            await eventually(lambda: len(seen) == 300, timeout=10)
            await eventually(lambda: sum(xacks) == 300, timeout=5)
            assert await pending_ids(redis_url, namespace) == []
    assert sorted(seen) == list(range(300))
    assert len(xacks) <= 10, xacks  # about one per read (1 + 3); one per event or two before


async def test_acks_of_quick_events_do_not_wait_for_a_slow_one_after_them(
    redis_url: str, namespace: str
) -> None:
    bus = one_partition_bus(redis_url, namespace)
    first, slow = asyncio.Event(), asyncio.Event()
    running: list[Any] = []

    @bus.subscribe("h.*", group="g")
    async def handler(event: Event) -> None:
        running.append(event.data)
        if event.data == "first":
            await first.wait()
        elif event.data == "slow":
            await slow.wait()

    async with asyncio.timeout(20):
        async with bus:
            await bus.publish("h.x", "first")
            await eventually(lambda: running == ["first"], timeout=5)
            for data in ("quick", "slow", "after"):  # one read batch, while "first" runs
                await bus.publish("h.x", data)
            first.set()
            await eventually(lambda: running == ["first", "quick", "slow"], timeout=5)
            first_id, quick_id, slow_id, after_id = await stream_ids(redis_url, namespace)

            async def only_slow_and_after_pending() -> bool:
                return await pending_ids(redis_url, namespace) == [slow_id, after_id]

            for _ in range(200):  # "quick" is acknowledged while "slow" still runs
                if await only_slow_and_after_pending():
                    break
                await asyncio.sleep(0.01)
            assert await only_slow_and_after_pending()
            slow.set()
            await eventually(lambda: running[-1] == "after", timeout=5)
            for _ in range(200):
                if not await pending_ids(redis_url, namespace):
                    break
                await asyncio.sleep(0.01)
            assert await pending_ids(redis_url, namespace) == []
    assert running == ["first", "quick", "slow", "after"]
