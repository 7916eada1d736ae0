"""A transport option of the wrong type is a TypeError; a bad value, a ConfigurationError.

docs/errors.md promises that wrong argument *types* stay plain ``TypeError``s, as in
Python itself, and that ``ConfigurationError`` is a bad URL, option or combination of
options. The transports mixed the two: NATS raised ``TypeError`` for ``ack_wait="5"``
but ``ConfigurationError`` for ``partitions=1.5`` or ``replicas=True``, and Redis and
RabbitMQ raised ``ConfigurationError`` for every keyword of the wrong type, so an
``except TypeError`` missed them. Text read from a URL that is no number
(``?partitions=many``) is a bad value, not a wrong type. Nothing here connects.
"""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import ConfigurationError, EventBus
from pepperpy.event.transports.nats import NatsTransport
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from pepperpy.event.transports.redis import RedisTransport

CLASSES: dict[str, Any] = {
    "redis": RedisTransport,
    "nats": NatsTransport,
    "rabbitmq": RabbitMQTransport,
}
URLS = {
    "redis": "redis://127.0.0.1:6379/0",
    "nats": "nats://127.0.0.1:4222",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/",
}

WRONG_TYPES = [
    # a count given as text, a float, or a bool (True is an int to Python)
    ("redis", {"partitions": "3"}, "partitions must be an int >= 1, got '3'"),
    ("redis", {"partitions": 1.5}, "partitions must be an int >= 1, got 1.5"),
    ("redis", {"batch_size": True}, "batch_size must be an int >= 1, got True"),
    ("redis", {"maxlen": 1000.0}, "maxlen must be an int >= 1, got 1000.0"),
    ("redis", {"max_deliveries": "5"}, "max_deliveries must be an int >= 1, got '5'"),
    ("redis", {"replicas": True}, "replicas must be an int >= 0, got True"),
    ("redis", {"lease_ttl": "5"}, "lease_ttl must be a finite number of seconds > 0, got '5'"),
    ("redis", {"connect_timeout": True}, "connect_timeout must be a finite number of seconds"),
    ("redis", {"trim_interval": "30"}, "trim_interval must be a finite number of seconds"),
    ("redis", {"retention": "60"}, "retention must be a finite number of seconds >= 0"),
    ("redis", {"namespace": 3}, "namespace must be a non-empty word, got 3"),
    ("nats", {"partitions": 1.5}, "partitions must be an int >= 1, got 1.5"),
    ("nats", {"partitions": "3"}, "partitions must be an int >= 1, got '3'"),
    ("nats", {"replicas": True}, "replicas must be an int >= 1, got True"),
    ("nats", {"max_ack_pending": 10.0}, "max_ack_pending must be an int >= 1, got 10.0"),
    ("nats", {"max_deliver": "3"}, r"max_deliveries \(or max_deliver\) must be an int >= 1"),
    ("nats", {"ack_wait": "5"}, "ack_wait must be a finite number of seconds > 0, got '5'"),
    ("nats", {"stream": 3}, "invalid JetStream stream name 3"),
    ("nats", {"prefix": 3}, "the NATS subject prefix must be a str, got 3"),
    ("nats", {"retention": 1}, "retention must be one of"),
    ("rabbitmq", {"partitions": "3"}, "partitions must be an int >= 1, got '3'"),
    ("rabbitmq", {"prefetch": True}, "prefetch must be an int >= 1, got True"),
    ("rabbitmq", {"delivery_limit": 2.0}, r"max_deliveries \(or delivery_limit\) must be an int"),
    ("rabbitmq", {"max_deliveries": "2"}, "must be an int >= 0, got '2'"),
    ("rabbitmq", {"connect_timeout": "10"}, "connect_timeout must be a finite number of seconds"),
    ("rabbitmq", {"handover_grace": True}, "handover_grace must be a finite number of seconds"),
    ("rabbitmq", {"exchange": 3}, "exchange must be a non-empty name .*, got 3"),
    ("rabbitmq", {"queue_type": 1}, "queue_type must be 'quorum' or 'classic', got 1"),
]


@pytest.mark.parametrize(("kind", "keywords", "message"), WRONG_TYPES)
def test_a_keyword_of_the_wrong_type_is_a_type_error(
    kind: str, keywords: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message) as caught:
        CLASSES[kind](URLS[kind], **keywords)
    assert not isinstance(caught.value, ConfigurationError)


BAD_VALUES = [
    # the right type, but out of range or no name: the caller's error for bad options
    ("redis", {"partitions": 0}, "partitions must be an int >= 1, got 0"),
    ("redis", {"partitions": 2000}, "partitions must be at most 1024"),
    ("redis", {"replicas": -1}, "replicas must be an int >= 0, got -1"),
    ("redis", {"lease_ttl": 0.1}, "lease_ttl must be at least 0.3 s"),
    ("redis", {"lease_ttl": float("nan")}, "lease_ttl must be a finite number of seconds"),
    ("redis", {"retention": -1}, "retention must be a finite number of seconds >= 0"),
    ("redis", {"namespace": "two words"}, "namespace must be a non-empty word"),
    ("redis", {"namespace": "two\twords"}, "namespace must be a non-empty word"),
    ("redis", {"namespace": "line\nbreak"}, "namespace must be a non-empty word"),
    ("redis", {"namespace": "nul\x00"}, "namespace must be a non-empty word"),
    ("nats", {"partitions": 0}, "partitions must be an int >= 1, got 0"),
    ("nats", {"partitions": 65}, "partitions must be at most 64"),
    ("nats", {"replicas": 0}, "replicas must be an int >= 1, got 0"),
    ("nats", {"ack_wait": float("inf")}, "ack_wait must be a finite number of seconds"),
    ("nats", {"stream": "a.b"}, "invalid JetStream stream name 'a.b'"),
    ("nats", {"prefix": "a..b"}, "invalid NATS subject prefix"),
    ("nats", {"retention": "forever"}, "retention must be one of"),
    ("rabbitmq", {"partitions": 0}, "partitions must be an int >= 1, got 0"),
    ("rabbitmq", {"partitions": 65}, "partitions must be at most 64"),
    ("rabbitmq", {"delivery_limit": -1}, r"max_deliveries \(or delivery_limit\) must be an int"),
    ("rabbitmq", {"connect_timeout": 0}, "connect_timeout must be a finite number of seconds"),
    ("rabbitmq", {"handover_grace": -1.0}, "handover_grace must be a finite number of seconds"),
    ("rabbitmq", {"exchange": ""}, "exchange must be a non-empty name"),
    ("rabbitmq", {"queue_type": "stream"}, "queue_type must be 'quorum' or 'classic'"),
]


@pytest.mark.parametrize(("kind", "keywords", "message"), BAD_VALUES)
def test_a_keyword_of_the_right_type_out_of_range_is_a_configuration_error(
    kind: str, keywords: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        CLASSES[kind](URLS[kind], **keywords)


URL_TEXT = [
    # what a URL's query holds is text: one that is no number is a bad value
    ("redis", "partitions=many", "partitions='many'"),
    ("redis", "replicas=1.5", "replicas='1.5'"),
    ("redis", "lease_ttl=soon", "lease_ttl='soon'"),
    ("nats", "partitions=1.5", "partitions='1.5'"),
    ("nats", "ack_wait=soon", "ack_wait='soon'"),
    ("rabbitmq", "partitions=many", "partitions='many'"),
    ("rabbitmq", "handover_grace=soon", "handover_grace='soon'"),
]


@pytest.mark.parametrize(("kind", "query", "message"), URL_TEXT)
def test_url_text_that_is_no_number_stays_a_configuration_error(
    kind: str, query: str, message: str
) -> None:
    url = URLS[kind].replace("//", "//user:s3cret@", 1).replace("guest:guest@", "")
    with pytest.raises(ConfigurationError, match=message) as caught:
        CLASSES[kind](f"{url}?{query}")
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("kind", sorted(CLASSES))
@pytest.mark.parametrize("url", [3, None, b"redis://:s3cret@127.0.0.1:6379/0"])
def test_a_url_that_is_no_str_is_a_type_error_without_its_password(kind: str, url: Any) -> None:
    with pytest.raises(TypeError) as caught:
        CLASSES[kind](url)
    message = str(caught.value)
    assert not isinstance(caught.value, ConfigurationError)
    assert "URL" in message
    assert "s3cret" not in message
    if isinstance(url, bytes):
        assert "bytes 'redis://:***@127.0.0.1:6379/0'" in message


def test_an_event_bus_given_a_bytes_url_hides_its_password() -> None:
    with pytest.raises(TypeError, match="transport must be a URL or a Transport") as caught:
        EventBus(transport=b"redis://:s3cret@127.0.0.1:6379/0")  # type: ignore[arg-type]
    assert "s3cret" not in str(caught.value)
