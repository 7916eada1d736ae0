"""RabbitMQ: a lost connection is let go once the transport has reconnected.

Each consumer kept the acknowledger of its last message, and with it that message's
aiormq channel and, through the channel, the whole aiormq connection (every channel it
had, their queues and futures: ~185 KB). It was replaced only when a message came on the
new channel, so a consumer that got none after a reconnect (the idle partitions of a
group, an idle ungrouped pattern) kept one dead connection alive per reconnect (soak
audit F1: 13 dead connections after 16 resets, +2.4 MB). Now the reopened consumer
drops it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import zlib
from collections.abc import Callable

import aiormq.connection
import pytest

from pepperpy.event import EventBus
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from pepperpy.event.transports.rabbitmq._config import LANES
from tests.bus.faultproxy import FaultProxy
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq

RESETS = 4
PARTITIONS = 12


def key_for(partition: int) -> str:
    """A key whose events go to ``partition`` of a group (lane crc32(key) % 64)."""
    n = 0
    while (zlib.crc32(f"k{n}".encode()) % LANES) % PARTITIONS != partition:
        n += 1
    return f"k{n}"


def dead_connections(port: int) -> int:
    """Closed aiormq connections to ``port`` (the proxy's) that are still alive."""
    gc.collect()
    return sum(
        1
        for o in gc.get_objects()
        if type(o) is aiormq.connection.Connection and o.is_closed and o.url.port == port
    )


async def handled(bus: EventBus, topic: str, key: str, seen: list[str]) -> None:
    """Publish to ``topic`` until handled: the connection is back, with that consumer."""
    while topic not in seen:
        try:
            await asyncio.wait_for(bus.publish(topic, None, key=key), 5)
            await eventually(lambda: topic in seen, timeout=5)
        except Exception:  # TransportError, TimeoutError, AssertionError: not back yet
            await asyncio.sleep(0.2)


async def test_reconnects_leave_at_most_one_dead_connection_alive(
    proxy: FaultProxy, through_proxy: Callable[..., RabbitMQTransport]
) -> None:
    """Round n delivers to one ungrouped subscription and one partition of a group that
    got nothing before: each then stays idle, as most consumers do after a reconnect."""
    transport = through_proxy(partitions=PARTITIONS)
    bus = EventBus(transport=transport)
    grouped: list[str] = []
    ungrouped: list[str] = []
    bus.subscribe("jobs.*", group="workers")(lambda event: grouped.append(event.type))
    for n in range(RESETS + 1):
        bus.subscribe(f"r{n}.*")(lambda event: ungrouped.append(event.type))
    counts = []
    async with bus:
        # pytest keeps the test's log records, and the drivers' records of a lost
        # connection carry its exception, whose traceback reaches the connection
        logging.disable(logging.CRITICAL)
        try:
            for n in range(RESETS + 1):
                if n:
                    assert proxy.drop()
                await handled(bus, f"jobs.p{n}", key_for(n), grouped)
                await handled(bus, f"r{n}.x", "x", ungrouped)
                # every channel restored (the transport logged the connection back)
                await eventually(lambda: transport._outages.lost_at is None)
                counts.append(dead_connections(proxy.port))
        finally:
            logging.disable(logging.NOTSET)
    # aio-pika's reconnection task holds the last one until the next reconnect
    assert max(counts) <= 1, counts
