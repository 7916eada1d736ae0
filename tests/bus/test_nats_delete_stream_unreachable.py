"""NATS: ``delete_stream()`` / ``delete_topology()`` against a server that is not there.

They connect briefly on a connection of their own. That connection used nats-py's
defaults: against a closed port it tried for about two minutes (60 attempts, 2 s
apart, each logged by nats-py at ERROR with a full traceback, "nats: encountered
error"), and a server that never answered made a TransportError whose reason was empty
("cannot connect to NATS at nats://...: "). Now it gives up within ``connect_timeout``
with one TransportError saying why. Nothing here needs a NATS server: the "servers" are
a closed loopback port and a loopback asyncio server of the test that never answers.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import pytest

from pepperpy.event import TransportError
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.faultproxy import finishes

pytest.importorskip("nats")


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


async def test_a_closed_port_fails_within_connect_timeout_and_logs_no_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"nats://127.0.0.1:{closed_port()}"
    transport = NatsTransport(url, connect_timeout=3.0)
    for delete in (transport.delete_stream, transport.delete_topology):
        with pytest.raises(TransportError) as failed:
            await finishes(delete(), 30)  # a liveness bound: it was about 2 minutes
        assert str(failed.value).startswith(
            f"cannot connect to NATS at {url} (to delete stream 'PEPPERPY_EVENTS') within 3.0s: "
        )
        assert "Connect call failed" in str(failed.value)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_server_that_never_answers_is_said_so(silent_port: int) -> None:
    url = f"nats://127.0.0.1:{silent_port}"
    with pytest.raises(TransportError) as failed:
        await finishes(NatsTransport(url, connect_timeout=1.0).delete_stream(), 30)
    assert str(failed.value) == (
        f"cannot connect to NATS at {url} (to delete stream 'PEPPERPY_EVENTS') within 1.0s: "
        "the server did not answer in time"
    )
