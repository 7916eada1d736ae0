"""Redis over TLS: a running transport whose server's certificate stops being trusted says so.

After a successful start, the server's certificate is replaced by one the client does not
trust (a renewal signed by another CA, a proxy put in front of it). The consumer loops
keep retrying, as they should (the certificate can be fixed on the server, without
restarting this process), but health's ``outage_reason`` said ``"unreachable"`` and the
log a WARNING "unreachable" with the TLS error inside it. Now ``outage_reason`` is ``"tls
refused"``, its message names the cause and what to change, and an ERROR is logged once
for that cause, however many loops meet it and however often; once the trusted
certificate is back, the outage ends and events flow again.

Against a redis-server of the test's own with ``--tls-port`` (see test_redis_tls.py), whose
certificate is swapped at run time with ``CONFIG SET tls-cert-file`` and whose clients are
then disconnected (``CLIENT KILL TYPE normal``), so that every loop handshakes again.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pepperpy.event import Event, EventBus
from pepperpy.event.transports.redis import RedisTransport
from tests.bus.test_redis_tls import TlsRedis
from tests.helpers import eventually
from tests.tls_certs import self_signed_certificate

LOGGER = "pepperpy.event.transports.redis"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = TlsRedis(tmp_path)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


async def _swap_certificate(server: TlsRedis, cert: Path, key: Path) -> None:
    """Serve ``cert`` from now on, and cut every client so that it handshakes again."""
    import redis.asyncio

    admin = redis.asyncio.Redis(
        host="127.0.0.1",
        port=server.port,
        ssl=True,
        ssl_cert_reqs="none",  # whichever certificate the server has
        ssl_certfile=str(server.cert),
        ssl_keyfile=str(server.key),
    )
    try:
        # both at once (Redis 7): either alone does not match the other, and is refused
        await admin.execute_command(
            "CONFIG", "SET", "tls-cert-file", str(cert), "tls-key-file", str(key)
        )
        await admin.execute_command("CLIENT", "KILL", "TYPE", "normal")  # not this one
    finally:
        await admin.aclose()


def _tls_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and "TLS" in r.getMessage()]


async def test_a_certificate_no_longer_trusted_is_reported_as_tls_until_fixed(
    tls_redis: TlsRedis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    untrusted = tmp_path / "untrusted"
    untrusted.mkdir()
    other_cert, other_key = self_signed_certificate(untrusted, "pepperpy test redis")
    url = tls_redis.url(
        ssl_ca_certs=tls_redis.cert, ssl_certfile=tls_redis.cert, ssl_keyfile=tls_redis.key
    )
    transport = RedisTransport(
        url, namespace=f"tls-{uuid.uuid4().hex[:8]}", partitions=2, max_backoff=0.2
    )
    bus = EventBus(transport=transport)
    grouped: list[Event] = []
    everyone: list[Event] = []
    bus.subscribe("tls.*", group="g")(grouped.append)
    bus.subscribe("tls.*")(everyone.append)
    async with asyncio.timeout(90), bus:
        await bus.publish("tls.before", {"n": 1})
        await eventually(lambda: len(grouped) == 1 and len(everyone) == 1)

        await _swap_certificate(tls_redis, other_cert, other_key)
        await eventually(lambda: bus.health().outage_reason == "tls refused", timeout=20)
        health = bus.health()
        assert not health.ready
        assert health.outage_message == (
            f"the TLS handshake with Redis at 127.0.0.1:{tls_redis.port} fails: the server's "
            "certificate is not trusted (self-signed certificate): give the CA that signed "
            "it as ssl_ca_certs (a file) or ssl_ca_data (PEM text) in the transport's URL"
        )

        # the loops keep trying (each backs off up to 0.2 s): many failures, one ERROR
        def failures() -> int:
            return sum(
                r.levelno == logging.DEBUG and "TLS handshake" in r.getMessage()
                for r in caplog.records
            )

        await eventually(lambda: failures() >= 10, timeout=20)
        [error] = _tls_errors(caplog)
        message = error.getMessage()
        assert message.startswith(
            f"the TLS handshake with Redis at 127.0.0.1:{tls_redis.port} fails (met by "
        )
        assert "the server's certificate is not trusted (self-signed certificate)" in message
        assert "keep trying" in message
        # the clients' cut itself may be a WARNING "unreachable"; the handshakes are not
        assert not [
            r
            for r in caplog.records
            if r.levelno == logging.WARNING and "CERTIFICATE_VERIFY_FAILED" in r.getMessage()
        ]

        # fixed on the server: the same transport reaches it again, and events flow
        await _swap_certificate(tls_redis, tls_redis.cert, tls_redis.key)
        await eventually(lambda: bus.health().ready, timeout=20)
        assert bus.health().outage_reason is None
        await bus.publish("tls.after", {"n": 2})
        await eventually(lambda: len(grouped) == 2 and len(everyone) == 2, timeout=20)
    assert [e.data for e in grouped] == [{"n": 1}, {"n": 2}]
    assert len(_tls_errors(caplog)) == 1
