"""RabbitMQ: an outage logs the transport's WARNING and "back after" INFO, not an aio-pika
INFO per second.

aio-pika logs ``INFO aio_pika.robust_connection: Connection to amqp://... closed.
Reconnecting after 1 seconds.`` each time a try of its robust connection closes: once a
``reconnect_interval`` for the whole of an outage (3,600 lines an hour at the default),
and once per try of ``start()`` against a broker that is down, at the very level the
``serve()`` example configures (audit 3 finding 6). It is a DEBUG record now, with a
note, for the transport's connections while ``start()`` tries and while the transport
logs the outage. Connections go through the fault proxy, on an exchange of the test's
own, deleted afterwards (``through_proxy``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aio_pika
import pytest

from pepperpy.event import EventBus, TransportError
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from pepperpy.event.transports.rabbitmq._quiet_connects import quiet_failed_connects
from tests.bus.faultproxy import FaultProxy, finishes
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq

LOGGER = "pepperpy.event.transports.rabbitmq"
ROBUST_LOGGER = "aio_pika.robust_connection"
CLOSED = "Connection to %s closed. Reconnecting after %r seconds."


def shown(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int, str]]:
    """(logger, level, message) of every record at INFO or above from the transport or
    the drivers."""
    return [
        (r.name, r.levelno, r.getMessage())
        for r in caplog.records
        if r.levelno >= logging.INFO and r.name.startswith((LOGGER, "aio_pika", "aiormq"))
    ]


def demoted(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == ROBUST_LOGGER
        and r.levelno == logging.DEBUG
        and r.msg.startswith("Connection to ")
    ]


async def test_an_outage_logs_no_aio_pika_info_per_attempt(
    proxy: FaultProxy,
    through_proxy: Callable[..., RabbitMQTransport],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger=ROBUST_LOGGER)  # to see the demoted records
    transport = through_proxy(partitions=2, queue_type="classic", reconnect_interval=0.2)
    got: list[int] = []
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*", group="workers")(lambda event: got.append(event.data))
    async with bus:
        attempts = proxy.accepted
        proxy.refuse()  # the broker is down: every attempt to reconnect is reset
        proxy.drop()
        await eventually(lambda: proxy.accepted >= attempts + 4, timeout=20)
        proxy.heal()
        await eventually(lambda: any("is back after" in m for _, _, m in shown(caplog)), timeout=20)
        await bus.publish("jobs.run", 1)
        await eventually(lambda: got == [1], timeout=20)
    records = shown(caplog)
    assert [(name, level) for name, level, _ in records] == [
        (LOGGER, logging.WARNING),
        (LOGGER, logging.INFO),
    ], records
    assert "lost the connection to RabbitMQ" in records[0][2]
    # aio-pika's records are still there, at DEBUG, one per closed attempt at least
    closes = demoted(caplog)
    assert len(closes) >= 4, closes
    assert all(
        m.endswith("(the transport logged this outage, and logs when the connection is back)")
        for m in closes
    )


async def test_start_against_a_broker_that_is_down_logs_no_aio_pika_info(
    proxy: FaultProxy,
    rabbitmq_through_proxy: Callable[..., RabbitMQTransport],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    proxy.refuse()
    transport = rabbitmq_through_proxy(connect_timeout=1.5, reconnect_interval=0.2)
    with pytest.raises(TransportError, match="connect_timeout is 1.5s"):
        await finishes(transport.start(), 10)
    assert proxy.accepted >= 3  # several tries, each closed
    assert [r for r in shown(caplog) if r[0].startswith("aio_pika")] == []


async def test_the_info_of_other_connections_stays(
    amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Only the transport's connections are quieted: a robust connection made outside a
    transport, closed by its broker, still logs aio-pika's INFO."""
    caplog.set_level(logging.INFO)
    with quiet_failed_connects():  # the filter is there (a start() put it there)
        pass
    theirs = aio_pika.RobustConnection(aio_pika.connection.make_url(amqp_url))
    logging.getLogger(ROBUST_LOGGER).info(CLOSED, theirs, 1)
    assert [(r.name, r.levelno) for r in caplog.records] == [(ROBUST_LOGGER, logging.INFO)]
