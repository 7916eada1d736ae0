"""A keyword argument given explicitly wins over the same option in the URL, whatever its value.

Redis and NATS used to let a keyword win only where it differed from the default:
``NatsTransport("nats://h?ack_wait=5", ack_wait=30.0)`` got 5, since 30 is the default,
so the keyword the caller wrote was silently dropped. The transports are made without
connecting.
"""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Any

import pytest

from pepperpy.event.transports.nats import NatsOptions, NatsTransport
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from pepperpy.event.transports.rabbitmq._config import RabbitMQOptions
from pepperpy.event.transports.redis import RedisOptions, RedisTransport


def _redis(query: str, **keywords: Any) -> RedisOptions:
    return RedisTransport(f"redis://127.0.0.1:6379/0?{query}", **keywords).options


def _nats(query: str, **keywords: Any) -> NatsOptions:
    return NatsTransport(f"nats://127.0.0.1:4222?{query}", **keywords).options


def test_redis_keywords_equal_to_the_default_win_over_the_url() -> None:
    options = _redis(
        "partitions=8&connect_timeout=3&maxlen=1000&trim_interval=5",
        partitions=16,
        connect_timeout=10.0,
        maxlen=None,
        trim_interval=30.0,
    )
    assert (options.partitions, options.connect_timeout) == (16, 10.0)
    assert (options.maxlen, options.trim_interval) == (None, 30.0)
    # not given: the URL's value; neither: the default
    options = _redis("partitions=8&connect_timeout=3")
    assert (options.partitions, options.connect_timeout, options.batch_size) == (8, 3.0, 100)


def test_nats_keywords_equal_to_the_default_win_over_the_url() -> None:
    options = _nats("ack_wait=5&partitions=4&max_age=60", ack_wait=30.0, partitions=8, max_age=None)
    assert (options.ack_wait, options.partitions, options.max_age) == (30.0, 8, None)
    assert _nats("max_deliver=2", max_deliveries=5).max_deliveries == 5
    assert _nats("max_deliveries=2", max_deliver=5).max_deliveries == 5
    options = _nats("ack_wait=5&max_deliver=2")
    assert (options.ack_wait, options.max_deliveries, options.stream) == (5.0, 2, "PEPPERPY_EVENTS")


def test_rabbitmq_keywords_equal_to_the_default_win_over_the_url() -> None:
    url = "amqp://guest:guest@127.0.0.1:5672/?partitions=4&connect_timeout=3&delivery_limit=2"
    transport = RabbitMQTransport(url, partitions=12, connect_timeout=10.0, max_deliveries=10)
    assert (transport.partitions, transport.connect_timeout, transport.max_deliveries) == (
        12,
        10.0,
        10,
    )
    transport = RabbitMQTransport(url)
    assert (transport.partitions, transport.connect_timeout, transport.max_deliveries) == (
        4,
        3.0,
        2,
    )
    # RabbitMQ's name for max_deliveries wins over the URL too, and neither: the default
    assert RabbitMQTransport(url, delivery_limit=10).max_deliveries == 10
    assert RabbitMQTransport("amqp://h/", delivery_limit=3).max_deliveries == 3
    assert RabbitMQTransport("amqp://h/").max_deliveries == 10


def test_rabbitmq_shows_its_real_defaults() -> None:
    """help() showed ``partitions=None, max_deliveries=None``, which reads as "no limit"
    where the defaults are 12 and 10 (user audit finding 19)."""
    shown = inspect.signature(RabbitMQTransport).parameters
    assert (
        repr(shown["partitions"].default),
        repr(shown["max_deliveries"].default),
        repr(shown["connect_timeout"].default),
    ) == ("12", "10", "10.0")
    transport = RabbitMQTransport("amqp://h/")
    assert (transport.partitions, transport.max_deliveries, transport.connect_timeout) == (
        12,
        10,
        10.0,
    )


@pytest.mark.parametrize(
    ("cls", "options"),
    [
        (RedisTransport, RedisOptions),
        (NatsTransport, NatsOptions),
        (RabbitMQTransport, RabbitMQOptions),
    ],
)
def test_the_signature_still_shows_the_options_defaults(cls: Any, options: Any) -> None:
    """help() and IDEs show each keyword's real default, the options class's."""
    parameters = inspect.signature(cls).parameters
    defaults = options()
    for field in fields(options):
        shown = parameters[field.name].default
        assert repr(shown) == repr(getattr(defaults, field.name)), field.name
        assert shown == getattr(defaults, field.name), field.name


def test_a_bad_keyword_still_fails_when_the_url_has_the_option() -> None:
    from pepperpy.event import ConfigurationError

    with pytest.raises(ConfigurationError, match="partitions"):
        _redis("partitions=8", partitions=0)
    with pytest.raises(ConfigurationError, match="ack_wait"):
        _nats("ack_wait=5", ack_wait=-1.0)
    with pytest.raises(ConfigurationError, match="partitions"):
        RabbitMQTransport("amqp://h/?partitions=4", partitions=0)
