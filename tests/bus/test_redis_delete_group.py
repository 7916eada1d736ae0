"""Retiring a group on Redis: what ``delete_group`` leaves in Redis, and what a member
still running elsewhere does (docs/transport-redis.md, "Retiring a group")."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pepperpy.event import EventBus
from pepperpy.event.transports.redis import RedisTransport
from tests.bus.test_redis import _crash
from tests.helpers import eventually

pytestmark = pytest.mark.redis


async def _groups(client: Any, streams: list[str]) -> list[set[str]]:
    """The consumer groups on each stream."""
    return [{info["name"].decode() for info in await client.xinfo_groups(s)} for s in streams]


async def _keys(client: Any, pattern: str) -> list[str]:
    return sorted([key.decode() async for key in client.scan_iter(match=pattern)])


async def test_a_deleted_group_leaves_nothing_in_redis_and_holds_back_no_trimming(
    redis_url: str, namespace: str, client: Any
) -> None:
    """The audit's case: a group whose members are gone (here, killed) kept its consumer
    group, so ``trim()`` kept every entry published after it, for ever."""
    options: dict[str, Any] = {
        "namespace": namespace,
        "partitions": 2,
        "retention": 0,
        "trim_interval": None,
    }
    crashed = EventBus(transport=RedisTransport(redis_url, lease_ttl=60, **options))
    got: list[int] = []
    crashed.subscribe("orders.*", group="billing")(lambda e: got.append(e.data))
    await crashed.start()
    for n in range(10):
        await crashed.publish("orders.placed", n, key=f"k{n}")
    await eventually(lambda: len(got) == 10)
    await _crash(crashed.transport)  # as a SIGKILL would: member entry and leases stay
    await crashed.close()

    bus = EventBus(transport=RedisTransport(redis_url, **options))  # started by the calls
    for n in range(10, 30):
        await bus.publish("orders.placed", n, key=f"k{n}")
    transport: RedisTransport = bus.transport  # type: ignore[assignment]
    streams = [f"{namespace}:stream:{p}" for p in range(2)]
    assert await _groups(client, streams) == [{"billing:orders.*"}] * 2
    assert await _keys(client, f"{namespace}:group:*"), "the dead member's keys are there"
    await transport.trim()
    assert sum([await client.xlen(s) for s in streams]) >= 20, "kept for the group"

    await bus.delete_group("orders.*", "billing")
    assert await _groups(client, streams) == [set(), set()]
    assert await _keys(client, f"{namespace}:group:*") == []
    await transport.trim()
    assert [await client.xlen(s) for s in streams] == [0, 0]
    await bus.close()


async def test_a_member_still_running_elsewhere_makes_the_group_anew(
    redis_url: str, namespace: str, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="pepperpy")
    options: dict[str, Any] = {"namespace": namespace, "partitions": 2, "trim_interval": None}
    running = EventBus(transport=RedisTransport(redis_url, lease_ttl=1, **options))
    got: list[int] = []
    running.subscribe("orders.*", group="billing")(lambda e: got.append(e.data))
    deleting = EventBus(transport=RedisTransport(redis_url, **options))
    async with running, deleting:
        await deleting.publish("orders.placed", 0)
        await eventually(lambda: got == [0])
        await deleting.delete_group("orders.*", "billing")
        for n in range(1, 11):
            await deleting.publish("orders.placed", n, key=f"k{n}")
        await eventually(lambda: sorted(got) == list(range(11)), timeout=20)
        streams = [f"{namespace}:stream:{p}" for p in range(2)]
        assert await _groups(client, streams) == [{"billing:orders.*"}] * 2
        for _ in range(100):  # its next heartbeat (every third of lease_ttl) joins anew
            if await _keys(client, f"{namespace}:group:*:members"):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the member set was not made anew")
        remade = [r for r in caplog.records if "was gone" in r.getMessage()]
        assert remade, "the member made the group anew without a word"
