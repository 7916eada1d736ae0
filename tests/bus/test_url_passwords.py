"""Transports never show a URL's password: not in a repr, a log line or an error.

A connection error is the likeliest place for a URL to end up in front of people (a
traceback in a log aggregator, a crash report); the password is replaced by ``***``
there, as the stores do (``tests/store/test_redact_url.py``).
"""

from __future__ import annotations

import logging

import pytest

from pepperpy.event import Event, EventBus, TransportError
from pepperpy.event._redact import redact_url
from pepperpy.event.transports.nats import NatsTransport
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from pepperpy.event.transports.redis import RedisTransport

#: port 1 on loopback: nothing listens there, so connecting fails at once
URLS = [
    pytest.param("redis://:s3cret@127.0.0.1:1/0?connect_timeout=0.5", id="redis user:password"),
    pytest.param(
        "redis://127.0.0.1:1/0?password=s3cret&connect_timeout=0.5", id="redis ?password="
    ),
    pytest.param("nats://u:s3cret@127.0.0.1:1?connect_timeout=0.5", id="nats user:password"),
    pytest.param("nats://s3cret@127.0.0.1:1?connect_timeout=0.5", id="nats token@"),
    pytest.param("amqp://guest:s3cret@127.0.0.1:1/?connect_timeout=0.5", id="amqp user:password"),
]


@pytest.mark.parametrize("url", URLS)
async def test_connection_errors_and_logs_hide_the_password(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pepperpy.event")
    bus = EventBus(transport=url)
    try:
        with pytest.raises(TransportError) as caught:
            await bus.publish("a.b", Event("a.b", {}))
    finally:
        await bus.close()
    shown = str(caught.value)
    assert "127.0.0.1:1" in shown and "***" in shown
    assert "s3cret" not in shown
    assert "s3cret" not in caplog.text


def test_reprs_and_server_names_hide_the_password() -> None:
    redis = RedisTransport("redis://:s3cret@127.0.0.1:6379/0")
    assert "s3cret" not in repr(redis) and "***" in repr(redis)
    nats = NatsTransport("nats://u:s3cret@127.0.0.1:4222,nats://v:other@127.0.0.1:4223")
    assert nats.server == "nats://u:***@127.0.0.1:4222,nats://v:***@127.0.0.1:4223"
    assert "s3cret" not in repr(nats)
    assert "s3cret" not in repr(RabbitMQTransport("amqp://guest:s3cret@127.0.0.1:5672/"))


def test_a_nats_token_is_hidden_everywhere_a_transport_shows_its_server() -> None:
    # nats-py sends the user part of nats://TOKEN@host, given without a password, as the
    # server's auth token: a secret like a password
    nats = NatsTransport("nats://s3cret@127.0.0.1:4222,tls://other@127.0.0.1:4223")
    assert nats.server == "nats://***@127.0.0.1:4222,tls://***@127.0.0.1:4223"
    assert "s3cret" not in repr(nats) and "other" not in repr(nats)
    assert "s3cret" not in EventBus(transport=nats).health().transport


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://s3cret@127.0.0.1:4222", "nats://***@127.0.0.1:4222"),
        ("NATS://s3cret@h:4222", "NATS://***@h:4222"),
        ("tls://s3c@ret@h:4222", "tls://***@h:4222"),
        ("ws://s3cret@h:8080/path", "ws://***@h:8080/path"),
        ("wss://s3cret@h", "wss://***@h"),
        ("nats://h:4222?token=s3cret&stream=S", "nats://h:4222?token=***&stream=S"),
        # a user name elsewhere is no secret; nor is a NATS URL without a user part
        ("redis://app@h:6379/0", "redis://app@h:6379/0"),
        ("amqp://app@h/", "amqp://app@h/"),
        ("nats://h:4222", "nats://h:4222"),
        ("nats://@h:4222", "nats://@h:4222"),
    ],
)
def test_redact_url_hides_nats_tokens(url: str, shown: str) -> None:
    assert redact_url(url) == shown
