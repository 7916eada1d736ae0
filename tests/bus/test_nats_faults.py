"""NATS under network faults: the transport's connection goes through a fault proxy.

The proxy (``tests/bus/faultproxy.py``) breaks only this test's connection; the shared
nats-server is never restarted. Each test has a stream and subject prefix of its own,
deleted afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import EventBus, TransportError
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.faultproxy import FaultProxy, finishes, tasks_left
from tests.helpers import eventually, settle

pytestmark = pytest.mark.nats


async def test_start_against_a_silent_server_gives_up_after_connect_timeout(
    proxy: FaultProxy, through_proxy: Callable[..., NatsTransport]
) -> None:
    proxy.blackhole()  # accepts connections, never answers
    before = set(asyncio.all_tasks())
    bus = EventBus(transport=through_proxy(connect_timeout=1.0))
    started = time.monotonic()
    with pytest.raises(TransportError, match="cannot connect"):
        await finishes(bus.start(), 15)  # nats-py alone: several 2 s attempts
    assert time.monotonic() - started < 2.5
    await finishes(bus.close(), 2)
    await settle(0.1)
    assert tasks_left(before) == []


async def test_publish_during_a_partition_gives_up_after_publish_timeout(
    proxy: FaultProxy, through_proxy: Callable[..., NatsTransport]
) -> None:
    bus = EventBus(transport=through_proxy(publish_timeout=1.0, connect_timeout=1.0))
    async with bus:
        await bus.publish("jobs.run", 0)
        proxy.pause()
        started = time.monotonic()
        with pytest.raises(TransportError, match="within 1.0s"):
            await finishes(bus.publish("jobs.run", 1), 15)  # its first try alone took 5 s
        assert time.monotonic() - started < 2
        proxy.resume()


async def test_close_while_the_server_is_unreachable_is_clean_and_final(
    proxy: FaultProxy, through_proxy: Callable[..., NatsTransport]
) -> None:
    before = set(asyncio.all_tasks())
    bus = EventBus(transport=through_proxy(connect_timeout=1.0))
    bus.subscribe("jobs.*", group="workers")(lambda event: None)
    bus.subscribe("jobs.*")(lambda event: None)
    await bus.start()
    await bus.publish("jobs.run", 1)  # acks and requests buffered, then lost
    await settle(0.3)
    proxy.refuse()
    proxy.drop()
    await settle(0.3)  # the client noticed and is reconnecting
    assert await finishes(bus.close(), 10) < 4  # no ConnectionResetError from nats-py
    await finishes(bus.close(), 1)  # again: nothing to raise either
    accepted = proxy.accepted
    proxy.heal()
    await settle(1.0)  # reconnect_wait is 0.2 s: a live client would be back by now
    assert proxy.accepted == accepted
    assert tasks_left(before) == []


async def wait_for_consumers(nats_url: str, stream: str, count: int) -> None:
    """Wait until ``stream`` has ``count`` consumers (JetStream deleted or we recreated)."""
    import nats

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + 10
        while (await js.stream_info(stream)).state.consumer_count != count:
            assert time.monotonic() < deadline, f"{stream} never had {count} consumers"
            await asyncio.sleep(0.1)
    finally:
        await nc.close()


@pytest.mark.parametrize("retention", ["limits", "interest"])
async def test_an_ungrouped_subscriber_away_longer_than_inactive_threshold(
    retention: str,
    proxy: FaultProxy,
    through_proxy: Callable[..., NatsTransport],
    names: dict[str, str],
    nats_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pepperpy.event.transports.nats")
    options = {"retention": retention, "inactive_threshold": 1.0}
    received: list[Any] = []
    subscriber = EventBus(transport=through_proxy(**options))
    subscriber.subscribe("jobs.*")(lambda event: received.append(event.data))
    publisher = EventBus(transport=NatsTransport(nats_url, **names, **options))
    async with subscriber, publisher:
        await publisher.publish("jobs.run", "before")
        await eventually(lambda: "before" in received)
        proxy.refuse()
        proxy.drop()
        for n in range(10):
            await publisher.publish("jobs.run", n)
        await wait_for_consumers(nats_url, names["stream"], 0)  # JetStream deleted it
        proxy.heal()
        await wait_for_consumers(nats_url, names["stream"], 1)  # and we recreated it
        await publisher.publish("jobs.run", "after")
        await eventually(lambda: "after" in received, timeout=10)  # recreated, listening
        await settle(0.3)
    numbers = sorted(data for data in received if isinstance(data, int))
    assert received.count("before") == 1  # it resumes right after the last event it had
    assert received.count("after") == 1
    if retention == "limits":  # the stream kept what was published meanwhile
        assert numbers == list(range(10))
        assert "deleted consumer" in caplog.text
    else:  # with interest retention nothing kept them: the documented window, reported
        assert numbers == []
        assert "are gone" in caplog.text


async def test_an_ungrouped_subscriber_away_briefly_misses_nothing(
    proxy: FaultProxy,
    through_proxy: Callable[..., NatsTransport],
    names: dict[str, str],
    nats_url: str,
) -> None:
    # interest retention, the default; an event JetStream pushed while the connection
    # was dropping comes again after ack_wait
    options = {"inactive_threshold": 10.0, "ack_wait": 2.0}
    received: list[Any] = []
    subscriber = EventBus(transport=through_proxy(**options))
    subscriber.subscribe("jobs.*")(lambda event: received.append(event.data))
    publisher = EventBus(transport=NatsTransport(nats_url, **names, **options))
    async with subscriber, publisher:
        await publisher.publish("jobs.run", "before")
        await eventually(lambda: "before" in received)
        proxy.refuse()
        proxy.drop()
        for n in range(10):
            await publisher.publish("jobs.run", n)
        await settle(0.5)
        proxy.heal()
        await eventually(lambda: len(received) == 11, timeout=10)
    assert sorted(data for data in received if isinstance(data, int)) == list(range(10))
