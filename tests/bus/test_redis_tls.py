"""Redis over TLS: a handshake that fails for good fails ``start()`` at once, saying why.

redis-py raises a failed TLS handshake as the ``ConnectionError`` of a server that is
down, and the transport retried it for the whole ``connect_timeout`` (60 s here, past
the 20-s bound of :func:`start_failure`) before reporting Redis "unreachable": a
certificate it does not trust, one for another host, a client certificate the server
requires, a port that answers without TLS. Each now fails at once naming the cause and
what to change. Against a redis-server of the test's own with ``--tls-port`` (a
certificate made for 127.0.0.1 only, which is also its CA and the client's certificate),
stopped afterwards; the right settings carry events over it.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import Event, EventBus
from pepperpy.event.transports.redis import RedisTransport
from tests.bus.starting import greeting_server, start_failure
from tests.helpers import eventually
from tests.tls_certs import self_signed_certificate


class TlsRedis:
    """A redis-server of the test's own, on a TLS port only, requiring client certificates."""

    def __init__(self, directory: Path) -> None:
        self.cert, self.key = self_signed_certificate(directory, "pepperpy test redis")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        command = ["redis-server", "--port", "0", "--tls-port", str(self.port)]
        command += ["--bind", "127.0.0.1", "--tls-cert-file", str(self.cert)]
        command += ["--tls-key-file", str(self.key), "--tls-ca-cert-file", str(self.cert)]
        command += ["--tls-auth-clients", "yes", "--save", "", "--appendonly", "no"]
        command += ["--dir", str(directory)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                pytest.skip("this redis-server cannot serve TLS (built without it)")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "private TLS redis-server did not start"
                time.sleep(0.05)

    def url(self, host: str = "127.0.0.1", **query: Any) -> str:
        text = "&".join(f"{name}={value}" for name, value in query.items())
        return f"rediss://{host}:{self.port}/0" + (f"?{text}" if text else "")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = TlsRedis(tmp_path_factory.mktemp("tls-redis"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


async def test_a_certificate_the_client_does_not_trust_fails_at_once(tls_redis: TlsRedis) -> None:
    message = await start_failure(RedisTransport(tls_redis.url(), connect_timeout=60))
    assert message == (
        f"the TLS handshake with Redis at 127.0.0.1:{tls_redis.port} failed while connecting: "
        "the server's certificate is not trusted (self-signed certificate): give the CA that "
        "signed it as ssl_ca_certs (a file) or ssl_ca_data (PEM text) in the transport's URL"
    )


async def test_a_certificate_for_another_host_fails_at_once(tls_redis: TlsRedis) -> None:
    # localhost is 127.0.0.1, but the certificate holds the address only, not the name
    url = tls_redis.url("localhost", ssl_ca_certs=tls_redis.cert)
    message = await start_failure(RedisTransport(url, connect_timeout=60))
    assert message == (
        f"the TLS handshake with Redis at localhost:{tls_redis.port} failed while connecting: "
        "the server's certificate is not for this host (Hostname mismatch, certificate is "
        "not valid for 'localhost'): connect by a name the certificate holds, or check the "
        "host in the transport's URL"
    )


async def test_a_client_certificate_the_server_requires_fails_at_once(
    tls_redis: TlsRedis,
) -> None:
    url = tls_redis.url(ssl_ca_certs=tls_redis.cert)
    message = await start_failure(RedisTransport(url, connect_timeout=60))
    assert message == (
        f"the TLS handshake with Redis at 127.0.0.1:{tls_redis.port} failed while connecting: "
        "tlsv13 alert certificate required; the server requires a client certificate: give "
        "ssl_certfile and ssl_keyfile in the transport's URL"
    )


@pytest.fixture
async def plain_text_server() -> AsyncIterator[int]:
    """A loopback server that greets every connection in plain text; yields its port."""
    async with greeting_server(b"-ERR this port has no TLS\r\n") as port:
        yield port


async def test_a_port_without_tls_fails_at_once(plain_text_server: int) -> None:
    port = plain_text_server
    message = await start_failure(
        RedisTransport(f"rediss://127.0.0.1:{port}/0", connect_timeout=60)
    )
    assert message == (
        f"the TLS handshake with Redis at 127.0.0.1:{port} failed while connecting: wrong "
        "version number; the server does not answer in TLS at this port: use redis:// for a "
        "server without TLS, or the server's tls-port"
    )


async def test_a_redis_url_at_a_tls_port_fails_at_once_saying_to_use_rediss(
    tls_redis: TlsRedis,
) -> None:
    """A TLS port resets a plain-text connection without a reply (as a server going away
    does): it was retried for connect_timeout, then reported as Redis unreachable."""
    url = f"redis://127.0.0.1:{tls_redis.port}/0"
    message = await start_failure(RedisTransport(url, connect_timeout=60))
    assert message == (
        f"the server at 127.0.0.1:{tls_redis.port} answers in TLS at this port, and a "
        "redis:// URL speaks plain text: use a rediss:// URL for it "
        f"(rediss://127.0.0.1:{tls_redis.port}, with ssl_ca_certs naming the CA of its "
        "certificate if it is not a public one)"
    )


@pytest.fixture
async def resetting_server() -> AsyncIterator[int]:
    """A loopback server that resets every connection once it has read from it, as a
    TLS port does with plain text, but speaks no TLS either; yields its port."""

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    server = await asyncio.start_server(reset, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_a_reset_by_a_server_without_tls_is_still_retried(resetting_server: int) -> None:
    """The probe finds no TLS there: an outage as before, retried until connect_timeout."""
    port = resetting_server
    message = await start_failure(
        RedisTransport(f"redis://127.0.0.1:{port}/0", connect_timeout=1.5)
    )
    assert message.startswith(
        f"Redis at redis://127.0.0.1:{port}/0 unreachable while connecting (gave up after 1.5s)"
    )
    assert "TLS" not in message


async def test_the_right_certificates_carry_events(tls_redis: TlsRedis) -> None:
    """The server above, reached as its certificate says (its keys go with it)."""
    url = tls_redis.url(
        ssl_ca_certs=tls_redis.cert, ssl_certfile=tls_redis.cert, ssl_keyfile=tls_redis.key
    )
    bus = EventBus(transport=RedisTransport(url, namespace="tls", partitions=2))
    got: list[Event] = []
    bus.subscribe("tls.*", group="g")(got.append)
    async with asyncio.timeout(30), bus:
        await bus.publish("tls.sent", {"n": 1})
        await eventually(lambda: len(got) == 1)
    assert got[0].data == {"n": 1}
