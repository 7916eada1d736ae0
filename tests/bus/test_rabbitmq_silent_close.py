"""RabbitMQ: close() against a broker that went silent logs one WARNING, the transport's.

With the sockets open and nothing answering (a partition), close() waits for the broker
at most ``connect_timeout`` after the handlers, then gives its calls up; aiormq logged a
WARNING per call given up, with object reprs (``Closing channel <Channel: "15" at 0x...>
because RPC call <Channel.Close object at 0x...> cancelled``: 13 for one group), and
nothing named the broker (audit 3 finding 7). Those are DEBUG records now; the transport
logs one WARNING naming the broker, how long it waited, and what becomes of the
unacknowledged messages. The broker is reached through the fault proxy, paused to make
it silent, on an exchange of the test's own, deleted afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aiormq
import pytest

from pepperpy.event import EventBus
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.bus.faultproxy import FaultProxy, finishes

pytestmark = pytest.mark.rabbitmq

LOGGER = "pepperpy.event.transports.rabbitmq"
CHANNEL_LOGGER = "aiormq.channel"


def loud(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]


async def test_closing_against_a_silent_broker_logs_one_warning_of_ours(
    proxy: FaultProxy,
    through_proxy: Callable[..., RabbitMQTransport],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger=CHANNEL_LOGGER)  # to see the demoted records
    transport = through_proxy(partitions=3, queue_type="classic", connect_timeout=2.0)
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*", group="workers")(lambda event: None)
    bus.subscribe("jobs.*")(lambda event: None)
    await bus.start()
    proxy.pause()  # silent: nothing moves, nothing is reset
    # the bound docs/transport-rabbitmq.md gives: connect_timeout for the channels and
    # as long again for the connection (aiormq waits 2 s for the broker's Close-Ok)
    took = await finishes(bus.close(), 2 * 2.0 + 2.0)
    [(name, warning)] = loud(caplog)
    assert name == LOGGER
    assert warning.startswith(
        f"RabbitMQ at amqp://guest:***@127.0.0.1:{proxy.port}/ did not answer while closing;"
        " gave up after "
    )
    assert "(connect_timeout is 2s)" in warning
    assert "had not acknowledged to their queues" in warning
    assert took >= 2.0  # it did wait for the broker, connect_timeout long
    # aiormq's records are still there, at DEBUG, with a note
    demoted = [
        r.getMessage()
        for r in caplog.records
        if r.name == CHANNEL_LOGGER and r.levelno == logging.DEBUG and "RPC call" in r.getMessage()
    ]
    assert len(demoted) >= 3, demoted
    assert all(
        m.endswith("(the transport is closing; it logs a broker that does not answer)")
        for m in demoted
    )


async def test_closing_against_a_broker_that_answers_logs_nothing(
    through_proxy: Callable[..., RabbitMQTransport], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    transport = through_proxy(partitions=2, queue_type="classic", connect_timeout=2.0)
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*", group="workers")(lambda event: None)
    await bus.start()
    await finishes(bus.close(), 10)
    assert loud(caplog) == []


async def test_the_same_record_about_another_connection_stays_a_warning(
    amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from pepperpy.event.transports.rabbitmq._closing import quiet_closing_channels

    caplog.set_level(logging.INFO)
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel()
        quiet_closing_channels(None)  # nothing to quiet: not a transport's connection
        logging.getLogger(CHANNEL_LOGGER).warning(
            "Closing channel %r because RPC call %s cancelled", channel, "<Queue.Declare>"
        )
    finally:
        await connection.close()
    assert [name for name, _ in loud(caplog)] == [CHANNEL_LOGGER]
