"""RabbitMQ under network faults: each test's connection goes through a fault proxy.

The proxy (``tests/bus/faultproxy.py``) breaks only the connections of the transport
under test; the shared broker is never restarted. Every test uses an exchange of its own
and deletes what it declared.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, TransportError
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.bus.faultproxy import FaultProxy, finishes, tasks_left
from tests.helpers import eventually

pytestmark = pytest.mark.rabbitmq


class Runs:
    """What a slow handler went through: starts, finishes and cancellations."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started: list[str] = []
        self.finished: list[str] = []
        self.cancelled: list[str] = []

    def handler(self, who: str) -> Callable[[Event], Any]:
        async def handle(event: Event) -> None:
            self.started.append(who)
            try:
                await asyncio.sleep(self.seconds)
            except asyncio.CancelledError:
                self.cancelled.append(who)
                raise
            self.finished.append(who)

        return handle


def slow_bus(transport: RabbitMQTransport, runs: Runs) -> EventBus:
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*", group="workers")(runs.handler("group"))
    bus.subscribe("jobs.*")(runs.handler("ungrouped"))
    return bus


async def test_a_dropped_connection_does_not_cancel_handlers_in_progress(
    proxy: FaultProxy, through_proxy: Callable[..., RabbitMQTransport]
) -> None:
    runs = Runs(1.5)
    bus = slow_bus(through_proxy(partitions=1), runs)
    async with bus:
        await bus.publish("jobs.run", {"n": 1})
        await eventually(lambda: len(runs.started) == 2)
        assert proxy.drop() > 0
        # both finish; their acks died with the connection, so the broker delivers the
        # event again (at-least-once) and the handlers run once more, also to the end
        await eventually(lambda: len(runs.finished) >= 2, timeout=10)
        assert runs.cancelled == []
        await eventually(lambda: len(runs.finished) == len(runs.started), timeout=10)
    assert runs.cancelled == []
    assert sorted(set(runs.finished)) == ["group", "ungrouped"]


async def test_close_finishes_handlers_when_the_connection_drops_meanwhile(
    proxy: FaultProxy, through_proxy: Callable[..., RabbitMQTransport]
) -> None:
    runs = Runs(1.5)
    bus = slow_bus(through_proxy(partitions=1), runs)
    await bus.start()
    await bus.publish("jobs.run", {"n": 1})
    await eventually(lambda: len(runs.started) == 2)
    closing = asyncio.ensure_future(bus.close())
    await asyncio.sleep(0.3)
    assert not closing.done()
    proxy.drop()
    await finishes(closing, 15)
    assert runs.cancelled == []
    assert sorted(runs.finished) == ["group", "ungrouped"]  # before close() returned


async def test_publish_and_close_are_bounded_while_the_broker_is_unreachable(
    proxy: FaultProxy, through_proxy: Callable[..., RabbitMQTransport]
) -> None:
    bus = EventBus(transport=through_proxy(partitions=2, connect_timeout=1.0))
    bus.subscribe("jobs.*", group="workers")(lambda event: None)
    bus.subscribe("jobs.*")(lambda event: None)  # an ungrouped queue, deleted by close()
    await bus.start()
    await bus.publish("jobs.run", 0)
    proxy.refuse()
    proxy.drop()
    for n in (1, 2, 3):  # every one, not only the first, gives up after connect_timeout
        started = time.monotonic()
        with pytest.raises(TransportError):
            await finishes(bus.publish("jobs.run", n), 10)
        assert time.monotonic() - started < 4
    assert await finishes(bus.close(), 10) < 4  # its ungrouped queue expires by itself
    await finishes(bus.close(), 1)
    accepted = proxy.accepted
    proxy.heal()
    await asyncio.sleep(1.0)  # reconnect_interval is 0.2 s: a live connection would be back
    assert proxy.accepted == accepted
    assert proxy.open_connections == 0


async def test_start_cancelled_while_connecting_leaves_nothing_running(
    proxy: FaultProxy, through_proxy: Callable[..., RabbitMQTransport]
) -> None:
    """start() cancelled inside aio-pika's connect (a timeout at startup) left the robust
    connection it was making behind: its reconnection task went on connecting, and its
    socket, reader, writer and heartbeat lived on where close() could not reach them
    (cancellation audit, repro_6)."""
    bus = EventBus(transport=through_proxy(connect_timeout=5.0))
    before = set(asyncio.all_tasks())
    proxy.blackhole()  # the connection is accepted; the broker's greeting never comes
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await bus.start()
    assert tasks_left(before) == []
    await eventually(lambda: proxy.open_connections == 0)  # its socket was closed
    proxy.heal()
    await finishes(bus.close(), 10)
    assert tasks_left(before) == []


async def test_publish_soon_after_a_drop_waits_for_the_reconnection(
    proxy: FaultProxy, through_proxy: Callable[..., RabbitMQTransport]
) -> None:
    got: list[int] = []
    bus = EventBus(transport=through_proxy(partitions=1, connect_timeout=5.0))
    bus.subscribe("jobs.*")(lambda event: got.append(event.data))
    async with bus:
        await bus.publish("jobs.run", 0)
        proxy.drop()
        await bus.publish("jobs.run", 1)  # right after the reset: sent once it is back
        await eventually(lambda: 1 in got)


async def test_a_network_pause_gives_transport_errors_and_a_final_close(
    proxy: FaultProxy, through_proxy: Callable[..., RabbitMQTransport]
) -> None:
    # heartbeat=1: aiormq declares a silent connection dead after (1 + 1) * 3 s
    publisher = EventBus(transport=through_proxy("?heartbeat=1", connect_timeout=1.0))
    await publisher.start()
    await publisher.publish("jobs.run", 0)
    proxy.pause()
    with pytest.raises(TransportError):  # not the driver's CancelledError
        await finishes(publisher.publish("jobs.run", 1), 15)
    proxy.resume()
    proxy.drop()
    await finishes(publisher.close(), 10)


async def test_close_during_a_network_pause_is_bounded_and_final(
    proxy: FaultProxy, through_proxy: Callable[..., RabbitMQTransport]
) -> None:
    handled: list[int] = []
    bus = EventBus(transport=through_proxy("?heartbeat=1", partitions=2, connect_timeout=1.0))
    bus.subscribe("jobs.*", group="workers")(lambda event: handled.append(event.data))
    bus.subscribe("jobs.*")(lambda event: handled.append(event.data))
    await bus.start()
    proxy.pause()
    assert await finishes(bus.close(), 15) < 5  # neither CancelledError nor a hang
    await finishes(bus.close(), 1)  # idempotent
    accepted = proxy.accepted
    proxy.resume()
    proxy.drop()
    await asyncio.sleep(1.5)  # a connection left alive would reconnect now (0.2 s)
    assert proxy.accepted == accepted
    assert proxy.open_connections == 0
    assert handled == []
