"""RabbitMQ: a connection given up because it went silent says so.

aiormq gives a connection up with a bare ``CancelledError`` when no frame came within
its heartbeat timeout, and the transport's one warning per outage, the line operators
watch, read ``lost the connection to RabbitMQ at ... (CancelledError)`` (soak audit F3):
like a bug or a shutdown, with the real reason only in aiormq's own record on another
logger. It now names the heartbeat timeout and what a silent link means.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from pepperpy.event import EventBus, TransportError
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from pepperpy.event.transports.rabbitmq._connect import lost_reason
from tests.bus.faultproxy import FaultProxy, finishes
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq

LOGGER = "pepperpy.event.transports.rabbitmq"


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING
    ]


async def test_a_silent_link_is_logged_as_a_missed_heartbeat(
    proxy: FaultProxy,
    through_proxy: Callable[..., RabbitMQTransport],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    # heartbeat=1: the connection is given up after 2 * 1 = 2 s without a frame
    transport = through_proxy("?heartbeat=1", partitions=1)
    got: list[int] = []
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*")(lambda event: got.append(event.data))
    async with bus:
        proxy.pause()  # a partition: nothing moves, nothing is reset
        await eventually(lambda: bool(warnings_of(caplog)), timeout=20)
        proxy.resume()
        await bus.publish("jobs.run", 1)  # and it comes back
        await eventually(lambda: got == [1], timeout=20)
    [warning] = warnings_of(caplog)
    assert "lost the connection to RabbitMQ at amqp://guest:***@" in warning
    assert "no frame from the broker within the heartbeat timeout, 2s" in warning
    assert "(2 * heartbeat with heartbeat=1)" in warning
    assert "went silent" in warning
    assert "CancelledError" not in warning


def test_other_losses_keep_their_reason() -> None:
    """A reset names the driver's error; a CancelledError on a connection that was not
    silent is not blamed on heartbeats."""
    reset = ConnectionResetError(104, "Connection reset by peer")
    assert lost_reason(None, reset) == str(reset)
    assert lost_reason(None, None) == "closed"
    assert lost_reason(None, asyncio.CancelledError()) == (
        "given up by the driver without a reason (CancelledError)"
    )


async def test_a_publish_on_a_silent_link_ends_within_connect_timeout(
    proxy: FaultProxy, through_proxy: Callable[..., RabbitMQTransport]
) -> None:
    # the broker's default heartbeat (60 s) gives a silent connection up after 183 s; the
    # publish waited for its confirm that long, although connect_timeout is its bound
    transport = through_proxy(connect_timeout=1.0)
    async with EventBus(transport=transport) as bus:
        await bus.publish("jobs.run", 0)
        proxy.pause()  # a partition: nothing moves, nothing is reset
        try:
            with pytest.raises(TransportError) as caught:
                await finishes(bus.publish("jobs.run", 1), 30)
        finally:
            proxy.resume()
    error = caught.value
    assert error.stored is None  # it went out; no confirm came
    message = str(error)
    assert "did not confirm 'jobs.run'" in message and "within connect_timeout" in message
    assert "went silent" in message
    assert "CancelledError" not in message and "guest:***@" in message
