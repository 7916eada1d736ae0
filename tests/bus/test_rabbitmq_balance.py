"""RabbitMQ groups: members share the partitions, idle ones included; concurrent starts.

A first member is active on every partition (single active consumer). The rebalancer
counted only partitions with a delivery in the last two intervals, so a member active on
all twelve idle partitions never exceeded its share: with a few busy keys, two workers
split 18 events 18/0 in 6 of 6 runs. Now members ping the partitions they do not know
themselves active on and count every partition they are active on.

Members starting at the same moment could refuse the group ("already exists with another
partition count than 12"): one saw the other's half-declared queues (p0 without the last)
as a smaller layout.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import Event, EventBus
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.conftest import unique_name
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq

PARTITIONS = 12


def partition_of(key: str) -> int:
    return zlib.crc32(key.encode()) % 64 % PARTITIONS  # lane, then the lane's partition


def key_for(partition: int) -> str:
    """The first ``customer-<n>`` whose events go to ``partition``."""
    keys = (f"customer-{n}" for n in range(10_000))
    return next(key for key in keys if partition_of(key) == partition)


def active_partitions(transport: RabbitMQTransport) -> set[int]:
    """The partitions this member knows itself active on."""
    (group,) = transport._groups.values()
    return {i for i, c in enumerate(group.consumers) if getattr(c, "known_active", False)}


@pytest.mark.parametrize("count", [2, 3])
async def test_members_share_idle_partitions(
    rabbitmq_transports: Callable[..., RabbitMQTransport], count: int
) -> None:
    transports = [rabbitmq_transports(rebalance_interval=0.3) for _ in range(count)]
    publisher = EventBus(transport=rabbitmq_transports())
    handled: dict[int, list[int]] = {i: [] for i in range(count)}
    buses = [EventBus(transport=transport) for transport in transports]
    for index, bus in enumerate(buses):

        async def handle(event: Event, index: int = index) -> None:
            handled[index].append(event.data)
            await asyncio.sleep(0.05)

        bus.subscribe("orders.*", handle, group="workers")
        await bus.start()
    await publisher.start()
    share = -(-PARTITIONS // count)

    def balanced() -> bool:
        owned = [active_partitions(transport) for transport in transports]
        return sum(map(len, owned)) == PARTITIONS and all(len(o) <= share for o in owned)

    try:
        await eventually(balanced, timeout=15)  # no traffic: the partitions are all idle
        owner = {p: i for i, t in enumerate(transports) for p in active_partitions(t)}
        for partition in range(PARTITIONS):
            await publisher.publish("orders.created", partition, key=key_for(partition))
        await eventually(lambda: sum(map(len, handled.values())) == PARTITIONS)
        for index in range(count):
            assert handled[index], f"member {index} handled nothing: {handled}"
            assert sorted(handled[index]) == sorted(p for p, i in owner.items() if i == index)
    finally:
        for bus in [*buses, publisher]:
            await bus.close()


async def test_few_busy_keys_reach_both_members(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
) -> None:
    """The finding's shape: two members, a burst on keys of six partitions, slow handlers."""
    transports = [rabbitmq_transports(rebalance_interval=0.3) for _ in range(2)]
    publisher = EventBus(transport=rabbitmq_transports())
    handled: dict[int, list[str]] = {0: [], 1: []}
    buses = [EventBus(transport=transport) for transport in transports]
    for index, bus in enumerate(buses):

        async def handle(event: Event, index: int = index) -> None:
            handled[index].append(event.metadata["partitionkey"])
            await asyncio.sleep(0.1)

        bus.subscribe("orders.*", handle, group="workers")
        await bus.start()
    await publisher.start()
    try:
        await asyncio.sleep(1.5)  # five rebalancing intervals: the members saw each other
        keys = [key_for(partition) for partition in range(0, PARTITIONS, 2)]
        for n in range(18):
            await publisher.publish("orders.created", n, key=keys[n % len(keys)])
        await eventually(lambda: len(handled[0]) + len(handled[1]) == 18, timeout=20)
        assert handled[0] and handled[1], handled
        assert not set(handled[0]) & set(handled[1])  # no hand-over mid-burst needed
    finally:
        for bus in [*buses, publisher]:
            await bus.close()


async def test_members_starting_together_agree_on_the_layout(amqp_url: str) -> None:
    """Four members join a new group at staggered moments, twenty times: none refuses."""
    exchange = unique_name("pep.x")
    transports = [RabbitMQTransport(amqp_url, exchange=exchange) for _ in range(4)]
    buses = [EventBus(transport=transport) for transport in transports]
    rng = random.Random(7)

    async def handle(event: Event) -> None:
        pass

    async def join(bus: EventBus, group: str, delay: float) -> None:
        await asyncio.sleep(delay)
        bus.subscribe("orders.*", handle, group=group)
        await bus.start()

    try:
        for bus in buses:
            await bus.start()
        for round_ in range(20):
            group = f"g{round_}"
            delays = [0.0, *(rng.uniform(0, 0.03) for _ in buses[1:])]
            results: list[Any] = await asyncio.gather(
                *(join(bus, group, delay) for bus, delay in zip(buses, delays, strict=True)),
                return_exceptions=True,
            )
            failures = [r for r in results if isinstance(r, BaseException)]
            assert not failures, f"round {round_}: {failures}"
            for bus in buses:
                await bus.unsubscribe("orders.*", handle, group=group)
            await buses[0].delete_group("orders.*", group)
    finally:
        for bus in buses:
            await bus.close()
        await transports[0].delete_topology()
