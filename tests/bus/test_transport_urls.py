"""Transport URL schemes are matched without regard to case (RFC 3986).

Nothing here connects: a transport is built from its URL without a broker.
"""

from __future__ import annotations

import pytest

from pepperpy.event import ConfigurationError, EventBus
from pepperpy.event.transports import MemoryTransport


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

    with pytest.raises(ConfigurationError, match="connect_timeout must be a finite number"):
        RabbitMQTransport(f"amqp://guest:guest@127.0.0.1:5672/?connect_timeout={value}")
