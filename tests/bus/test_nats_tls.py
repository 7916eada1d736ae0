"""NATS over TLS: a handshake that fails for good fails ``start()`` at once, saying why.

A certificate the client does not trust, or one for another host name, does not get
better by trying again, but ``start()`` retried it for the whole ``connect_timeout`` as
if the server were unreachable. It now raises :class:`TransportError` at the first
attempt, naming the cause. A certificate the client trusts still connects (the same
server and test setup, so the failures are the certificate's).

Each test runs a nats-server of its own with TLS on a free loopback port, its
certificates made by the test (``cryptography``), trusted through ``SSL_CERT_FILE``
(read by the default TLS context nats-py makes for ``tls://``).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pepperpy.event import EventBus, TransportError
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.credentials import backing_off
from tests.bus.faultproxy import FaultProxy, finishes
from tests.bus.test_nats import NATS_SERVER, PrivateNats
from tests.helpers import eventually

pytestmark = pytest.mark.nats

#: connect_timeout of the tests: a failure for good must come well before it
CONNECT_TIMEOUT = 20.0


def _certificate(directory: Path, name: str, *, ca: bool, hosts: list[str], signer: object) -> None:
    """Write ``<name>.pem`` (certificate) and ``<name>.key``; ``signer``: the (key,
    certificate) pair that signs it, or None for a self-signed one."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"pepperpy test {name}")])
    issuer_key, issuer = (key, subject) if signer is None else signer  # type: ignore[misc]
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer if signer is None else issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    else:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    certificate = builder.sign(issuer_key, hashes.SHA256())
    (directory / f"{name}.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _signer(directory: Path, name: str) -> tuple[object, object]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key((directory / f"{name}.key").read_bytes(), None)
    return key, x509.load_pem_x509_certificate((directory / f"{name}.pem").read_bytes())


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    """A CA, a server certificate it signed for 127.0.0.1, one it signed for another
    host name, and a self-signed one for 127.0.0.1."""
    pytest.importorskip("cryptography")
    _certificate(tmp_path, "ca", ca=True, hosts=[], signer=None)
    ca = _signer(tmp_path, "ca")
    _certificate(tmp_path, "loopback", ca=False, hosts=["127.0.0.1"], signer=ca)
    _certificate(tmp_path, "elsewhere", ca=False, hosts=["nats.example.org"], signer=ca)
    _certificate(tmp_path, "selfsigned", ca=False, hosts=["127.0.0.1"], signer=None)
    return tmp_path


class TlsNats(PrivateNats):
    """A private nats-server serving ``certificate`` (a name in ``certificates``)."""

    def __init__(self, certificates: Path, certificate: str) -> None:
        super().__init__(
            certificates / f"store-{certificate}",
            "--tls",
            "--tlscert",
            str(certificates / f"{certificate}.pem"),
            "--tlskey",
            str(certificates / f"{certificate}.key"),
        )
        self.url = f"tls://127.0.0.1:{self.port}"


@pytest.fixture
def tls_server(certificates: Path, request: pytest.FixtureRequest) -> Iterator[TlsNats]:
    """A private TLS server with the certificate named by ``request.param``."""
    if not Path(NATS_SERVER).exists():
        pytest.skip("nats-server is not installed")
    server = TlsNats(certificates, request.param)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def trust_the_ca(certificates: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client trusts the test's CA (and nothing else)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates / "ca.pem"))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


@pytest.mark.usefixtures("trust_the_ca")
@pytest.mark.parametrize(
    ("tls_server", "cause"),
    [
        ("selfsigned", "self-signed certificate"),
        ("elsewhere", "mismatch, certificate is not valid for '127.0.0.1'"),
    ],
    indirect=["tls_server"],
)
async def test_a_tls_handshake_that_fails_for_good_fails_start_at_once(
    tls_server: TlsNats, cause: str
) -> None:
    bus = EventBus(transport=NatsTransport(tls_server.url, connect_timeout=CONNECT_TIMEOUT))
    began = time.monotonic()
    with pytest.raises(TransportError) as refused:
        await finishes(bus.start(), CONNECT_TIMEOUT + 10)
    took = time.monotonic() - began
    message = str(refused.value)
    assert f"cannot connect to NATS at {tls_server.url}" in message
    assert "TLS handshake" in message
    assert "the client refuses the server's certificate" in message
    assert cause in message
    assert took < CONNECT_TIMEOUT / 2, f"retried for {took:.1f}s"
    await bus.close()
    began = time.monotonic()
    with pytest.raises(TransportError) as deleting:  # connects on its own
        await finishes(bus.transport.delete_topology(), CONNECT_TIMEOUT + 10)
    assert time.monotonic() - began < CONNECT_TIMEOUT / 2
    assert "TLS handshake" in str(deleting.value)
    assert cause in str(deleting.value)


@pytest.mark.usefixtures("trust_the_ca")
@pytest.mark.parametrize("tls_server", ["loopback"], indirect=True)
async def test_a_trusted_certificate_connects(tls_server: TlsNats) -> None:
    bus = EventBus(transport=NatsTransport(tls_server.url, connect_timeout=CONNECT_TIMEOUT))
    got: list[object] = []
    bus.subscribe("orders.*")(lambda event: got.append(event.data))
    async with bus:
        await bus.publish("orders.placed", 1)
        await eventually(lambda: got == [1])


async def test_a_tls_url_of_a_server_without_tls_is_refused(tmp_path: Path) -> None:
    """nats-py upgrades only when the server's greeting requires TLS: a ``tls://`` URL
    of a server without it connected in plain text, the URL's credentials and every
    event unencrypted. ``start()`` (and ``delete_topology()``, which connects on its
    own) now refuse it before sending anything, at once."""
    if not Path(NATS_SERVER).exists():
        pytest.skip("nats-server is not installed")
    server = PrivateNats(tmp_path / "store")
    server.start()
    try:
        url = f"tls://127.0.0.1:{server.port}"
        transport = NatsTransport(url, connect_timeout=CONNECT_TIMEOUT)
        began = time.monotonic()
        with pytest.raises(TransportError) as refused:
            await finishes(transport.start(), CONNECT_TIMEOUT + 10)
        assert time.monotonic() - began < CONNECT_TIMEOUT / 2
        assert f"cannot connect to NATS at {url}: " in str(refused.value)
        assert "does not require TLS" in str(refused.value)
        await transport.close()
        with pytest.raises(TransportError) as deleting:
            await finishes(transport.delete_topology(), CONNECT_TIMEOUT + 10)
        assert "does not require TLS" in str(deleting.value)
    finally:
        server.kill()


@pytest.mark.usefixtures("trust_the_ca")
async def test_a_cluster_with_one_refused_certificate_connects_to_the_other(
    certificates: Path,
) -> None:
    """nats-py closes a failed attempt's connection before it tries the next server,
    and waited for the socket of a failed TLS upgrade, which never reports its close:
    ``start()`` failed at ``connect_timeout`` whenever it tried the refused server
    first (nats-py picks the order at random), though the other one was fine. Each of
    a few starts now connects, and at once."""
    if not Path(NATS_SERVER).exists():
        pytest.skip("nats-server is not installed")
    refused, trusted = TlsNats(certificates, "selfsigned"), TlsNats(certificates, "loopback")
    refused.start()
    try:
        trusted.start()
        url = f"{refused.url},{trusted.url}"
        for _ in range(5):  # each start picks its order anew
            transport = NatsTransport(url, connect_timeout=CONNECT_TIMEOUT)
            began = time.monotonic()
            try:
                await finishes(transport.start(), CONNECT_TIMEOUT + 10)
            finally:
                await transport.close()
            assert time.monotonic() - began < CONNECT_TIMEOUT / 2
    finally:
        refused.kill()
        trusted.kill()


@pytest.mark.usefixtures("trust_the_ca")
async def test_a_server_back_with_a_refused_certificate_is_one_error_and_backs_off(
    certificates: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server came back with a certificate the client refuses (a rotation gone
    wrong): each reconnection failed the same way, every ``reconnect_wait``, under a
    warning that said "cannot reconnect yet" once a minute. Now one ERROR names the
    cause and the attempts back off (as for refused credentials); health() says why;
    once the certificate is right again, the transport reconnects."""
    caplog.set_level(logging.INFO)
    if not Path(NATS_SERVER).exists():
        pytest.skip("nats-server is not installed")
    servers = [TlsNats(certificates, "loopback")]
    servers[0].start()
    try:
        async with FaultProxy(servers[0].port) as proxy:  # counts the attempts
            transport = NatsTransport(
                f"tls://127.0.0.1:{proxy.port}", reconnect_wait=0.2, connect_timeout=5
            )
            bus = EventBus(transport=transport)
            async with bus:
                for certificate in ("selfsigned", "loopback"):
                    servers[-1].kill()
                    server = TlsNats(certificates, certificate)
                    server.port = servers[0].port  # where the proxy forwards to
                    servers.append(server)
                    server.start()
                    if certificate == "loopback":
                        break
                    await eventually(lambda: bool(_errors(caplog)), timeout=20)
                    refused_at, attempts = time.monotonic(), proxy.accepted
                    await backing_off(proxy, refused_at, attempts)
                    health = bus.health()
                    assert not health.ready
                    # a handshake no retry mends, not a network outage (as on Redis)
                    assert health.outage_reason == "tls refused"
                    assert health.outage_message is not None
                    assert "the client refuses the server's certificate" in health.outage_message
                await eventually(lambda: bus.health().ready, timeout=30)
    finally:
        for server in servers:
            server.kill()
    [error] = _errors(caplog)
    message = error.getMessage()
    assert f"cannot reconnect to NATS at tls://127.0.0.1:{proxy.port}: the TLS handshake" in message
    assert "self-signed certificate" in message
    assert "backing off up to 15s" in message


def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "pepperpy.event.transports.nats" and r.levelno >= logging.ERROR
    ]
