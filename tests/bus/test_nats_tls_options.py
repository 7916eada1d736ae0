"""NATS TLS settings: a private CA, a client certificate (mutual TLS), a host name, or an
``ssl.SSLContext`` of the caller's.

The transport could only use Python's default TLS context: a private CA had to be set
process-wide (``SSL_CERT_FILE``), and a server requiring a client certificate could not
be used at all. Now ``tls_ca``, ``tls_cert``, ``tls_key`` and ``tls_hostname`` (URL
options and keywords) and ``tls=`` (a context) say it, checked when the transport is
made. Each test runs nats-servers of its own with TLS on free loopback ports, their
certificates made by the test; ``SSL_CERT_FILE`` names an unrelated certificate, so only
the settings given make the server's trusted.
"""

from __future__ import annotations

import os
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import ConfigurationError, EventBus, TransportError
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.faultproxy import finishes
from tests.bus.test_nats import NATS_SERVER, PrivateNats
from tests.bus.test_nats_tls import TlsNats, _certificate, _signer
from tests.helpers import eventually

pytestmark = pytest.mark.nats

CONNECT_TIMEOUT = 10.0


@pytest.fixture
def pki(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A CA, a server certificate for 127.0.0.1 and one for nats.example.org, a client
    certificate it signed, and one signed by another CA; the default context trusts
    neither CA."""
    pytest.importorskip("cryptography")
    if not Path(NATS_SERVER).exists():
        pytest.skip("nats-server is not installed")
    _certificate(tmp_path, "ca", ca=True, hosts=[], signer=None)
    _certificate(tmp_path, "otherca", ca=True, hosts=[], signer=None)
    ca = _signer(tmp_path, "ca")
    _certificate(tmp_path, "loopback", ca=False, hosts=["127.0.0.1"], signer=ca)
    _certificate(tmp_path, "elsewhere", ca=False, hosts=["nats.example.org"], signer=ca)
    _certificate(tmp_path, "client", ca=False, hosts=["client"], signer=ca)
    other = _signer(tmp_path, "otherca")
    _certificate(tmp_path, "stranger", ca=False, hosts=["client"], signer=other)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "otherca.pem"))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return tmp_path


class MutualTlsNats(PrivateNats):
    """A private nats-server requiring a client certificate signed by ``ca.pem``."""

    def __init__(self, pki: Path) -> None:
        super().__init__(
            pki / "store-mutual",
            "--tlsverify",
            "--tlscert",
            str(pki / "loopback.pem"),
            "--tlskey",
            str(pki / "loopback.key"),
            "--tlscacert",
            str(pki / "ca.pem"),
        )
        self.url = f"tls://127.0.0.1:{self.port}"


async def _flows(transport: NatsTransport) -> None:
    """An event published on ``transport`` reaches its own subscriber."""
    bus = EventBus(transport=transport)
    got: list[object] = []
    bus.subscribe("orders.*")(lambda event: got.append(event.data))
    try:
        async with bus:
            await bus.publish("orders.placed", 7)
            await eventually(lambda: got == [7])
    finally:
        await transport.delete_topology()


async def test_a_private_ca_file_in_the_url_or_as_keyword_connects(pki: Path) -> None:
    server = TlsNats(pki, "loopback")
    server.start()
    try:
        with pytest.raises(TransportError, match="the client refuses the server's certificate"):
            await finishes(NatsTransport(server.url).start(), CONNECT_TIMEOUT)
        ca = pki / "ca.pem"
        await _flows(NatsTransport(f"{server.url}?tls_ca={ca}&stream=TLSCA&prefix=tlsca"))
        await _flows(NatsTransport(server.url, tls_ca=str(ca), stream="TLSCA", prefix="tlsca"))
    finally:
        server.kill()


async def test_tls_hostname_names_the_certificate_s_host(pki: Path) -> None:
    server = TlsNats(pki, "elsewhere")  # for nats.example.org, served at 127.0.0.1
    server.start()
    try:
        ca = str(pki / "ca.pem")
        with pytest.raises(TransportError, match="not valid for '127.0.0.1'"):
            await finishes(NatsTransport(server.url, tls_ca=ca).start(), CONNECT_TIMEOUT)
        await _flows(
            NatsTransport(server.url, tls_ca=ca, tls_hostname="nats.example.org", stream="TLSH")
        )
    finally:
        server.kill()


async def test_mutual_tls_with_a_client_certificate(pki: Path) -> None:
    server = MutualTlsNats(pki)
    server.start()
    try:
        query = (
            f"tls_ca={pki / 'ca.pem'}&tls_cert={pki / 'client.pem'}&tls_key={pki / 'client.key'}"
        )
        await _flows(NatsTransport(f"{server.url}?{query}&stream=MTLS", connect_timeout=5))
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        context.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
        await _flows(NatsTransport(server.url, tls=context, stream="MTLS", connect_timeout=5))
        for refused in (
            NatsTransport(server.url, tls_ca=str(pki / "ca.pem"), connect_timeout=5),
            NatsTransport(
                server.url,
                tls_ca=str(pki / "ca.pem"),
                tls_cert=str(pki / "stranger.pem"),
                tls_key=str(pki / "stranger.key"),
                connect_timeout=5,
            ),
        ):
            began = time.monotonic()
            with pytest.raises(TransportError) as caught:
                await finishes(refused.start(), 15)
            took = time.monotonic() - began
            message = str(caught.value)
            assert f"cannot connect to NATS at {server.url}" in message
            assert "the TLS handshake failed: the server refused it" in message
            assert "client certificate (give its files as tls_cert and tls_key)" in message
            assert took < 8, f"took {took:.1f}s"
            await refused.close()
    finally:
        server.kill()


async def test_tls_settings_refuse_a_server_without_tls(pki: Path, tmp_path: Path) -> None:
    """nats-py upgrades only when the server asks: ``nats://`` with a CA given would
    have connected in plain text to a server without TLS."""
    server = PrivateNats(tmp_path / "plain")
    server.start()
    try:
        transport = NatsTransport(server.url, tls_ca=str(pki / "ca.pem"), connect_timeout=5)
        with pytest.raises(TransportError, match="does not require TLS") as caught:
            await finishes(transport.start(), 15)
        assert "TLS settings (tls, tls_ca, tls_cert, tls_key or tls_hostname)" in str(caught.value)
        await transport.close()
        with pytest.raises(TransportError, match="does not require TLS"):
            await finishes(transport.delete_topology(), 15)
    finally:
        server.kill()


def test_a_missing_or_unreadable_file_names_the_option_and_path(pki: Path) -> None:
    missing = pki / "nowhere.pem"
    for option in ("tls_ca", "tls_cert"):
        with pytest.raises(ConfigurationError) as caught:
            NatsTransport(f"tls://127.0.0.1:4222?{option}={missing}")
        assert f"{option}: cannot read {str(missing)!r}" in str(caught.value)
    with pytest.raises(ConfigurationError, match=f"tls_key: cannot read {str(missing)!r}"):
        NatsTransport(tls_cert=str(pki / "client.pem"), tls_key=str(missing))
    with pytest.raises(ConfigurationError, match=f"tls_ca: cannot read {str(pki)!r}"):
        NatsTransport(tls_ca=str(pki))  # a directory
    if os.geteuid() != 0:  # root reads any file
        locked = pki / "locked.key"
        locked.write_bytes((pki / "client.key").read_bytes())
        locked.chmod(0)
        with pytest.raises(ConfigurationError, match="tls_key: cannot read .*Permission denied"):
            NatsTransport(tls_cert=str(pki / "client.pem"), tls_key=str(locked))


def test_a_file_that_is_no_certificate_or_key_is_refused_without_its_contents(pki: Path) -> None:
    secret = "SECRET-KEY-MATERIAL-4f2a"
    bogus = pki / "bogus.pem"
    bogus.write_text(f"-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"tls_ca": str(bogus)}, "tls_ca"),
        ({"tls_cert": str(pki / "client.pem"), "tls_key": str(bogus)}, "tls_cert"),
        ({"tls_cert": str(pki / "client.pem"), "tls_key": str(pki / "stranger.key")}, "tls_key"),
        ({"tls_cert": str(pki / "client.pem")}, "tls_key is needed"),  # no key in it
    ]
    for keywords, named in cases:
        with pytest.raises(ConfigurationError) as caught:
            NatsTransport(**keywords)
        message = str(caught.value)
        assert named in message, message
        assert secret not in message
        assert "BEGIN" not in message


def test_an_encrypted_key_is_refused_without_a_prompt(pki: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key((pki / "client.key").read_bytes(), None)
    encrypted = pki / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"hunter2"),
        )
    )
    with pytest.raises(ConfigurationError, match="tls_key is encrypted"):
        NatsTransport(tls_cert=str(pki / "client.pem"), tls_key=str(encrypted))


def test_bad_combinations_and_types() -> None:
    with pytest.raises(TypeError, match="tls must be an ssl.SSLContext, got str"):
        NatsTransport(tls="/etc/ssl/ca.pem")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tls_ca must be a str, got int"):
        NatsTransport(tls_ca=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="tls_hostname is empty"):
        NatsTransport(tls_hostname=" ")
    with pytest.raises(ConfigurationError, match="tls_key was given without tls_cert"):
        NatsTransport("nats://127.0.0.1:4222?tls_key=/tmp/k.pem")
    context = ssl.create_default_context()
    with pytest.raises(ConfigurationError, match="tls .* and tls_ca were both given"):
        NatsTransport(tls=context, tls_ca="/tmp/ca.pem")
    with pytest.raises(ConfigurationError, match="tls_cafile"):
        NatsTransport("nats://127.0.0.1:4222?tls_cafile=/tmp/ca.pem")
    # a context with a host name needs no file
    transport = NatsTransport(tls=context, tls_hostname="nats.example.org")
    assert transport.options.tls_hostname == "nats.example.org"
