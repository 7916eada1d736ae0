"""A RabbitMQ URL without a host is refused when the transport is made.

``amqp://:5672/`` and ``amqp:///`` were taken, and aiormq connected to localhost: a URL
made from an unset variable (``amqp://guest:guest@${RABBITMQ_HOST}:5672/``) reached
whatever broker this machine runs, silently, or was retried as an unreachable broker for
``connect_timeout``. Redis and NATS URLs without a host are refused too.
"""

from __future__ import annotations

import re

import pytest

from pepperpy.event import ConfigurationError, EventBus
from pepperpy.event.transports.rabbitmq import RabbitMQTransport

MESSAGE = "names no host: give it (amqp://HOST:5672/, amqp://localhost:5672/ for this machine)"


@pytest.mark.parametrize(
    "url",
    [
        "amqp://:5672/",
        "amqp:///",
        "amqp://",
        "amqps:///shop",
        "amqp://app:s3cret@:5672/",
        "amqp://app:s3cret@/?exchange=shop",
    ],
)
def test_a_url_without_a_host_is_refused_when_made(url: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(MESSAGE)) as raised:
        RabbitMQTransport(url)
    assert "s3cret" not in str(raised.value)
    assert "the RabbitMQ URL 'amqp" in str(raised.value)
    with pytest.raises(ConfigurationError, match=re.escape(MESSAGE)) as raised:
        EventBus(transport=url)
    assert "s3cret" not in str(raised.value)


@pytest.mark.parametrize(
    "url", ["amqp://localhost/", "amqp://guest:guest@127.0.0.1:5672/", "amqps://[::1]:5671/x"]
)
def test_a_url_with_a_host_is_taken(url: str) -> None:
    assert RabbitMQTransport(url).url.startswith(url.partition("/?")[0].rstrip("/"))
