"""RabbitMQ: start() waits up to connect_timeout for a broker that cannot be reached yet.

Redis and NATS retried a refused first connection for their whole ``connect_timeout``;
RabbitMQ raised at the first refusal, so in a docker-compose start-up race an app on
RabbitMQ crashed where one on Redis or NATS waited (user audit #11). start() now tries
again every ``reconnect_interval`` until ``connect_timeout`` is up, then raises the same
TransportError; a broker that answers and says no (bad credentials, a virtual host it
refuses) still fails at once, and close() or a cancellation ends the tries. The broker is
reached through the fault proxy (``refuse()``: a broker that is down), on an exchange of
the test's own, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import ClosedError, Event, TransportError
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.bus.faultproxy import FaultProxy, finishes, tasks_left
from tests.conftest import unique_name
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq

Make = Callable[..., RabbitMQTransport]


async def test_start_waits_for_a_broker_that_comes_up(
    proxy: FaultProxy, rabbitmq_through_proxy: Make
) -> None:
    proxy.refuse()
    transport = rabbitmq_through_proxy(connect_timeout=20.0, reconnect_interval=0.2)
    starting = asyncio.ensure_future(transport.start())
    # tried, refused, and tried again (before: TransportError at the first refusal)
    await eventually(lambda: proxy.accepted >= 3 or starting.done(), timeout=10)
    assert not starting.done(), starting
    proxy.heal()
    await finishes(starting, 15)
    await finishes(transport.publish(Event("orders.created")), 10)


async def test_start_gives_up_after_connect_timeout_with_the_last_failure(
    proxy: FaultProxy, rabbitmq_through_proxy: Make
) -> None:
    proxy.refuse()
    before = asyncio.all_tasks()
    transport = rabbitmq_through_proxy(connect_timeout=1.5, reconnect_interval=0.2)
    with pytest.raises(TransportError) as caught:
        await finishes(transport.start(), 10)
    message = str(caught.value)
    assert f"cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:{proxy.port}/" in message
    assert "Server connection reset" in message
    assert "connect_timeout is 1.5s" in message
    assert proxy.accepted >= 3  # it retried (before: one try)
    assert tasks_left(before) == []  # no connection of a failed try goes on reconnecting


async def test_a_refused_port_is_retried_without_aiormqs_error_line(
    amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listens on the port: each try is ECONNREFUSED, which aiormq logged as an
    unprefixed ERROR ("error when creating transport") on top of start()'s error."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    caplog.set_level(logging.INFO)
    transport = RabbitMQTransport(
        f"amqp://guest:guest@127.0.0.1:{port}/",
        exchange=unique_name("pep.down"),
        connect_timeout=1.0,
        reconnect_interval=0.2,
    )
    try:
        with pytest.raises(TransportError) as caught:
            await finishes(transport.start(), 10)
    finally:
        await finishes(transport.close(), 10)
    assert "Connect call failed" in str(caught.value)
    assert "tried " in str(caught.value)  # more than once
    noise = [r for r in caplog.records if r.name.startswith("aiormq") and r.levelno >= logging.INFO]
    assert noise == []


async def test_aiormqs_line_stays_for_debugging(
    amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    caplog.set_level(logging.DEBUG, logger="aiormq.connection")
    transport = RabbitMQTransport(
        f"amqp://guest:guest@127.0.0.1:{port}/", connect_timeout=0.5, reconnect_interval=0.2
    )
    with pytest.raises(TransportError):
        await finishes(transport.start(), 10)
    demoted = [r for r in caplog.records if "error when creating transport" in r.getMessage()]
    assert demoted and all(r.levelno == logging.DEBUG for r in demoted)


@pytest.mark.parametrize("password", ["wrong"])
async def test_bad_credentials_fail_at_once(proxy: FaultProxy, password: str) -> None:
    transport = RabbitMQTransport(
        f"amqp://guest:{password}@127.0.0.1:{proxy.port}/",
        exchange=unique_name("pep.auth"),
        connect_timeout=20.0,
        reconnect_interval=0.2,
    )
    try:
        with pytest.raises(TransportError, match="ACCESS_REFUSED"):
            await finishes(transport.start(), 5)  # not after 20 s of retries
    finally:
        await finishes(transport.close(), 10)
    assert proxy.accepted == 1


async def test_a_missing_virtual_host_fails_at_once(proxy: FaultProxy) -> None:
    vhost = unique_name("pep_novh")
    transport = RabbitMQTransport(
        f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost}",
        exchange=unique_name("pep.vhost"),
        connect_timeout=20.0,
        reconnect_interval=0.2,
    )
    try:
        with pytest.raises(TransportError, match="NOT_ALLOWED"):
            await finishes(transport.start(), 5)
    finally:
        await finishes(transport.close(), 10)
    assert proxy.accepted == 1


async def _trying(proxy: FaultProxy, make: Make) -> tuple[RabbitMQTransport, asyncio.Task[Any]]:
    proxy.refuse()
    transport = make(connect_timeout=30.0, reconnect_interval=0.2)
    starting = asyncio.ensure_future(transport.start())
    await eventually(lambda: proxy.accepted >= 2 or starting.done(), timeout=10)
    assert not starting.done(), starting
    return transport, starting


async def test_close_ends_the_tries(proxy: FaultProxy, rabbitmq_through_proxy: Make) -> None:
    before = asyncio.all_tasks()
    transport, starting = await _trying(proxy, rabbitmq_through_proxy)
    await finishes(transport.close(), 5)
    with pytest.raises(ClosedError):
        await finishes(starting, 5)  # not after connect_timeout (30 s)
    tried = proxy.accepted
    proxy.heal()
    await asyncio.sleep(0.5)
    assert proxy.accepted == tried and proxy.open_connections == 0  # nothing tries on
    assert tasks_left(before) == []


async def test_cancelling_start_ends_the_tries(
    proxy: FaultProxy, rabbitmq_through_proxy: Make
) -> None:
    before = asyncio.all_tasks()
    transport, starting = await _trying(proxy, rabbitmq_through_proxy)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    tried = proxy.accepted
    proxy.heal()
    await asyncio.sleep(0.5)
    assert proxy.accepted == tried and proxy.open_connections == 0
    assert tasks_left(before) == []
    # the transport itself is usable: start() again reaches the broker now
    await finishes(transport.start(), 10)
