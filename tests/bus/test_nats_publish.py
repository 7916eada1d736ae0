"""NATS publishing: message ids, subject and payload limits, a client the server closed.

Each test has a stream and subject prefix of its own, deleted afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import Event, EventBus
from pepperpy.event.transports.nats import NatsTransport
from pepperpy.event.transports.nats import _transport as nats_transport
from tests.conftest import unique_name
from tests.helpers import eventually, settle

pytestmark = pytest.mark.nats


@pytest.fixture
async def names(nats_url: str) -> AsyncIterator[dict[str, str]]:
    name = unique_name("pep_pub")
    yield {"stream": name.upper(), "prefix": name}
    await NatsTransport(nats_url, stream=name.upper()).delete_stream()


async def stored(url: str, stream: str) -> int:
    """How many messages ``stream`` holds."""
    import nats

    nc = await nats.connect(url)
    try:
        return int((await nc.jetstream().stream_info(stream)).state.messages)
    finally:
        await nc.close()


# -- message ids ----------------------------------------------------------------------


async def test_one_event_published_again_or_forwarded_is_stored_each_time(
    nats_url: str, names: dict[str, str]
) -> None:
    """JetStream drops a message id it saw within 2 minutes: the event id cannot be it."""
    bus = EventBus(transport=NatsTransport(nats_url, **names))
    got: list[str] = []
    bus.subscribe("relay.#")(lambda event: got.append(event.type))

    @bus.subscribe("orders.created")
    async def relay(event: Event) -> None:  # forwards the event it received, as it is
        await bus.publish("relay.orders", event)

    async with bus:
        event = Event("relay.a", {"n": 1})
        await bus.publish("relay.a", event)
        await bus.publish("relay.b", event)  # the same id, another topic
        await bus.publish("relay.a", event)  # the same event again, on purpose
        await bus.publish("orders.created", {"n": 2})
        await eventually(lambda: len(got) == 4)
        await settle(0.3)
    assert sorted(got) == ["relay.a", "relay.a", "relay.b", "relay.orders"]


async def test_a_retry_after_a_lost_puback_is_stored_once(
    nats_url: str, names: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retries of one publish() reuse its message id: JetStream keeps the first."""
    real_store = nats_transport._store
    calls: list[str] = []

    async def store_then_lose_the_ack(
        nc: Any, subject: str, payload: bytes, msg_id: str, wait: float
    ) -> None:
        calls.append(msg_id)
        await real_store(nc, subject, payload, msg_id, wait)  # stored...
        if len(calls) == 1:
            raise TimeoutError("PubAck lost")  # ...but the publisher never hears of it

    monkeypatch.setattr(nats_transport, "_store", store_then_lose_the_ack)
    bus = EventBus(transport=NatsTransport(nats_url, retention="limits", **names))
    got: list[Event] = []
    bus.subscribe("jobs.*")(got.append)
    async with bus:
        await bus.publish("jobs.run", 1)
        await eventually(lambda: len(got) == 1)
        await settle(0.3)
    assert len(calls) == 2 and calls[0] == calls[1]
    assert len(got) == 1
    assert await stored(nats_url, names["stream"]) == 1


async def test_one_dead_letter_per_stored_message_even_if_sent_twice(
    nats_url: str, names: dict[str, str]
) -> None:
    transport = NatsTransport(nats_url, retention="limits", **names)
    bus = EventBus(transport=transport)
    async with bus:
        event = Event("jobs.poison", {"n": 1})
        # two publications of one event, each given up on by the group's consumer; the
        # first one's dead letter is sent twice (its acknowledgement was lost, say)
        for message in ("g_c.7.1700000000000000000", "g_c.7.1700000000000000000", "g_c.9.1"):
            await transport._dead_letter(event, "kept failing", 5, "crunch", message)
    assert await stored(nats_url, names["stream"]) == 2


def test_a_stored_message_is_named_by_consumer_sequence_and_time() -> None:
    from pepperpy.event.transports.nats._consumer import message_identity

    assert message_identity("$JS.ACK.S.C.2.17.5.1700000000.0") == "C.17.1700000000"
    assert message_identity("$JS.ACK.dom.hash.S.C.3.18.6.1700000000.0.tok") == "C.18.1700000000"
