"""RabbitMQ: ``delete_topology()`` says why it failed, in a TransportError.

It opens a connection of its own. Before, a server that never answered gave
"cannot connect to RabbitMQ at ...: " with no reason; a refused port logged aiormq's
ERROR "error when creating transport" besides the TransportError that said it; and a
user the broker refused the deletion (no configure permission) got aiormq's bare
``ChannelAccessRefused`` with its traceback, not a TransportError. The user is the
test's own (``rabbitmqctl``), deleted after; the exchange too.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from urllib.parse import quote

import pytest

from pepperpy.event import EventBus, TransportError
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.bus.credentials import rabbitmq_user, rabbitmqctl
from tests.bus.faultproxy import finishes
from tests.conftest import unique_name

pytest.importorskip("aio_pika")

PASSWORD = "s3cret-del"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A loopback server that accepts connections and never says a word."""

    async def say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(say_nothing, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


async def test_a_server_that_never_answers_is_said_so(silent_port: int) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{silent_port}/"
    transport = RabbitMQTransport(url, connect_timeout=1.0)
    with pytest.raises(TransportError) as failed:
        await finishes(transport.delete_topology(), 30)
    assert str(failed.value) == (
        f"cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:{silent_port}/: "
        "no answer within connect_timeout (1.0s)"
    )


async def test_a_refused_port_is_one_error_not_a_log_line_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    transport = RabbitMQTransport(f"amqp://guest:guest@127.0.0.1:{closed_port()}/")
    with pytest.raises(TransportError, match="Connect call failed"):
        await finishes(transport.delete_topology(), 30)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.rabbitmq
async def test_a_deletion_the_broker_refuses_is_a_transport_error(amqp_url: str) -> None:
    exchange = unique_name("pep.delrefused")
    with rabbitmq_user(PASSWORD) as user:
        parts = amqp_url.split("@", 1)[1]
        url = f"amqp://{user}:{quote(PASSWORD)}@{parts}"
        transport = RabbitMQTransport(url, exchange=exchange)
        async with EventBus(transport=transport):
            pass  # declares the exchange
        rabbitmqctl("set_permissions", "-p", "/", user, "^$", ".*", ".*")  # configure: none
        try:
            with pytest.raises(TransportError) as failed:
                await finishes(transport.delete_topology(), 30)
        finally:
            rabbitmqctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
            await finishes(transport.delete_topology(), 30)
    message = str(failed.value)
    assert message.startswith(f"cannot delete the topology of exchange {exchange!r} at amqp://")
    assert "RabbitMQ refuses the user access (ACCESS_REFUSED" in message
    assert PASSWORD not in message
