"""RabbitMQ 4's own delivery limit of quorum queues, and ours.

RabbitMQ 4.0 gave quorum queues a default ``delivery-limit`` of 20: a message returned
more than that is dropped by the broker (or dead-lettered to a broker-side
``dead-letter-exchange``, which the transport does not set), with no
``deadletter.<topic>`` and no record of the transport's. The transport's own limit,
``max_deliveries`` (default 10), comes first unless it is off (0) or 20 and more: the
transport then warns once, as a group joins, on such a broker (the broker here is
RabbitMQ 3, which has no such default; the decision is tested on server properties).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import Event
from pepperpy.event.transports import Subscription
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from pepperpy.event.transports.rabbitmq._config import rabbitmq_major
from pepperpy.event.transports.rabbitmq._deliveries import (
    BROKER_DELIVERY_LIMIT,
    broker_limit_warning,
)

URL = "amqp://guest:secret@127.0.0.1:5672/"


@pytest.mark.parametrize(
    ("properties", "max_deliveries", "warned"),
    [
        ({"product": "RabbitMQ", "version": "3.13.7"}, 0, None),
        ({"product": "RabbitMQ", "version": "3.10.8"}, 50, None),
        ({"product": "RabbitMQ", "version": "4.0.5"}, 10, None),
        ({"product": "RabbitMQ", "version": b"4.1.0"}, 19, None),
        ({"product": "RabbitMQ", "version": "4.0.5"}, 0, "max_deliveries=0 turns"),
        ({"product": "RabbitMQ", "version": "4.3.1"}, 20, "max_deliveries=20 is not below"),
        ({"product": "RabbitMQ", "version": "5.0.0"}, 100, "max_deliveries=100 is not below"),
        ({"product": "LavinMQ", "version": "2.0.0"}, 0, None),
        ({}, 0, None),
    ],
)
def test_the_warning_names_the_brokers_limit_when_it_comes_first(
    properties: dict[str, Any], max_deliveries: int, warned: str | None
) -> None:
    warning = broker_limit_warning(properties, max_deliveries, URL)
    if warned is None:
        assert warning is None
        return
    assert warning is not None
    assert warned in warning
    assert f"more than {BROKER_DELIVERY_LIMIT} times" in warning
    assert "policy" in warning
    assert "secret" not in warning  # the URL's password is hidden


@pytest.mark.rabbitmq
async def test_the_real_brokers_version_is_read_and_a_group_joins(
    rabbitmq_transports: Callable[..., RabbitMQTransport], caplog: pytest.LogCaptureFixture
) -> None:
    """The properties the warning reads are the real broker's; RabbitMQ 3 (the one
    here) has no default limit, so a group with the transport's limit off joins quietly."""
    transport = rabbitmq_transports(max_deliveries=0)
    caplog.set_level(logging.WARNING, "pepperpy.event.transports.rabbitmq")
    async with asyncio.timeout(30):
        await transport.start()
        assert transport._publisher is not None
        underlay = await transport._publisher.get_underlay_channel()
        major = rabbitmq_major(underlay.connection.server_properties)
        assert major is not None
        await transport.subscribe(Subscription("a.*", _ignore, "workers", "w"))
        assert transport._broker_limit_checked
        warnings = [r for r in caplog.records if "delivery-limit" in r.getMessage()]
        assert bool(warnings) == (major >= 4)
    await transport.close()


async def _ignore(event: Event) -> None:
    return None
