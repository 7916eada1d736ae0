"""The bus on RabbitMQ: the conformance suite, plus what only a real broker can show.

Every test publishes to its own topic exchange (``unique_name``) and deletes the exchange
and the group queues it declared afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.bus.conformance import BusConformance
from tests.conftest import unique_name

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def make_transport(amqp_url: str) -> AsyncIterator[Callable[..., RabbitMQTransport]]:
    """Transports on one exchange unique to the test; their topology is deleted after it."""
    exchange = unique_name("pep.x")
    made: list[RabbitMQTransport] = []

    def make(**options: Any) -> RabbitMQTransport:
        options.setdefault("exchange", exchange)
        transport = RabbitMQTransport(amqp_url, **options)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.close()
        await transport.delete_topology()


class TestRabbitMQBus(BusConformance):
    @pytest.fixture
    def transport_factory(
        self, make_transport: Callable[..., RabbitMQTransport]
    ) -> Callable[[], RabbitMQTransport]:
        return make_transport


class TestRabbitMQBusOnePartitionClassic(BusConformance):
    """The same suite with one classic group queue (no lanes exchange, no rebalancing)."""

    @pytest.fixture
    def transport_factory(
        self, make_transport: Callable[..., RabbitMQTransport]
    ) -> Callable[[], RabbitMQTransport]:
        return lambda: make_transport(partitions=1, queue_type="classic")
