"""RabbitMQ: one WARNING per lost connection, the transport's.

Each lost connection also logged the drivers' WARNINGs, which say what the transport's
line says (soak finding 4: 102 of a run's 298 WARNINGs): aiormq's as it gives the
connection up (``Cancelling cause reader exited abnormally``, or ``Server connection ...
was stuck``) and aio-pika's for every failed attempt to restore it (``Connection attempt
to "..." failed: ... Reconnecting after N seconds.``). They are DEBUG records now, about
the transport's own connections and while it logs the outage; about other connections,
or while no outage is recorded, they stay WARNINGs.

Connections go through the fault proxy; every test uses an exchange of its own and
deletes what it declared (``through_proxy``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aio_pika
import aiormq
import pytest

from pepperpy.event import EventBus
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from pepperpy.event.transports.rabbitmq._logs import Outages
from tests.bus.faultproxy import FaultProxy
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq

LOGGER = "pepperpy.event.transports.rabbitmq"
#: the drivers' loggers, and their messages (aiormq 7.2, aio-pika 10.2)
CONNECT_LOGGER = "aiormq.connection"
ROBUST_LOGGER = "aio_pika.robust_connection"
READER_FAILED = "Cancelling cause reader exited abnormally"
STUCK = "Server connection %r was stuck. No frames were received in %d seconds."
ATTEMPT_FAILED = 'Connection attempt to "%s" failed: %s. Reconnecting after %r seconds.'


def loud(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """(logger, message) of every record at WARNING or above."""
    return [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]


def demoted(caplog: pytest.LogCaptureFixture, name: str, start: str) -> list[str]:
    """The DEBUG records of logger ``name`` starting with ``start`` that the transport
    demoted (they carry its note)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == name
        and r.levelno == logging.DEBUG
        and r.getMessage().startswith(start)
        and "(the transport log" in r.getMessage()
    ]


def capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger=ROBUST_LOGGER)
    caplog.set_level(logging.DEBUG, logger=CONNECT_LOGGER)


@pytest.mark.parametrize("fault", ["reset", "refused", "silent"])
async def test_each_lost_connection_logs_one_warning_the_transports(
    proxy: FaultProxy,
    through_proxy: Callable[..., RabbitMQTransport],
    caplog: pytest.LogCaptureFixture,
    fault: str,
) -> None:
    """reset: every connection is reset; refused: reset, then two attempts to reconnect
    are reset too; silent: the connection stops moving (heartbeat=1: given up after 6 s)."""
    capture(caplog)
    transport = through_proxy("?heartbeat=1", partitions=2, queue_type="classic")
    got: list[int] = []
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*", group="workers")(lambda event: got.append(event.data))
    bus.subscribe("jobs.*")(lambda event: got.append(event.data))

    def ours() -> list[str]:
        return [m for name, m in loud(caplog) if name == LOGGER]

    def backs() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]

    async def outage(n: int) -> None:
        if fault == "silent":
            proxy.pause()
            await eventually(lambda: len(ours()) == n, timeout=20)
            proxy.resume()
        else:
            attempts = proxy.accepted
            if fault == "refused":
                proxy.refuse()
            proxy.drop()
            if fault == "refused":
                await eventually(lambda: proxy.accepted >= attempts + 2)
                proxy.heal()
        await eventually(lambda: len(backs()) == n, timeout=20)  # the outage is over
        await bus.publish("jobs.run", n)
        await eventually(lambda: got.count(n) == 2, timeout=20)

    # one silent outage: a second one in the same test was not always detected within
    # 20 s (2 runs of 8; the reconnected connection was sometimes given up at once too,
    # within the first outage), which is not what this test is about
    outages = 1 if fault == "silent" else 2
    async with bus:
        for n in range(1, outages + 1):
            await outage(n)
    assert loud(caplog) == [(LOGGER, m) for m in ours()]
    assert len(ours()) == outages
    assert all("lost the connection to RabbitMQ" in m for m in ours())
    # the drivers' records are still there, as DEBUG records
    if fault == "silent":
        assert demoted(caplog, CONNECT_LOGGER, "Server connection <Connection")
    else:
        reader = demoted(caplog, CONNECT_LOGGER, READER_FAILED)
        assert len(reader) == 2
        assert [r.exc_info for r in caplog.records if r.getMessage() == reader[0]][0]
    if fault == "refused":
        assert len(demoted(caplog, ROBUST_LOGGER, "Connection attempt to ")) >= 4


async def test_the_same_warnings_about_other_connections_or_no_outage_stay_warnings(
    amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    capture(caplog)
    closed = False
    outages = Outages(amqp_url, 0.2, lambda: closed)
    ours = aio_pika.RobustConnection(aio_pika.connection.make_url(amqp_url))
    theirs = aio_pika.RobustConnection(aio_pika.connection.make_url(amqp_url))
    outages.watch(ours)
    robust = logging.getLogger(ROBUST_LOGGER)
    failed = ConnectionRefusedError(111, "Connect call failed")

    def attempt_failed(connection: aio_pika.RobustConnection, error: Exception = failed) -> int:
        """Log aio-pika's record; how many WARNINGs it added."""
        before = len(loud(caplog))
        robust.warning(ATTEMPT_FAILED, connection, error, 0.2)
        return len(loud(caplog)) - before

    assert attempt_failed(ours) == 1  # no outage recorded
    outages.lost("reset")  # our WARNING
    assert attempt_failed(ours) == 0  # demoted: the outage is logged
    assert attempt_failed(theirs) == 1  # another connection
    # news the transport's line does not have: the broker said no, a restore failed
    errors = aiormq.exceptions
    assert attempt_failed(ours, errors.ProbableAuthenticationError("ACCESS_REFUSED")) == 1
    assert attempt_failed(ours, errors.ChannelNotFoundEntity("NOT_FOUND - no queue")) == 1
    assert attempt_failed(ours, TimeoutError()) == 0  # unreachable
    closed = True  # a closed transport logs no outage: aio-pika's record shows
    assert attempt_failed(ours) == 1
    closed = False
    outages.restored()
    assert attempt_failed(ours) == 1  # the outage is over

    # aiormq's: about a connection that is not one of ours (none is connected here)
    outages.lost("reset")
    aiormq_log = logging.getLogger(CONNECT_LOGGER)
    other = aiormq.Connection(amqp_url)
    aiormq_log.warning(STUCK, other, 6)
    aiormq_log.warning(READER_FAILED, exc_info=ConnectionResetError(104, "reset"))
    assert [m for name, m in loud(caplog) if name == CONNECT_LOGGER] == [
        f"Server connection {other!r} was stuck. No frames were received in 6 seconds.",
        READER_FAILED,
    ]
    assert demoted(caplog, ROBUST_LOGGER, "Connection attempt to ")[0] == (
        f'Connection attempt to "{ours}" failed: {failed}. Reconnecting after 0.2 seconds.'
        " (the transport logged this outage, and logs when the connection is back)"
    )
