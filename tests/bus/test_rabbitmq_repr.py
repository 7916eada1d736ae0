"""``repr(RabbitMQTransport(...))`` names its server and exchange, without the password.

RedisTransport and NatsTransport say what they connect to (``RedisTransport('redis://...',
namespace='shop')``), so a program logging ``bus.transport`` tells its buses apart; a
RabbitMQ bus showed ``<...RabbitMQTransport object at 0x7f...>``, which tells nothing.
"""

from __future__ import annotations

import pytest

from pepperpy.event import EventBus

pytest.importorskip("aio_pika")


def test_the_repr_names_the_server_and_exchange_without_the_password() -> None:
    bus = EventBus(transport="amqp://app:s3cret@mq.internal:5672/prod?exchange=shop&heartbeat=5")
    shown = repr(bus.transport)
    assert (
        shown
        == "RabbitMQTransport('amqp://app:***@mq.internal:5672/prod?heartbeat=5', exchange='shop')"
    )
    assert "s3cret" not in shown


def test_the_default_exchange_is_shown_too() -> None:
    from pepperpy.event.transports.rabbitmq import RabbitMQTransport

    assert repr(RabbitMQTransport("amqp://guest:guest@127.0.0.1/")) == (
        "RabbitMQTransport('amqp://guest:***@127.0.0.1/', exchange='pepperpy.events')"
    )
