"""A ``publish`` (or ``publish_many``) that starts the bus and cannot connect: the
``TransportError`` says ``stored=False`` (docs/bus.md: ``False`` when the event cannot
have been stored, never sent). It said ``None``, "unknown: publishing again may deliver
it twice", though nothing had been sent. Each broker at a loopback port nothing listens
on (taken free, then closed), with a short ``connect_timeout``.
"""

from __future__ import annotations

import socket

import pytest

from pepperpy.event import EventBus, TransportError


def _closed_port() -> int:
    """A loopback port nothing listens on (the system's free one, released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


URLS = {
    "redis": "redis://127.0.0.1:{port}?connect_timeout=0.5",
    "nats": "nats://127.0.0.1:{port}?connect_timeout=0.5",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:{port}/?connect_timeout=0.5",
}


@pytest.mark.parametrize("broker", sorted(URLS))
async def test_publish_that_cannot_start_the_bus_stored_nothing(broker: str) -> None:
    bus = EventBus(transport=URLS[broker].format(port=_closed_port()))
    try:
        with pytest.raises(TransportError) as raised:
            await bus.publish("orders.placed", {"n": 1})
        assert raised.value.stored is False
        assert "it was not stored" in str(raised.value)
        assert isinstance(raised.value.__cause__, TransportError)  # the connect error

        with pytest.raises(TransportError) as batch:
            await bus.publish_many("orders.placed", [{"n": 2}, {"n": 3}])
        assert batch.value.stored is False
        assert "it was not stored" in str(batch.value)
    finally:
        await bus.close()


async def test_an_explicit_start_keeps_its_error() -> None:
    """``start()`` publishes nothing: its error is the transport's, unchanged."""
    bus = EventBus(transport=URLS["redis"].format(port=_closed_port()))
    try:
        with pytest.raises(TransportError) as raised:
            await bus.start()
        assert raised.value.stored is None
        assert "not stored" not in str(raised.value)
    finally:
        await bus.close()
