"""Redis: the values of the URL's redis-py options are checked when the transport is made.

redis-py reads any text but a few words as true (``?socket_keepalive=maybe``), takes a
negative ``health_check_interval`` (a PING before every command), ignores an option with
no value, and takes the address's host, path and password over the query's silently;
``redis://host:0`` was taken, and ``start()`` then retried it as an unreachable Redis for
``connect_timeout``. Each is now a ConfigurationError naming the option, the value and
what it takes, without connecting and without showing a password.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from urllib.parse import quote

import pytest

from pepperpy.event import ConfigurationError, EventBus
from pepperpy.event.transports.redis import RedisTransport

BAD = [
    ("redis://127.0.0.1:0/0", "bad port '0'", "from 1 to 65535"),
    ("redis://u:secret@127.0.0.1:70000/0", "bad port '70000'", "from 1 to 65535"),
    ("redis://[::1]:0", "bad port '0'", "from 1 to 65535"),
    ("redis://h/0?socket_keepalive=maybe", "'maybe' for socket_keepalive", "true or false"),
    ("redis://h/0?socket_keepalive=on", "'on' for socket_keepalive", "true or false"),
    ("redis://h/0?retry_on_timeout=2", "'2' for retry_on_timeout", "true or false"),
    ("rediss://h/0?ssl_check_hostname=maybe", "for ssl_check_hostname", "true or false"),
    ("redis://h/0?legacy_responses=sure", "for legacy_responses", "true or false"),
    ("redis://h/0?health_check_interval=-1", "'-1' for health_check_interval", "from 0"),
    ("redis://h/0?health_check_interval=1.5", "for health_check_interval", "whole number"),
    ("redis://h/0?health_check_interval=1e400", "for health_check_interval", "to 86400"),
    ("redis://h/0?socket_timeout=soon", "'soon' for socket_timeout", "number of seconds"),
    ("redis://h/0?socket_connect_timeout=0", "for socket_connect_timeout", "> 0"),
    ("redis://h/0?max_connections=1.5", "'1.5' for max_connections", "at least 1"),
    ("redis://h/0?socket_read_size=-5", "'-5' for socket_read_size", "at least 1"),
    ("redis://h?db=-1", "'-1' for db", "from 0 to 2147483647"),
    ("unix:///run/redis.sock?db=x", "'x' for db", "from 0 to 2147483647"),
    ("redis://h/99999999999999999999", "bad database 99999999999999999999", "2147483647"),
    ("redis://h/0?protocol=two", "'two' for protocol", "2 (RESP2"),
    ("rediss://h/0?ssl_cert_reqs=bogus", "'bogus' for ssl_cert_reqs", "none, optional or"),
    ("rediss://h/0?ssl_min_version=5", "'5' for ssl_min_version", "772 (TLS 1.3)"),
    ("rediss://h/0?ssl_ciphers=NO-SUCH-CIPHER", "for ssl_ciphers", "OpenSSL cipher list"),
    ("rediss://h/0?ssl_ca_data=garbage", "'garbage' for ssl_ca_data", "PEM text"),
    ("rediss://h/0?ssl_include_verify_flags=NOPE", "'NOPE' for", "ssl.VerifyFlags"),
    ("redis://h/0?encoding_errors=bogus", "for encoding_errors", "strict, replace"),
    ("redis://h/0?retry_on_error=Nope", "'Nope' for retry_on_error", "redis.exceptions"),
    # no value: redis-py dropped it, keeping its default
    ("redis://h/0?socket_timeout=", "socket_timeout has no value", "leave socket_timeout out"),
    ("redis://h/0?client_name=", "client_name has no value", "give one"),
    # Python objects in redis-py: connection_class raised a bare AttributeError
    ("redis://h/0?connection_class=x", "unknown parameter 'connection_class'", ""),
    ("redis://h/0?credential_provider=x", "credential_provider cannot be given", "object"),
    ("redis://h/0?socket_type=2", "socket_type cannot be given", "object"),
    # what the address gives, given again in the query: redis-py took the address's
    ("redis://h/0?host=other", "host in the query", "differs from the URL's address"),
    ("redis://h/0?port=6380", "port cannot be given in the query", "redis://host:PORT/0"),
    ("unix:///run/a.sock?path=/run/b.sock", "path in the query", "differs"),
    ("redis://u:secret@h/0?password=other", "gives two passwords", "give the password once"),
    ("redis://u:secret@h/0?username=v", "gives two usernames", "once"),
    # no socket: start() tried to connect to '' and retried it as an unreachable Redis
    ("unix://?db=0", "names no socket", "unix:///run/redis/redis.sock"),
    ("unix:///?namespace=n", "names no socket", "give its path"),
    # the transport's own options: the message now says what they take
    ("redis://h/0?partitions=1.0", "bad partitions='1.0'", "must be a whole number"),
    ("redis://h/0?maxlen=lots", "bad maxlen='lots'", "a whole number in digits 0-9, or none"),
    ("redis://h/0?lease_ttl=soon", "bad lease_ttl='soon'", "must be a number of seconds"),
    # numbers are plain ASCII digits: int() read "1_6" as 16, and took spaces around the
    # digits and other scripts' digits; float() took "1_0", "inf" and "nan" too
    ("redis://h/0?partitions=1_6", "bad partitions='1_6'", "a whole number in digits 0-9"),
    ("redis://h/0?partitions=%D9%A1%D9%A6", "bad partitions='١٦'", "digits 0-9"),
    ("redis://h/0?batch_size=+10", "bad batch_size=' 10'", "digits 0-9"),
    ("redis://h/0?max_deliveries=%205%20", "bad max_deliveries=' 5 '", "digits 0-9"),
    ("redis://h/0?maxlen=1_000", "bad maxlen='1_000'", "digits 0-9, or none"),
    ("redis://h/0?replicas=%EF%BC%91", "bad replicas='１'", "digits 0-9"),
    ("redis://h/0?lease_ttl=1_0", "bad lease_ttl='1_0'", "in decimal digits"),
    ("redis://h/0?connect_timeout=0x10", "bad connect_timeout='0x10'", "in decimal digits"),
    ("redis://h/0?max_backoff=%202", "bad max_backoff=' 2'", "in decimal digits"),
    ("redis://h/0?retention=inf", "bad retention='inf'", "in decimal digits"),
    (
        "redis://h/0?trim_interval=%D9%A3",
        "bad trim_interval='٣'",
        "decimal digits (30, 0.5), or none",
    ),
    ("redis://h/0?connect_timeout=1.2.3", "bad connect_timeout='1.2.3'", "decimal digits"),
    # redis-py's numbers alike: it read "1_6" as database 16
    ("redis://h?db=1_6", "'1_6' for db", "from 0 to 2147483647"),
    ("redis://h/0?max_connections=%D9%A1", "for max_connections", "at least 1"),
    ("redis://h/0?health_check_interval=%201", "for health_check_interval", "whole number"),
    ("redis://h/0?socket_timeout=1_0", "'1_0' for socket_timeout", "number of seconds"),
    ("redis://h/0?socket_connect_timeout=1%D9%A0", "for socket_connect_timeout", "> 0"),
    ("redis://h/0?protocol=%D9%A2", "for protocol", "2 (RESP2"),
    # options of another kind of connection
    ("redis://h/0?ssl_cert_reqs=none", "unknown parameter 'ssl_cert_reqs'", "use a rediss://"),
    ("unix:///run/r.sock?socket_keepalive=true", "unknown parameter", "not of a Unix socket"),
]


@pytest.mark.parametrize(("url", "what", "accepted"), BAD)
def test_a_bad_value_is_refused_when_made_naming_it(url: str, what: str, accepted: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        RedisTransport(url)
    message = str(refused.value)
    assert what in message
    assert accepted in message
    assert "secret" not in message
    if not url.startswith("unix:"):  # EventBus takes a Unix socket's URL by transport only
        with pytest.raises(ConfigurationError, match="Redis URL"):
            EventBus(transport=url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://u:secret@h/0?socket_keepalive=maybe",
        "redis://h/0?password=secret&health_check_interval=-1",
        "rediss://h/0?ssl_password=secret&ssl_cert_reqs=bogus",
        "rediss://h/0?ssl_password=secret&ssl_ciphers=NOPE",
        "redis://u:secret@h:0/0",
    ],
)
def test_no_password_is_shown(url: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        RedisTransport(url)
    assert "secret" not in str(refused.value)
    assert "***" in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://h:1/0",
        "redis://h:65535/2147483647",
        "redis://h/0?socket_keepalive=false&retry_on_timeout=YES&health_check_interval=0",
        "redis://u:p@h/0?password=p&username=u",  # the same twice: no conflict
        "redis://h/0?host=h",
        "unix://?path=/run/redis.sock",
        "unix:///run/redis.sock?path=/run/redis.sock",
        "redis://h/0?retry_on_error=ConnectionError,TimeoutError&socket_read_size=1",
        "rediss://h/0?ssl_cert_reqs=none&ssl_min_version=771&ssl_ciphers=HIGH&ssl_check_hostname=0",
        "redis://h/0?encoding_errors=replace&socket_connect_timeout=0.5",
        # decimal notation in all its forms
        "redis://h/0?partitions=007&lease_ttl=.5&connect_timeout=3.&max_backoff=2.5E-1",
        "redis://h/0?maxlen=none&trim_interval=off&retention=0&socket_timeout=2.5",
        "rediss://h/0?ssl_include_verify_flags=VERIFY_X509_STRICT,VERIFY_X509_PARTIAL_CHAIN",
    ],
)
def test_good_values_are_taken(url: str) -> None:
    RedisTransport(url)


def test_a_ca_certificate_in_ssl_ca_data_is_taken() -> None:
    bundle = Path(ssl.get_default_verify_paths().openssl_cafile)
    if not bundle.is_file():
        pytest.skip(f"no CA bundle at {bundle}")
    text = bundle.read_text()
    end = "-----END CERTIFICATE-----"
    pem = text[text.index("-----BEGIN CERTIFICATE-----") : text.index(end) + len(end)]
    transport = RedisTransport(f"rediss://h/0?ssl_ca_data={quote(pem)}")
    assert transport._url_options["ssl_ca_data"] == pem


@pytest.mark.redis
async def test_good_values_still_connect(redis_url: str, namespace: str, client: object) -> None:
    url = (
        f"redis://127.0.0.1:6379?db=0&namespace={namespace}&partitions=1"
        "&socket_keepalive=yes&retry_on_timeout=false&health_check_interval=1"
        "&socket_timeout=5&socket_connect_timeout=2.5&max_connections=10"
        "&socket_read_size=4096&retry_on_error=ConnectionError&encoding_errors=strict"
        "&host=127.0.0.1"
    )
    bus = EventBus(transport=url)
    async with asyncio.timeout(15), bus:
        await bus.publish("values.ok", {"n": 1})
    assert await client.xlen(f"{namespace}:stream:0") == 1  # type: ignore[attr-defined]
