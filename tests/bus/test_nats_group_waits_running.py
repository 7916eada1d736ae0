"""NATS: members already running learn the shorter waits a joining member gives the group.

A group's members share its JetStream consumers, and the member that joins last sets
their ``ack_wait`` (``lane_ack_wait`` on the key lanes; see test_nats_group_waits.py).
Before, a running member went on reporting its slow handlers as in progress at a third
of its own, longer wait: once a member with a shorter wait joined, JetStream gave up on
the event the running member was still handling and delivered it again (to either
member): the event was handled twice. Now the joining member tells the running ones
before it shortens the waits, and they report at a third of the group's wait from then
on (docs/transport-nats.md, "Groups with other waits").

On the real server, in a stream of the test's own, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import Event, EventBus
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.faultproxy import FaultProxy
from tests.helpers import eventually

pytestmark = pytest.mark.nats

LOGGER = "pepperpy.event.transports.nats"


@pytest.mark.parametrize("key", [None, "customer-7"], ids=["unkeyed", "keyed"])
async def test_a_running_member_keeps_its_slow_event_once_a_shorter_wait_applies(
    nats_url: str, nats_namespace: dict[str, str], key: str | None
) -> None:
    """The first member handles an event for 9 s; 30 s was the group's wait when it came,
    and a second member then joins with 4 s. The event is handled once."""
    handled: list[tuple[str, Any]] = []
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(event: Event) -> None:
        handled.append(("first", event.data))
        started.set()
        await release.wait()

    def quick(event: Event) -> None:
        handled.append(("second", event.data))

    first = EventBus(
        transport=NatsTransport(
            nats_url, partitions=1, ack_wait=30.0, lane_ack_wait=30.0, **nats_namespace
        )
    )
    first.subscribe("orders.*", group="billing")(slow)
    second = EventBus(
        transport=NatsTransport(
            nats_url, partitions=1, ack_wait=4.0, lane_ack_wait=4.0, **nats_namespace
        )
    )
    second.subscribe("orders.*", group="billing")(quick)
    async with first:
        await first.publish("orders.placed", 1, key=key)
        await asyncio.wait_for(started.wait(), 10)
        async with second:
            # twice the group's new wait, short of a third of the first member's own:
            # JetStream would have delivered the event again by now
            await asyncio.sleep(9.0)
            release.set()
            await first.publish("orders.placed", 2, key=key)
            await eventually(lambda: {data for _, data in handled} == {1, 2})
            await asyncio.sleep(5.0)  # a redelivery of either would come by now
    assert sorted(data for _, data in handled) == [1, 2], handled
    assert handled[0] == ("first", 1)


async def test_a_member_away_when_the_waits_changed_learns_them_on_reconnecting(
    proxy: FaultProxy,
    through_proxy: Callable[..., NatsTransport],
    names: dict[str, str],
    nats_url: str,
) -> None:
    """The first member's connection is down while the second joins with 4 s (and
    leaves again): it misses the notice, and reads the consumers' waits when it is back.
    It then gets a slow event (9 s; its own wait is 30 s), handled once."""
    handled: list[Any] = []
    release = asyncio.Event()

    async def slow(event: Event) -> None:
        handled.append(event.data)
        await release.wait()

    transport = through_proxy(partitions=1, ack_wait=30.0, lane_ack_wait=30.0)
    first = EventBus(transport=transport)
    first.subscribe("orders.*", group="billing")(slow)
    async with first:
        proxy.refuse()
        proxy.drop()
        await eventually(lambda: transport.outage() is not None)
        second = EventBus(
            transport=NatsTransport(
                nats_url, partitions=1, ack_wait=4.0, lane_ack_wait=4.0, **names
            )
        )
        second.subscribe("orders.*", group="billing")(lambda event: None)
        async with second:
            pass  # its consumers stay, with its waits
        proxy.heal()
        await eventually(
            lambda: (
                transport.outage() is None
                and transport._restoring is not None
                and transport._restoring.done()
            ),
            timeout=20,
        )
        await first.publish("orders.placed", 1)
        await eventually(lambda: handled == [1])
        await asyncio.sleep(9.0)
        release.set()
        await asyncio.sleep(5.0)  # a redelivery would come by now
    assert handled == [1]


async def test_a_wait_changed_without_a_notice_is_read_again_at_the_first_redelivery(
    nats_url: str, nats_namespace: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Someone shortens the group consumer's wait without telling the members (a member
    of an earlier version, ``nats consumer edit``): the event the running member holds
    comes again once, and that redelivery makes the member read the wait and report at a
    third of it, so it comes no more while the handler runs (12 s against 3 s). Before,
    it came every 3 s until the member's report at 10 s, and again after."""
    import nats

    caplog.set_level(logging.INFO, LOGGER)
    handled: list[Any] = []
    release = asyncio.Event()

    async def slow(event: Event) -> None:
        handled.append(event.data)
        await release.wait()

    member = EventBus(
        transport=NatsTransport(
            nats_url, partitions=1, ack_wait=30.0, lane_ack_wait=30.0, **nats_namespace
        )
    )
    member.subscribe("orders.*", group="billing")(slow)
    nc = await nats.connect(nats_url)
    try:
        async with member:
            await member.publish("orders.placed", 1)
            await eventually(lambda: handled == [1])
            js = nc.jetstream()
            (info,) = [
                i
                for i in await js.consumers_info(nats_namespace["stream"])
                if i.config.max_ack_pending > 1
            ]
            config = info.config
            config.ack_wait = 3.0
            await js.add_consumer(nats_namespace["stream"], config)
            await asyncio.sleep(12.0)
            release.set()
            await asyncio.sleep(4.0)  # one more redelivery would come by now
    finally:
        await nc.close()
    assert handled == [1, 1]  # the first redelivery is not avoidable: nobody said
    assert any(
        "waits 3s for acknowledgements (this member had 30s)" in record.getMessage()
        for record in caplog.records
        if record.name == LOGGER
    )
