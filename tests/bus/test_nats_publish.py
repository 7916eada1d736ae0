"""NATS publishing: message ids, subject and payload limits, a client the server closed.

Each test has a stream and subject prefix of its own, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import (
    ConfigurationError,
    Event,
    EventBus,
    PatternError,
    TransportError,
)
from pepperpy.event.transports.nats import NatsTransport
from pepperpy.event.transports.nats import _transport as nats_transport
from pepperpy.event.transports.nats._subjects import MAX_SUBJECT_BYTES, topic_subject
from tests.bus.faultproxy import FaultProxy, finishes, tasks_left
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


# -- subjects NATS cannot carry, and a connection the server closed ----------------


async def test_a_subject_too_long_for_nats_is_refused_before_it_reaches_the_server(
    nats_url: str, names: dict[str, str]
) -> None:
    """The server would answer -ERR and close the connection for good."""
    bus = EventBus(transport=NatsTransport(nats_url, **names))
    got: list[str] = []
    bus.subscribe("ok.*")(lambda event: got.append(event.type))
    long_topic = "L." + ".".join(["abcdefghi"] * 420)  # 4,202 bytes
    with pytest.raises(PatternError):
        bus.subscribe(long_topic + ".*")(lambda event: None)
    async with bus:
        with pytest.raises(PatternError):
            await finishes(bus.publish(long_topic, 1), 1)
        await bus.publish("ok.after", 2)  # the connection is fine
        await eventually(lambda: got == ["ok.after"])


def test_subjects_are_bounded_whatever_the_topic_limit() -> None:
    with pytest.raises(ConfigurationError, match="at most 256"):
        NatsTransport("nats://127.0.0.1:4222", prefix="p" * 257)
    room = MAX_SUBJECT_BYTES - 256 - len(".63.")
    assert topic_subject("p" * 256, "63", "a" * 1000).endswith("a" * 1000)
    with pytest.raises(PatternError):
        topic_subject("p" * 256, "_", "a" * (room + 1))


async def test_a_connection_the_server_closed_is_replaced_and_said_so_once(
    nats_url: str, names: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """nats-py never reopens a client the server closed with -ERR; the transport does."""
    caplog.set_level(logging.INFO, logger="pepperpy.event.transports.nats")
    before = set(asyncio.all_tasks())
    transport = NatsTransport(nats_url, reconnect_wait=0.2, **names)
    bus = EventBus(transport=transport)
    grouped: list[Any] = []
    alone: list[Any] = []
    bus.subscribe("jobs.*", group="workers")(lambda event: grouped.append(event.data))
    bus.subscribe("jobs.*")(lambda event: alone.append(event.data))
    other = EventBus(transport=NatsTransport(nats_url, **names))
    async with bus, other:
        await bus.publish("jobs.run", "before")
        await eventually(lambda: "before" in grouped and "before" in alone)
        closed = transport._nc
        assert closed is not None
        # any -ERR closes the client: here a protocol line over max_control_line
        await closed.publish("x." + "a" * 5000, b"")
        await eventually(lambda: closed.is_closed)
        await bus.publish("jobs.run", "own")  # waits for the new client
        await other.publish("jobs.run", "other")  # and the subscriptions moved to it
        await eventually(lambda: {"own", "other"} <= set(grouped) & set(alone))
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "closed the connection for good" in errors[0]
    assert "maximum control line exceeded" in errors[0]
    assert "reconnecting" not in caplog.text  # nats-py's closed client does not
    assert grouped.count("own") == alone.count("own") == 1
    await settle(0.1)
    assert tasks_left(before) == []


async def test_publish_says_why_while_a_closed_connection_cannot_be_replaced(
    nats_url: str, names: dict[str, str]
) -> None:
    async with FaultProxy(4222) as proxy:
        transport = NatsTransport(
            f"nats://127.0.0.1:{proxy.port}",
            reconnect_wait=0.2,
            connect_timeout=1.0,
            publish_timeout=1.0,
            **names,
        )
        bus = EventBus(transport=transport)
        got: list[Any] = []
        bus.subscribe("jobs.*", group="workers")(lambda event: got.append(event.data))
        async with bus:
            closed = transport._nc
            assert closed is not None
            proxy.refuse()  # no new connection gets through for now
            await closed.publish("x." + "a" * 5000, b"")
            await eventually(lambda: closed.is_closed)
            with pytest.raises(TransportError, match="maximum control line exceeded") as caught:
                await finishes(bus.publish("jobs.run", 1), 5)
            assert "closed the connection" in str(caught.value)
            proxy.heal()
            deadline = time.monotonic() + 20
            while True:  # the transport keeps trying, and gets through
                try:
                    await bus.publish("jobs.run", 2)
                    break
                except TransportError:
                    assert time.monotonic() < deadline, "never connected a new client"
            await eventually(lambda: 2 in got)


# -- the server's max_payload ---------------------------------------------------------


def event_of_size(size: int, topic: str = "big.one") -> Event:
    """An event whose CloudEvents JSON is exactly ``size`` bytes."""
    event = Event(topic, {"blob": ""})
    return event.replace(data={"blob": "x" * (size - len(event.to_json()))})


async def test_an_event_over_max_payload_is_refused_naming_size_and_limit(
    nats_url: str, names: dict[str, str]
) -> None:
    transport = NatsTransport(nats_url, **names)
    bus = EventBus(transport=transport)
    got: list[int] = []
    bus.subscribe("big.*")(lambda event: got.append(len(event.to_json())))
    async with bus:
        assert transport._nc is not None
        limit = transport._nc.max_payload
        # the JSON alone fits (nats-py lets it through), with the header it does not:
        # the server would answer -ERR and close the connection
        for size in (limit - 10, 3 * limit):
            with pytest.raises(TransportError, match=f"max_payload of {limit:,} bytes") as caught:
                await finishes(bus.publish("big.one", event_of_size(size)), 2)
            said = re.search(r"it is ([\d,]+) bytes", str(caught.value))
            assert said is not None  # the JSON, the header (27 bytes) and the id in it
            assert size + 27 < int(said.group(1).replace(",", "")) < size + 27 + 40
        fits = event_of_size(limit - 200)
        await bus.publish("big.one", fits)  # the connection is fine
        await eventually(lambda: got == [len(fits.to_json())])


async def test_a_dead_letter_over_max_payload_is_logged_and_dropped(
    nats_url: str, names: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Its metadata makes it larger than the event: stored nowhere, it is not retried."""
    transport = NatsTransport(nats_url, retention="limits", **names)
    async with EventBus(transport=transport):
        assert transport._nc is not None
        event = event_of_size(transport._nc.max_payload - 100, topic="jobs.poison")
        await transport._dead_letter(event, "kept failing", 5, "crunch", "g_c.7.1")
    assert "cannot dead-letter jobs.poison" in caplog.text
    assert "max_payload" in caplog.text
    assert await stored(nats_url, names["stream"]) == 0
