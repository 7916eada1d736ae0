"""NATS: messages the consumer cannot decode, however they fail, never stop consumption.

Each test has a stream and subject prefix of its own, deleted afterwards.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import Event, EventBus
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.conftest import TRAP
from tests.conftest import unique_name
from tests.helpers import eventually, settle

pytestmark = pytest.mark.nats


@pytest.fixture
async def names(nats_url: str) -> AsyncIterator[dict[str, str]]:
    name = unique_name("pep_bad")
    yield {"stream": name.upper(), "prefix": name}
    await NatsTransport(nats_url, stream=name.upper()).delete_stream()


async def publish_raw(url: str, subject: str, *bodies: bytes) -> None:
    """Store ``bodies`` on ``subject`` with a plain JetStream client."""
    import nats

    nc = await nats.connect(url)
    try:
        for body in bodies:
            await nc.jetstream().publish(subject, body)
    finally:
        await nc.close()


@pytest.mark.usefixtures("decoder_that_breaks")
async def test_any_decoding_failure_terminates_the_message_and_its_lane_goes_on(
    nats_url: str, names: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="pepperpy.event.transports.nats")
    bus = EventBus(transport=NatsTransport(nats_url, partitions=1, **names))
    got: list[Any] = []
    bus.subscribe("jobs.*", group="workers")(lambda event: got.append(event.data))
    async with bus:
        # on the only key lane, which has one message in flight at a time
        await publish_raw(nats_url, f"{names['prefix']}.0.jobs.bad", TRAP, TRAP, TRAP)
        await bus.publish("jobs.good", 1, key="k")
        await eventually(lambda: got == [1])
    dropped = [r for r in caplog.records if "not a CloudEvents JSON event" in r.getMessage()]
    assert len(dropped) == 3
    assert all(r.exc_info is not None for r in dropped)  # unexpected: logged with where


async def test_an_event_whose_partition_key_is_not_a_string_is_delivered(
    nats_url: str, names: dict[str, str]
) -> None:
    """Another publisher's CloudEvent may carry any JSON value as ``partitionkey``."""
    bus = EventBus(transport=NatsTransport(nats_url, **names))
    got: list[Event] = []
    bus.subscribe("jobs.*")(got.append)
    async with bus:
        foreign = {
            "specversion": "1.0",
            "id": "ext-1",
            "source": "urn:other",
            "type": "jobs.listed",
            "partitionkey": [1, 2],
        }
        await publish_raw(
            nats_url, f"{names['prefix']}._.jobs.listed", json.dumps(foreign).encode()
        )
        await eventually(lambda: len(got) == 1)
    assert got[0].id == "ext-1" and got[0].metadata["partitionkey"] == [1, 2]


async def test_a_message_jetstream_did_not_deliver_is_ignored(
    nats_url: str, names: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    import nats

    transport = NatsTransport(nats_url, **names)
    bus = EventBus(transport=transport)
    got: list[Any] = []
    bus.subscribe("jobs.*", group="workers")(lambda event: got.append(event.data))
    async with bus:
        consumer = next(iter(transport._consumers.values()))
        nc = await nats.connect(nats_url)
        try:  # a core NATS publish straight to the group's deliver subject
            deliver = consumer.lanes[0].deliver_subject
            await nc.publish(deliver, TRAP, reply="not.an.ack")
            await nc.flush()
        finally:
            await nc.close()
        await bus.publish("jobs.good", 1)
        await eventually(lambda: got == [1])
        await settle(0.2)
    assert "that JetStream did not deliver" in caplog.text
    assert "NATS connection error" not in caplog.text


class FakeMsg:
    """What the consumer uses of a nats-py message; records how it was settled."""

    def __init__(self, data: bytes, deliveries: int) -> None:
        self.subject = "p.0.jobs.run"
        self.reply = f"$JS.ACK.S.g_x_k0.{deliveries}.17.5.1700000000000000000.0"
        self.data = data
        self.settled: list[str] = []

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nak(self) -> None:
        self.settled.append("nak")

    async def term(self) -> None:
        self.settled.append("term")


async def test_a_dead_letter_that_cannot_be_published_leaves_the_event_for_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Unsettled, JetStream delivers it again after ack_wait; nothing escapes the consumer."""
    from pepperpy.event import TransportError
    from pepperpy.event.transports.nats._consumer import Consumer
    from pepperpy.event.transports.nats._options import NatsOptions

    async def dead_letter(*args: Any) -> None:
        raise TransportError("JetStream did not accept an event within 20s")

    consumer = Consumer(
        nc=None,  # type: ignore[arg-type]  # not used by a group consumer's delivery path
        js=None,  # type: ignore[arg-type]
        stream="S",
        name="g_x",
        group="workers",
        pattern="jobs.*",
        prefix="p",
        options=NatsOptions(max_deliveries=2, partitions=1),
        dead_letter=dead_letter,
    )
    poison = FakeMsg(Event("jobs.run", 1).to_json(), deliveries=3)
    await consumer._on_message(poison)  # type: ignore[arg-type]
    assert poison.settled == []
    assert "could not dead-letter jobs.run" in caplog.text
