"""NATS: what the URL's query and address say is checked when the transport is made.

Nothing here connects: a bad value read from the URL's text is a ConfigurationError
naming it, as docs/transport-nats.md promises.
"""

from __future__ import annotations

import pytest

from pepperpy.event import ConfigurationError
from pepperpy.event.transports.nats import NatsTransport

pytest.importorskip("nats")


@pytest.mark.parametrize(
    "option",
    ["ack_wait", "inactive_threshold", "publish_timeout", "connect_timeout", "ping_interval"],
)
@pytest.mark.parametrize("raw", ["", "none"])
def test_an_empty_seconds_option_in_the_url_is_a_configuration_error(option: str, raw: str) -> None:
    """``?ack_wait=`` raised TypeError ("got None"), which the docs keep for a keyword of
    the wrong type: the URL's query is text, so a bad value there is a bad value."""
    with pytest.raises(ConfigurationError, match=option):
        NatsTransport(f"nats://127.0.0.1:4222?{option}={raw}")


@pytest.mark.parametrize("option", ["max_age", "lane_ack_wait"])
def test_none_still_means_no_limit_for_an_option_that_may_be_none(option: str) -> None:
    transport = NatsTransport(f"nats://127.0.0.1:4222?{option}=none")
    assert getattr(transport.options, option) is None


@pytest.mark.parametrize(
    "url",
    [
        "nats://127.0.0.1:abc",
        "nats://127.0.0.1:99999",
        "nats://127.0.0.1:0",
        "nats://127.0.0.1:4222,nats://127.0.0.1:42x2",
        "nats://user:secret@[::1]:70000",
    ],
)
def test_a_bad_port_is_refused_when_the_transport_is_made(url: str) -> None:
    """It was taken, and ``start()`` failed later with a TransportError "cannot connect
    ...: nats: invalid connect url option" (a half-started service, a retried outage)
    where ``amqp://`` and ``redis://`` refuse it at once as a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="bad port") as refused:
        NatsTransport(url)
    assert "secret" not in str(refused.value)


@pytest.mark.parametrize("url", ["nats://127.0.0.1", "nats://[::1]:4222", "nats://h:1,nats://g"])
def test_good_ports_and_no_port_are_taken(url: str) -> None:
    NatsTransport(url)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("nats://127.0.0.1:4222/ORDERS", "/ORDERS"),
        ("nats://user:secret@127.0.0.1:4222/orders?prefix=orders", "/orders"),
        ("nats://a:4222,nats://b:4222/0", "/0"),
    ],
)
def test_a_path_in_the_url_is_refused_pointing_at_stream(url: str, path: str) -> None:
    """NATS URLs have no path: ``nats://host:4222/ORDERS`` (a stream, as a vhost or a
    Redis database is given) was taken without a word, and the bus used the default
    stream PEPPERPY_EVENTS, shared with every other program that did the same."""
    with pytest.raises(ConfigurationError, match="stream=") as refused:
        NatsTransport(url)
    message = str(refused.value)
    assert f"path {path!r}" in message
    assert "secret" not in message


@pytest.mark.parametrize("url", ["nats://127.0.0.1:4222/", "nats://127.0.0.1:4222/?stream=S"])
def test_an_empty_path_is_taken(url: str) -> None:
    NatsTransport(url)
