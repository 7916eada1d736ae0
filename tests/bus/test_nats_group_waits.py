"""NATS: a group member asking for other ack waits than the group's consumers have.

A group's durable JetStream consumers are shared by its members. Before, a member whose
``ack_wait`` (or ``lane_ack_wait``) differed from the consumers' either changed them for
the whole group without a word (JetStream takes a durable consumer's configuration
again), or, when the server would not take the whole configuration again (a consumer
recreated from a resume point after the server lost it), kept the other member's waits
with an INFO line. Now the member's waits apply in both cases, and it logs one WARNING
naming the old and new waits (docs/transport-nats.md, "Groups with other waits").

On the real server, in a stream of the test's own, deleted afterwards.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from pepperpy.event import Event, EventBus
from pepperpy.event.transports.nats import NatsTransport
from tests.helpers import eventually

pytestmark = pytest.mark.nats

LOGGER = "pepperpy.event.transports.nats"


async def _waits(js: Any, stream: str) -> dict[str, float]:
    """Each consumer's ack_wait: ``unkeyed`` for the group's, ``k<n>`` for its lanes."""
    waits = {}
    for info in await js.consumers_info(stream):
        tail = info.name.rpartition("_")[2]
        waits[tail if tail.startswith("k") else "unkeyed"] = info.config.ack_wait
    return waits


def _member(url: str, nats_namespace: dict[str, str], **waits: float) -> EventBus:
    bus = EventBus(transport=NatsTransport(url, partitions=2, **nats_namespace, **waits))

    async def billing(event: Event) -> None:
        pass

    bus.subscribe("orders.*", group="billing")(billing)
    return bus


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER and record.levelno == logging.WARNING
    ]


async def test_a_member_with_other_waits_sets_them_for_the_group_and_says_so(
    nats_url: str,
    nats_namespace: dict[str, str],
    nats_jetstream: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    first = _member(nats_url, nats_namespace, ack_wait=30.0)  # lanes: min(30, 10)
    async with first:
        assert await _waits(nats_jetstream, nats_namespace["stream"]) == {
            "unkeyed": 30.0,
            "k0": 10.0,
            "k1": 10.0,
        }
        assert _warnings(caplog) == []
        second = _member(nats_url, nats_namespace, ack_wait=5.0, lane_ack_wait=3.0)
        async with second:
            assert await _waits(nats_jetstream, nats_namespace["stream"]) == {
                "unkeyed": 5.0,
                "k0": 3.0,
                "k1": 3.0,
            }
            (warning,) = _warnings(caplog)  # one for the subscription, not one per consumer
            assert "group 'billing'" in warning
            assert "had ack_wait 30s, lane_ack_wait 10s" in warning
            assert "this member's ack_wait 5s, lane_ack_wait 3s now apply to the whole group" in (
                warning
            )
            # a third member with the group's waits changes nothing, and says nothing
            third = _member(nats_url, nats_namespace, ack_wait=5.0, lane_ack_wait=3.0)
            async with third:
                assert len(_warnings(caplog)) == 1


async def test_a_consumer_recreated_from_a_resume_point_takes_the_new_wait_too(
    nats_url: str,
    nats_namespace: dict[str, str],
    nats_jetstream: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A consumer the server lost comes back starting at a sequence (see
    ``Consumer.restore``); JetStream refuses to take a configuration with another deliver
    policy for it, so only its ack_wait is changed."""
    from nats.js.api import DeliverPolicy

    caplog.set_level(logging.INFO, LOGGER)
    stream = nats_namespace["stream"]
    seen: list[Any] = []
    first = EventBus(
        transport=NatsTransport(nats_url, partitions=1, ack_wait=30.0, **nats_namespace)
    )
    first.subscribe("orders.*", group="billing")(lambda event: seen.append(event.data))
    async with first:
        await first.publish("orders.placed", 1)
        await eventually(lambda: seen == [1])
        # what restore() makes of the group's unkeyed consumer after the server lost it
        (info,) = [
            i for i in await nats_jetstream.consumers_info(stream) if i.config.max_ack_pending > 1
        ]
        config = info.config
        await nats_jetstream.delete_consumer(stream, info.name)
        config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = 2
        await nats_jetstream.add_consumer(stream, config)

        second = EventBus(
            transport=NatsTransport(nats_url, partitions=1, ack_wait=5.0, **nats_namespace)
        )
        second.subscribe("orders.*", group="billing")(lambda event: seen.append(event.data))
        async with second:
            kept = await nats_jetstream.consumer_info(stream, info.name)
            assert kept.config.ack_wait == 5.0
            assert kept.config.deliver_policy == DeliverPolicy.BY_START_SEQUENCE
            (warning,) = _warnings(caplog)
            assert "had ack_wait 30s" in warning and "ack_wait 5s now apply" in warning
            # the group still gets its events, once
            await first.publish("orders.placed", 2)
            await eventually(lambda: seen == [1, 2])


async def test_a_member_with_another_max_ack_pending_sets_it_for_the_group_and_says_so(
    nats_url: str,
    nats_namespace: dict[str, str],
    nats_jetstream: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``max_ack_pending`` bounds the group's unkeyed events in flight, all members
    together; a member that asks for another changes it for every member (JetStream
    takes a durable consumer's new limit). It did so without a word: one member
    configured with 10 to go easy on its own host throttled the whole group."""
    caplog.set_level(logging.INFO, LOGGER)

    async def unkeyed_limit() -> int:
        infos = await nats_jetstream.consumers_info(nats_namespace["stream"])
        (info,) = [i for i in infos if not i.name.rpartition("_")[2].startswith("k")]
        return int(info.config.max_ack_pending)

    first = _member(nats_url, nats_namespace)
    async with first:
        assert await unkeyed_limit() == 1000
        second = EventBus(
            transport=NatsTransport(nats_url, partitions=2, max_ack_pending=10, **nats_namespace)
        )
        second.subscribe("orders.*", group="billing")(lambda event: None)
        async with second:
            assert await unkeyed_limit() == 10
    (warning,) = _warnings(caplog)
    assert "group 'billing'" in warning
    assert "let 1000 unkeyed events be in flight at once" in warning
    assert "this member's max_ack_pending=10 now applies to the whole group" in warning
