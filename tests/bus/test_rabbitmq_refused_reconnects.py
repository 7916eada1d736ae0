"""RabbitMQ: a broker that is down (nothing listens on its port) logs one WARNING per
outage, the transport's, not an ERROR per attempt to reconnect.

While nobody listens, each attempt of the robust connection to reconnect fails to open a
socket, and aiormq logs it at ERROR (``aiormq.connection``: ``error when creating
transport: ConnectionRefusedError(...)``), once every ``reconnect_interval``: a broker
restart of 20 s with the default interval logged 20 ERRORs beside the transport's one
WARNING, which says what they say. They are DEBUG records now, with a note, for the
transport's own connection while it logs the outage.

The broker is reached through a fault proxy that stops listening and listens again on
the same port; the test's exchange is its own and deleted after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiormq
import pytest

from pepperpy.event import EventBus
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.bus.faultproxy import finishes
from tests.conftest import unique_name
from tests.faultproxy import FaultProxy
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq

LOGGER = "pepperpy.event.transports.rabbitmq"
CONNECT_LOGGER = "aiormq.connection"
CREATING = "error when creating transport"


class StoppableProxy(FaultProxy):
    """A fault proxy that stops listening, as a broker that is down (a connection to its
    port is refused), and listens again on the same port."""

    async def stop_listening(self) -> None:
        port = self.port
        await self.close()  # stops listening, and resets every connection through it
        self.port = port

    async def listen_again(self) -> None:
        self._closing = False
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)


@pytest.fixture
async def stoppable(amqp_url: str) -> AsyncIterator[StoppableProxy]:
    async with StoppableProxy(5672) as made:
        yield made


def loud(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]


def refused(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """aiormq's records of a socket that could not be opened, at any level."""
    return [
        r
        for r in caplog.records
        if r.name == CONNECT_LOGGER and r.getMessage().startswith(CREATING)
    ]


async def test_a_broker_that_is_down_logs_one_warning_per_outage(
    stoppable: StoppableProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger=CONNECT_LOGGER)
    url = f"amqp://guest:guest@127.0.0.1:{stoppable.port}/"
    transport = RabbitMQTransport(
        url, exchange=unique_name("pep.down"), partitions=1, reconnect_interval=0.2
    )
    got: list[int] = []
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*")(lambda event: got.append(event.data))

    def backs() -> int:
        return len([r for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO])

    async def outage(n: int) -> None:
        seen = len(refused(caplog))
        await stoppable.stop_listening()
        # a few attempts to reconnect, each refused
        await eventually(lambda: len(refused(caplog)) >= seen + 3, timeout=20)
        if n == 1:  # another connection, refused meanwhile: its ERROR shows
            with pytest.raises(aiormq.exceptions.AMQPConnectionError):
                await aiormq.connect(url)
        await stoppable.listen_again()
        await eventually(lambda: backs() == n, timeout=20)  # n: this outage is over
        await bus.publish("jobs.run", n)
        await eventually(lambda: got.count(n) == 1, timeout=20)

    try:
        async with bus:
            await outage(1)
            await outage(2)
    finally:
        if stoppable._server is None:
            await stoppable.listen_again()
        await finishes(transport.close(), 15)
        await finishes(transport.delete_topology(), 15)
    ours = [m for name, m in loud(caplog) if name == LOGGER]
    other = [r for r in refused(caplog) if r.levelno == logging.ERROR]
    assert len(other) == 1  # the connection that is not the transport's
    shown = (CONNECT_LOGGER, other[0].getMessage())
    assert [line for line in loud(caplog) if line != shown] == [(LOGGER, m) for m in ours]
    assert len(ours) == 2
    assert all("lost the connection to RabbitMQ" in m for m in ours)
    # the transport's connection's records are still there, at DEBUG, saying why
    quiet = [r for r in refused(caplog) if r is not other[0]]
    assert len(quiet) >= 6
    assert {r.levelno for r in quiet} == {logging.DEBUG}
    assert all("(the transport logged this outage" in r.getMessage() for r in quiet)
