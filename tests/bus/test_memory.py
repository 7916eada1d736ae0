"""The conformance suite on the in-memory transport, plus what is specific to it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pepperpy.event import ConfigurationError, EventBus, MemoryTransport, Transport
from tests.bus.conformance import BusConformance


class TestMemoryBus(BusConformance):
    @pytest.fixture
    def transport_factory(self) -> Callable[[], Transport | str]:
        return lambda: "memory://"


class TestMemoryTransportObject(BusConformance):
    @pytest.fixture
    def transport_factory(self) -> Callable[[], Transport | str]:
        return MemoryTransport


async def test_publish_returns_after_local_subscribers_ran() -> None:
    bus = EventBus(["users.*"])
    seen: list[str] = []

    @bus.subscribe("users.*")
    async def handler(event: object) -> None:
        seen.append("ran")

    await bus.publish("users.login", {"user_id": "123"})
    assert seen == ["ran"]  # no waiting needed on memory://


def test_unknown_transport_urls_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="kafka"):
        EventBus(transport="kafka://localhost")
    with pytest.raises(ConfigurationError):
        EventBus(transport="memory://somewhere")
