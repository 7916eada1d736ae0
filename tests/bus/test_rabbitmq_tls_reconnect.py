"""RabbitMQ over TLS: reconnections that fail their TLS handshake for good are logged once.

A running transport whose broker came back with a certificate it does not trust (a
certificate rotated to one of another CA, a proxy in front of the broker with its own)
retried every ``reconnect_interval`` (1 s by default) for as long as it lasted, and each
attempt was an ERROR of aiormq's (``error when creating transport: ... CERTIFICATE_VERIFY_
FAILED ...``): 3,600 an hour. Now it is handled like a broker refusing the credentials
(``_refusals``): one ERROR of the transport's naming the cause and what to change, the
driver's records of the attempts DEBUG, the attempts backing off up to 15 s, and the
usual INFO once the connection is back. Through a TLS proxy of the test's own on
loopback in front of the real broker, whose certificate the test swaps; closed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.helpers import eventually
from tests.tls_certs import self_signed_certificate

pytestmark = pytest.mark.rabbitmq


class TlsProxy:
    """TLS on 127.0.0.1, forwarded to the broker's plain AMQP port; ``use`` picks the
    certificate it shows, ``cut`` drops every connection."""

    def __init__(self, contexts: dict[str, ssl.SSLContext]) -> None:
        self.contexts = contexts
        self.current = "trusted"
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.writers.add(writer)
        try:
            await writer.start_tls(self.contexts[self.current])
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 5672)
            self.writers.add(up_writer)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, ssl.SSLError):
            pass  # the client refused the handshake, or a side went
        finally:
            writer.close()
            self.tasks.discard(task)

    def cut(self) -> None:
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def tls_proxy(tmp_path: Path, amqp_url: str) -> AsyncIterator[tuple[TlsProxy, Path]]:
    contexts: dict[str, ssl.SSLContext] = {}
    cafile = Path()
    for name in ("trusted", "other"):
        directory = tmp_path / name
        directory.mkdir()
        cert, key = self_signed_certificate(directory, "pepperpy test rabbitmq")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        contexts[name] = context
        if name == "trusted":
            cafile = cert
    proxy = TlsProxy(contexts)
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
    proxy.port = int(server.sockets[0].getsockname()[1])
    try:
        yield proxy, cafile
    finally:
        server.close()
        proxy.cut()
        for task in list(proxy.tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*proxy.tasks, return_exceptions=True)
        await server.wait_closed()


async def test_reconnections_failing_tls_for_good_log_one_error_and_back_off(
    tls_proxy: tuple[TlsProxy, Path], caplog: pytest.LogCaptureFixture
) -> None:
    proxy, cafile = tls_proxy
    url = f"amqps://guest:guest@127.0.0.1:{proxy.port}/?cafile={cafile}"
    transport = RabbitMQTransport(url, reconnect_interval=0.2, connect_timeout=10)
    caplog.set_level(logging.INFO)
    try:
        async with asyncio.timeout(60):
            await transport.start()
            proxy.current = "other"  # the broker comes back with a certificate not trusted
            proxy.cut()
            refusals = transport._outages.refusals
            await eventually(lambda: refusals.attempts >= 3, timeout=20)
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1, [r.getMessage() for r in errors]
            said = errors[0].getMessage()
            assert errors[0].name == "pepperpy.event.transports.rabbitmq"
            assert "cannot be reconnected to over TLS" in said
            assert "certificate is not trusted" in said
            assert "guest:guest" not in said
            reason = transport.outage_reason()
            assert reason is not None
            assert reason[0] == "tls refused"  # no network outage (as on Redis and NATS)
            assert "not trusted" in reason[1]
            # backing off: 0.2 s apart would have made far more attempts by now
            assert transport._connection is not None
            assert transport._connection.reconnect_interval > 0.2  # type: ignore[attr-defined]
            proxy.current = "trusted"
            await eventually(lambda: transport.outage_reason() is None, timeout=30)
            assert any("is back after" in r.getMessage() for r in caplog.records)
            assert [r for r in caplog.records if r.levelno >= logging.ERROR] == errors
    finally:
        await transport.close()
