"""Transport URL schemes are matched without regard to case (RFC 3986).

Nothing here connects: a transport is built from its URL without a broker.
"""

from __future__ import annotations

import pytest

from pepperpy.event import ConfigurationError, EventBus
from pepperpy.event.transports import MemoryTransport
from pepperpy.event.transports.redis import RedisTransport


@pytest.mark.parametrize("url", ["MEMORY://", "Memory://", "MEMORY:", "MEMORY", "memory"])
async def test_memory_urls_in_any_case(url: str) -> None:
    """``MEMORY://`` was refused as "takes no address" while ``memory://`` worked."""
    bus = EventBus(transport=url)
    assert isinstance(bus.transport, MemoryTransport)
    seen: list[str] = []
    bus.subscribe("users.*")(lambda event: seen.append(event.type))
    await bus.publish("users.login", {})
    assert seen == ["users.login"]


def test_a_memory_url_with_an_address_is_still_refused() -> None:
    with pytest.raises(ConfigurationError, match="takes no address"):
        EventBus(transport="MEMORY://somewhere")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis", "transport 'redis' is not a URL: write redis://host"),
        ("AMQP", "transport 'AMQP' is not a URL: write amqp://host"),
        ("orders", "transport 'orders' is not a URL: use memory://, redis://host:6379"),
    ],
)
def test_a_transport_that_is_no_url_is_named_as_such(url: str, message: str) -> None:
    """``EventBus(transport="redis")`` said "the memory transport takes no address": a
    transport the user never named."""
    with pytest.raises(ConfigurationError) as raised:
        EventBus(transport=url)
    assert str(raised.value).startswith(message)
    assert "memory transport" not in str(raised.value)


def test_redis_urls_in_any_case() -> None:
    pytest.importorskip("redis")
    for url in ("REDIS://127.0.0.1:6379/0", "Rediss://127.0.0.1:6379/0"):
        transport = EventBus(transport=url).transport
        assert type(transport).__name__ == "RedisTransport"
        assert repr(transport).startswith(f"RedisTransport('{url.split(':')[0].lower()}://")


def test_nats_urls_in_any_case() -> None:
    pytest.importorskip("nats")
    transport = EventBus(transport="NATS://127.0.0.1:4222,Nats://127.0.0.1:4223").transport
    assert transport.servers == ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]  # type: ignore[attr-defined]


def test_amqp_urls_in_any_case() -> None:
    pytest.importorskip("aio_pika")
    for url in ("AMQP://guest:guest@127.0.0.1:5672/", "AMQPS://guest:guest@127.0.0.1:5671/"):
        transport = EventBus(transport=url).transport
        assert type(transport).__name__ == "RabbitMQTransport"
        assert transport.url.startswith(url.split(":")[0].lower() + "://")  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_amqp_seconds_must_be_finite_and_positive(value: str) -> None:
    # ?connect_timeout=nan was accepted (nan <= 0 is False) and failed later, raw
    from pepperpy.event.transports.rabbitmq import RabbitMQTransport

    # nan, inf and -1 are no decimal notation (refused as text), 0 is out of range
    message = "connect_timeout must be a (finite number|number of seconds in decimal digits)"
    with pytest.raises(ConfigurationError, match=message):
        RabbitMQTransport(f"amqp://guest:guest@127.0.0.1:5672/?connect_timeout={value}")


@pytest.mark.parametrize("path", ["/abc", "/1/2", "/0x1", "/-1", "/%31%2F2"])
def test_a_redis_path_that_is_no_database_number_is_refused(path: str) -> None:
    # redis-py drops every "/" and ignores what is then no number: /abc was database 0,
    # /1/2 database 12, without a word
    pytest.importorskip("redis")
    with pytest.raises(ConfigurationError, match="which is no database number") as caught:
        EventBus(transport=f"redis://:s3cret@127.0.0.1:6379{path}?namespace=x")
    assert "redis://:***@127.0.0.1:6379" in str(caught.value)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("path", ["", "/", "/0", "/15", "/3/"])
def test_redis_database_paths_are_accepted(path: str) -> None:
    pytest.importorskip("redis")
    from pepperpy.event.transports.redis import RedisTransport

    RedisTransport(f"redis://127.0.0.1:6379{path}")


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("redis://127.0.0.1:6379/0?partiton=8", "a redis-py connection option"),
        ("amqp://guest:guest@127.0.0.1:5672/?partiton=8", "an aio-pika connection option"),
    ],
)
def test_redis_and_rabbitmq_refuse_an_unknown_option_alike(url: str, driver: str) -> None:
    pytest.importorskip("redis" if url.startswith("redis") else "aio_pika")
    with pytest.raises(ConfigurationError) as caught:
        EventBus(transport=url)
    assert str(caught.value).startswith(
        "unknown parameter 'partiton' in the "
        f"{'Redis' if url.startswith('redis') else 'RabbitMQ'} URL "
        "(did you mean 'partitions'?): neither a transport option ("
    )
    assert f") nor {driver}" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cret@[::1/0",
        "rediss://:s3cret@[::1:6379/0",
        "nats://user:s3cret@[::1:4222",
        "tls://user:s3cret@h]:4222",
        "amqp://guest:s3cret@[::1/",
        "amqps://guest:s3cret@[::1:5671/",
        "memory://user:s3cret@[x",
        "foo://user:s3cret@[::1",
    ],
)
def test_an_unclosed_ipv6_bracket_is_a_configuration_error_naming_the_url(url: str) -> None:
    # urllib's bare ValueError("Invalid IPv6 URL") escaped from EventBus(transport=...)
    with pytest.raises(ConfigurationError, match="Invalid IPv6 URL") as caught:
        EventBus(transport=url)
    assert f"bad transport URL '{url.replace('s3cret', '***')}'" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_a_nats_url_with_an_unclosed_bracket_is_refused_by_the_transport_too() -> None:
    pytest.importorskip("nats")
    from pepperpy.event.transports.nats import NatsTransport

    with pytest.raises(ConfigurationError, match="Invalid IPv6 URL") as caught:
        NatsTransport("nats://a:4222,nats://user:s3cret@[::1:4222")
    assert "s3cret" not in str(caught.value)
    assert "user:***@" in str(caught.value)


def test_nats_refuses_an_unknown_option_as_the_others_do_without_the_password() -> None:
    # the NATS message quoted the whole URL, password included
    pytest.importorskip("nats")
    with pytest.raises(ConfigurationError) as caught:
        EventBus(transport="nats://user:s3cret@127.0.0.1:4222?ack_wiat=3")
    message = str(caught.value)
    assert message.startswith(
        "unknown parameter 'ack_wiat' in the NATS URL (did you mean 'ack_wait'?): "
        "not a transport option (ack_wait, connect_timeout, "
    )
    assert "s3cret" not in message


@pytest.mark.parametrize(
    "url",
    [
        "http://user:s3cret@127.0.0.1:4222",  # not a NATS URL
        "nats://user:s3cret@127.0.0.1:4222,http://127.0.0.1:4223",
    ],
)
def test_a_url_nats_cannot_take_is_named_without_its_password(url: str) -> None:
    pytest.importorskip("nats")
    from pepperpy.event.transports.nats import NatsTransport

    with pytest.raises(ConfigurationError, match="not a NATS URL") as caught:
        NatsTransport(url)
    assert "user:***@127.0.0.1" in str(caught.value)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://user:s3cret@host/", "unknown transport URL 'ftp://user:***@host/'"),
        ("memory://user:s3cret@host", "takes no address: 'memory://user:***@host'"),
    ],
)
def test_a_refused_transport_url_hides_its_password(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        EventBus(transport=url)
    assert message in str(caught.value)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0?namespace=a&namespace=b",
        "redis://127.0.0.1:6379/0?socket_timeout=1&socket_timeout=2",  # redis-py's too
        "amqp://guest:guest@127.0.0.1:5672/?partitions=4&partitions=6",
        "amqp://guest:guest@127.0.0.1:5672/?heartbeat=5&heartbeat=10",  # aio-pika's too
        "nats://127.0.0.1:4222?stream=A&stream=B",
        "nats://127.0.0.1:4222?stream=A,nats://127.0.0.1:4223?stream=B",  # across a cluster
    ],
)
def test_a_parameter_given_twice_with_two_values_is_refused_naming_it(url: str) -> None:
    # two processes' query strings merged: the last one no longer wins silently
    name = url.rsplit("&", 1)[-1].split("=")[0] if "&" in url else "stream"
    with pytest.raises(ConfigurationError, match=f"parameter {name!r} is given twice") as caught:
        EventBus(transport=url)
    assert "guest:guest" not in str(caught.value)


def test_a_parameter_repeated_with_its_value_is_taken_once() -> None:
    transport = RedisTransport("redis://127.0.0.1:6379/0?namespace=a&namespace=a")
    assert transport.options.namespace == "a"
    secret = "redis://127.0.0.1:6379/0?password=s3cret&password=other"
    with pytest.raises(ConfigurationError) as caught:
        RedisTransport(secret)
    assert "s3cret" not in str(caught.value) and "other" not in str(caught.value)
