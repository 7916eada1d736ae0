"""The bus over NATS JetStream: the conformance suite plus what only a broker shows."""

from __future__ import annotations

import asyncio
import json
import random
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pepperpy.event import (
    ConfigurationError,
    Event,
    EventBus,
    PatternError,
    Transport,
    TransportError,
)
from pepperpy.event.transports.nats import NatsTransport
from pepperpy.event.transports.nats._consumer import parse_reply
from pepperpy.event.transports.nats._subjects import (
    key_lane,
    subject_filter,
    topic_of,
    topic_subject,
)
from tests.bus.conformance import BusConformance
from tests.conftest import unique_name
from tests.helpers import eventually


async def delete_stream(url: str, stream: str) -> None:
    """Remove a test's stream (and with it every consumer on it)."""
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(url)
    try:
        try:
            await nc.jetstream().delete_stream(stream)
        except NotFoundError:
            pass
    finally:
        await nc.close()


@pytest.fixture
async def namespace(nats_url: str) -> AsyncIterator[dict[str, str]]:
    """A stream and subject prefix of its own for one test, deleted afterwards."""
    name = unique_name("pep")
    yield {"stream": name.upper(), "prefix": name}
    await delete_stream(nats_url, name.upper())


@pytest.mark.nats
class TestNatsBus(BusConformance):
    @pytest.fixture
    def transport_factory(
        self, nats_url: str, namespace: dict[str, str]
    ) -> Callable[[], Transport | str]:
        return lambda: NatsTransport(nats_url, ack_wait=5.0, **namespace)


@pytest.mark.nats
class TestNatsBusFromUrl(BusConformance):
    @pytest.fixture
    def transport_factory(
        self, nats_url: str, namespace: dict[str, str]
    ) -> Callable[[], Transport | str]:
        query = "&".join(f"{k}={v}" for k, v in namespace.items())
        return lambda: f"{nats_url}?{query}"


# -- mapping and options (no broker needed) ------------------------------------------


def test_patterns_map_onto_nats_wildcards() -> None:
    exact = subject_filter("p", "_", "a.*.b")
    assert (exact.subject, exact.exact) == ("p._.a.*.b", True)
    assert subject_filter("p", "*", "a.b").subject == "p.*.a.b"
    everything = subject_filter("p", "3", "#")
    assert (everything.subject, everything.exact) == ("p.3.>", True)
    # '#' may match zero tokens, which NATS '>' cannot: broader filter, local check
    tail = subject_filter("p", "_", "a.b.#")
    assert (tail.subject, tail.exact) == ("p._.a.>", False)
    assert tail.accepts("a.b") and tail.accepts("a.b.c.d")
    assert not tail.accepts("a.c")
    middle = subject_filter("p", "_", "a.#.z")
    assert (middle.subject, middle.exact) == ("p._.a.>", False)
    assert middle.accepts("a.z") and middle.accepts("a.b.c.z") and not middle.accepts("a.b")
    leading = subject_filter("p", "_", "#.failed")
    assert leading.subject == "p._.>" and leading.accepts("failed")
    assert not leading.accepts("failed.not")


def test_nats_wildcard_tokens_are_refused_in_topics_and_patterns() -> None:
    with pytest.raises(PatternError, match="NATS wildcard"):
        topic_subject("p", "_", "a.>")
    with pytest.raises(PatternError, match="NATS wildcard"):
        subject_filter("p", "_", "a.>")
    transport = NatsTransport("nats://127.0.0.1:4222")
    with pytest.raises(PatternError):
        transport.subject("a..b")


def test_subjects_carry_prefix_lane_and_topic() -> None:
    transport = NatsTransport("nats://127.0.0.1:4222?prefix=app.events&partitions=4")
    assert transport.subject("users.login") == "app.events._.users.login"
    lane = zlib.crc32(b"order-7") % 4
    assert transport.subject("users.login", "order-7") == f"app.events.{lane}.users.login"
    assert key_lane("order-7", 4) == str(lane)
    assert topic_of("app.events.3.users.login", len("app.events")) == "users.login"


def test_ack_subjects_are_parsed_in_both_formats() -> None:
    assert parse_reply("$JS.ACK.S.C.2.17.5.1700000000.0") == ("C", 2, 17)
    assert parse_reply("$JS.ACK.dom.acchash.S.C.3.18.6.1700000000.0.tok") == ("C", 3, 18)


def test_options_come_from_the_url_and_keywords() -> None:
    transport = NatsTransport(
        "nats://user:pw@127.0.0.1:4222?stream=ORDERS&prefix=orders&ack_wait=2.5&max_age=60",
        max_deliver=3,
    )
    assert transport.server == "nats://user:pw@127.0.0.1:4222"
    assert transport.stream == "ORDERS"
    options = transport.options
    assert (options.prefix, options.ack_wait, options.max_age, options.max_deliver) == (
        "orders",
        2.5,
        60.0,
        3,
    )
    assert NatsTransport("nats://h:1", stream="A").options.retention == "interest"


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("nats://h:1?colour=red", {}, "unknown option 'colour'"),
        ("nats://h:1?ack_wait=soon", {}, "not a number"),
        ("nats://h:1", {"stream": "a.b"}, "stream name"),
        ("nats://h:1", {"prefix": "a..b"}, "prefix"),
        ("nats://h:1", {"prefix": "a.>"}, "prefix"),
        ("nats://h:1", {"retention": "forever"}, "retention"),
        ("nats://h:1", {"partitions": 0}, "partitions"),
        ("nats://h:1", {"partitions": 1000}, "at most"),
        ("nats://h:1", {"ack_wait": -1}, "ack_wait"),
        ("redis://h:1", {}, "not a NATS URL"),
    ],
)
def test_bad_options_raise_configuration_errors(
    url: str, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        NatsTransport(url, **kwargs)


def test_unknown_keywords_are_type_errors() -> None:
    with pytest.raises(TypeError, match="colour"):
        NatsTransport("nats://h:1", colour="red")


def test_the_bus_picks_the_nats_transport_from_the_url() -> None:
    bus = EventBus(transport="nats://127.0.0.1:4222?stream=X")
    assert isinstance(bus.transport, NatsTransport)
    assert bus.transport.stream == "X"


# -- against the broker ------------------------------------------------------------


def make_transport(url: str, namespace: dict[str, str], **options: object) -> NatsTransport:
    return NatsTransport(url, **namespace, **options)  # type: ignore[arg-type]


@pytest.mark.nats
async def test_unreachable_server_is_a_transport_error() -> None:
    bus = EventBus(transport=NatsTransport("nats://127.0.0.1:1", connect_timeout=1.0))
    with pytest.raises(TransportError, match="cannot connect"):
        await bus.start()


@pytest.mark.nats
async def test_a_plain_nats_client_reads_and_writes_cloudevents(
    nats_url: str, namespace: dict[str, str]
) -> None:
    import nats

    prefix = namespace["prefix"]
    bus = EventBus(transport=make_transport(nats_url, namespace))
    got: list[Event] = []
    bus.subscribe("orders.*")(got.append)
    await bus.start()
    nc = await nats.connect(nats_url)
    try:
        plain = await nc.subscribe(f"{prefix}.*.orders.>")
        await nc.flush()
        sent = await bus.publish("orders.created", {"total": 3}, key="o-1")
        raw = await plain.next_msg(timeout=5)
        document = json.loads(raw.data)
        assert document["specversion"] == "1.0"
        assert document["type"] == "orders.created"
        assert document["id"] == sent.id
        assert document["data"] == {"total": 3}
        assert document["partitionkey"] == "o-1"
        assert raw.headers is not None and raw.headers["Nats-Msg-Id"] == sent.id
        # and the other way: a CloudEvent published by a plain JetStream client
        foreign = {
            "specversion": "1.0",
            "id": "ext-1",
            "source": "urn:other-service",
            "type": "orders.shipped",
            "datacontenttype": "application/json",
            "data": {"carrier": "ups"},
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        }
        await nc.jetstream().publish(f"{prefix}._.orders.shipped", json.dumps(foreign).encode())
        await eventually(lambda: len(got) == 2)
    finally:
        await nc.close()
        await bus.close()
    shipped = got[1]
    assert (shipped.type, shipped.id, shipped.source) == (
        "orders.shipped",
        "ext-1",
        "urn:other-service",
    )
    assert shipped.data == {"carrier": "ups"}
    assert shipped.metadata["traceparent"].startswith("00-0af765")


@pytest.mark.nats
async def test_messages_that_are_not_cloudevents_are_dropped_not_redelivered(
    nats_url: str, namespace: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    import nats

    bus = EventBus(transport=make_transport(nats_url, namespace))
    got: list[object] = []
    bus.subscribe("jobs.*", group="workers")(lambda e: got.append(e.data))
    await bus.start()
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(f"{namespace['prefix']}._.jobs.bad", b"not json")
    finally:
        await nc.close()
    await bus.publish("jobs.good", 1)
    await eventually(lambda: got == [1])
    await bus.close()
    assert "not a CloudEvents JSON event" in caplog.text
    info = await stream_info(nats_url, namespace["stream"])
    assert info.state.messages == 0, "the bad message was terminated, the good one acked"


async def stream_info(url: str, stream: str) -> Any:
    import nats

    nc = await nats.connect(url)
    try:
        return await nc.jetstream().stream_info(stream)
    finally:
        await nc.close()


async def consumer_names(url: str, stream: str) -> list[str]:
    import nats

    nc = await nats.connect(url)
    try:
        return [c.name for c in await nc.jetstream().consumers_info(stream)]
    finally:
        await nc.close()


@pytest.mark.nats
async def test_groups_are_durable_and_plain_subscribers_leave_nothing_behind(
    nats_url: str, namespace: dict[str, str]
) -> None:
    first = EventBus(transport=make_transport(nats_url, namespace, partitions=2))
    handled: list[int] = []
    first.subscribe("jobs.*", group="workers")(lambda e: handled.append(e.data))
    first.subscribe("jobs.*")(lambda e: None)
    await first.start()
    names = await consumer_names(nats_url, namespace["stream"])
    assert sum(n.startswith("g_") for n in names) == 3  # unkeyed + 2 key lanes
    assert sum(n.startswith("u_") for n in names) == 1
    await first.close()
    names = await consumer_names(nats_url, namespace["stream"])
    assert len(names) == 3 and all(n.startswith("g_") for n in names)

    # while no member runs, the group's consumers keep what is published for it
    publisher = EventBus(transport=make_transport(nats_url, namespace, partitions=2))
    for n in range(5):
        await publisher.publish("jobs.run", n, key=None if n % 2 else f"k{n}")
    await publisher.close()
    second = EventBus(transport=make_transport(nats_url, namespace, partitions=2))
    second.subscribe("jobs.*", group="workers")(lambda e: handled.append(e.data))
    await second.start()
    await eventually(lambda: len(handled) == 5)
    await second.close()
    assert sorted(handled) == [0, 1, 2, 3, 4]


@pytest.mark.nats
async def test_a_stream_made_with_other_partitions_is_refused(
    nats_url: str, namespace: dict[str, str]
) -> None:
    bus = EventBus(transport=make_transport(nats_url, namespace, partitions=4))
    await bus.start()
    await bus.close()
    other = EventBus(transport=make_transport(nats_url, namespace, partitions=8))
    with pytest.raises(ConfigurationError, match="partitions=4"):
        await other.start()


@pytest.mark.nats
async def test_a_stream_name_taken_for_other_subjects_is_refused(
    nats_url: str, namespace: dict[str, str]
) -> None:
    import nats

    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().add_stream(name=namespace["stream"], subjects=["elsewhere.>"])
    finally:
        await nc.close()
    bus = EventBus(transport=make_transport(nats_url, namespace))
    with pytest.raises(ConfigurationError, match="elsewhere"):
        await bus.start()


@pytest.mark.nats
async def test_per_key_order_holds_across_group_members_on_separate_connections(
    nats_url: str, namespace: dict[str, str]
) -> None:
    """Two buses (two connections, like two processes) share a group; order per key holds."""
    log: list[tuple[str, int]] = []
    by_member: dict[str, int] = {"a": 0, "b": 0}
    buses = [EventBus(transport=make_transport(nats_url, namespace)) for _ in range(2)]
    for member, bus in zip(("a", "b"), buses, strict=True):

        async def work(event: Event, member: str = member) -> None:
            await asyncio.sleep(random.random() / 500)
            by_member[member] += 1
            log.append((event.metadata["partitionkey"], event.data))

        bus.subscribe("acct.*", group="ledger")(work)
        await bus.start()
    keys = [f"account-{i}" for i in range(12)]
    await asyncio.gather(
        *(buses[0].publish("acct.moved", n, key=key) for n in range(25) for key in keys)
    )
    # ``gather`` starts publishes in order; JetStream stores them in that order per key
    await eventually(lambda: len(log) == 25 * len(keys), timeout=20)
    for bus in buses:
        await bus.close()
    for key in keys:
        assert [n for k, n in log if k == key] == list(range(25)), key
    assert by_member["a"] and by_member["b"], "both members took a share"
