"""RabbitMQ: a silent network partition turns ``health()`` not-ready within about two
heartbeat timeouts, and the transport asks for a 15-s heartbeat unless its URL names one.

Before, the transport left the heartbeat to aio-pika (60 s unless the URL said
otherwise) and aiormq gave a silent connection up after ``(heartbeat + 1) * 3`` seconds:
a partition that resets nothing kept ``ready`` True for up to 183 s. The partition here
is the fault proxy's ``pause()`` (nothing moves, nothing is reset), with ``heartbeat=2``
in the URL so that the test stays short: given up after 2 * 2 s without a frame (aiormq
checks every second), where aiormq's own grace took (2 + 1) * 3 = 9 s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from pepperpy.event import EventBus
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.bus.faultproxy import FaultProxy, finishes
from tests.conftest import unique_name
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq

LOGGER = "pepperpy.event.transports.rabbitmq"


def underlay_of(transport: RabbitMQTransport) -> object:
    """The aiormq connection under the transport's robust connection."""
    connection = transport._connection
    assert connection is not None and connection.transport is not None
    return connection.transport.connection


@pytest.mark.flaky(reruns=2)
async def test_a_silent_partition_turns_health_not_ready_within_two_heartbeats(
    proxy: FaultProxy,
    through_proxy: Callable[..., RabbitMQTransport],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    transport = through_proxy("?heartbeat=2", partitions=1)
    got: list[int] = []
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*")(lambda event: got.append(event.data))
    async with bus:
        await bus.publish("jobs.run", 0)
        await eventually(lambda: got == [0], timeout=10)
        assert bus.health().ready
        for n in (1, 2):  # the second on the connection made again after the first
            proxy.pause()  # a partition: nothing moves, nothing is reset
            paused = time.monotonic()
            await eventually(lambda: not bus.health().ready, timeout=20, interval=0.05)
            noticed = time.monotonic() - paused
            # 2 * heartbeat after the last frame (at most a half timeout before the
            # pause), checked every second; aiormq's own grace took 9 s
            assert noticed < 6.5, noticed
            assert bus.health().outage is not None
            proxy.resume()
            await eventually(lambda: bus.health().ready, timeout=20)
            await bus.publish("jobs.run", n)
            expected = list(range(n + 1))
            await eventually(lambda: got == expected, timeout=20)  # noqa: B023
    warnings = [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 2
    for warning in warnings:
        assert "no frame from the broker within the heartbeat timeout, 4s" in warning
        assert "(2 * heartbeat with heartbeat=2)" in warning


async def test_the_transport_asks_for_a_15_second_heartbeat_by_default(amqp_url: str) -> None:
    exchange = unique_name("pep.heartbeat")
    transport = RabbitMQTransport(amqp_url, exchange=exchange)
    assert transport.url == amqp_url  # the URL as given; the default goes to the driver
    try:
        await finishes(transport.start(), 15)
        underlay = underlay_of(transport)
        # what the connection negotiated with the broker, and when it gives up
        assert getattr(underlay, "heartbeat_timeout", None) == 15
        assert underlay.connection_tune.heartbeat == 15  # type: ignore[attr-defined]
        assert getattr(underlay, "_Connection__heartbeat_grace_timeout", None) == 30
    finally:
        await finishes(transport.close(), 15)
        await finishes(transport.delete_topology(), 15)


@pytest.mark.parametrize(
    ("query", "heartbeat", "grace"), [("?heartbeat=7", 7, 14), ("?heartbeat=0", 0, None)]
)
async def test_a_heartbeat_in_the_url_wins(
    amqp_url: str, query: str, heartbeat: int, grace: int | None
) -> None:
    transport = RabbitMQTransport(amqp_url + query, exchange=unique_name("pep.heartbeat"))
    try:
        await finishes(transport.start(), 15)
        underlay = underlay_of(transport)
        assert getattr(underlay, "heartbeat_timeout", None) == heartbeat
        if grace is not None:
            assert getattr(underlay, "_Connection__heartbeat_grace_timeout", None) == grace
    finally:
        await finishes(transport.close(), 15)
        await finishes(transport.delete_topology(), 15)
