"""RabbitMQ over TLS: a handshake that fails for good fails ``start()`` at once, saying why.

aiormq raises a failed TLS handshake as the ``AMQPConnectionError`` (an ``OSError``) of
a broker that cannot be reached, and ``start()`` tried it again every
``reconnect_interval`` for the whole ``connect_timeout`` before reporting it: a broker
certificate this host does not trust, or one for another host name, which no retry
mends. Each now fails at the first try, naming the cause and what to change. Against a
TLS server of the test's own on loopback (a self-signed certificate for 127.0.0.1
only), which counts the connections it accepts and is closed afterwards.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from pepperpy.event import TransportError
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.tls_certs import self_signed_certificate

pytest.importorskip("aio_pika")


class TlsServer:
    """A TLS server on 127.0.0.1 that speaks nothing after the handshake; counts the
    connections it accepted."""

    def __init__(self, cert: Path, port: int, server: asyncio.Server) -> None:
        self.cert, self.port, self.server = cert, port, server
        self.accepted = 0


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[TlsServer]:
    cert, key = self_signed_certificate(tmp_path, "pepperpy test rabbitmq")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handlers: set[asyncio.Task[None]] = set()
    made: list[TlsServer] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        made[0].accepted += 1
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await writer.start_tls(context)
            await reader.read()  # until the client goes
        except (OSError, ssl.SSLError):
            pass  # the client refused the handshake
        finally:
            writer.close()
            handlers.discard(task)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    made.append(TlsServer(cert, port, server))
    try:
        yield made[0]
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


@pytest.mark.parametrize(
    ("host", "trusted", "said", "advice"),
    [
        ("127.0.0.1", False, "certificate verify failed", "cafile"),
        ("localhost", True, "certificate is not valid for 'localhost'", "a name it is for"),
    ],
    ids=["untrusted", "other-host"],
)
async def test_a_tls_handshake_that_fails_for_good_fails_start_at_once(
    tls_server: TlsServer, host: str, trusted: bool, said: str, advice: str
) -> None:
    query = f"?cafile={tls_server.cert}" if trusted else ""
    url = f"amqps://guest:guest@{host}:{tls_server.port}/{query}"
    transport = RabbitMQTransport(url, connect_timeout=30, reconnect_interval=0.1)
    try:
        async with asyncio.timeout(60):
            with pytest.raises(TransportError) as caught:
                await transport.start()
    finally:
        await transport.close()
    message = str(caught.value)
    assert "TLS handshake" in message
    assert said in message
    assert advice in message
    assert "tried" not in message  # one try, not one per reconnect_interval
    assert tls_server.accepted == 1


async def test_amqps_to_a_port_without_tls_fails_start_at_once(amqp_url: str) -> None:
    parts = urlsplit(amqp_url)  # the broker's plain AMQP port, which answers no TLS
    url = urlunsplit(("amqps", parts.netloc, parts.path, "", ""))
    transport = RabbitMQTransport(url, connect_timeout=30, reconnect_interval=0.1)
    try:
        async with asyncio.timeout(60):
            with pytest.raises(TransportError) as caught:
                await transport.start()
    finally:
        await transport.close()
    message = str(caught.value)
    assert "TLS handshake failed" in message
    assert "the port does not take TLS" in message
    assert "tried" not in message
