"""The bus over NATS JetStream: the conformance suite plus what only a broker shows."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import re
import shutil
import socket
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pepperpy.event import (
    ConfigurationError,
    Event,
    EventBus,
    MissingDependencyError,
    PatternError,
    Transport,
    TransportError,
    matches,
)
from pepperpy.event.transports.nats import NatsTransport
from pepperpy.event.transports.nats._consumer import parse_reply, stored_at
from pepperpy.event.transports.nats._subjects import (
    key_lane,
    subject_filter,
    topic_of,
    topic_subject,
)
from tests.bus.conformance import BusConformance
from tests.bus.nats_fixtures import delete_stream
from tests.conftest import IN_CI, unique_name
from tests.helpers import eventually


@pytest.mark.nats
class TestNatsBus(BusConformance):
    @pytest.fixture
    def transport_factory(
        self, nats_url: str, nats_namespace: dict[str, str]
    ) -> Callable[[], Transport | str]:
        return lambda: NatsTransport(nats_url, ack_wait=5.0, **nats_namespace)


@pytest.mark.nats
class TestNatsBusFromUrl(BusConformance):
    @pytest.fixture
    def transport_factory(
        self, nats_url: str, nats_namespace: dict[str, str]
    ) -> Callable[[], Transport | str]:
        query = "&".join(f"{k}={v}" for k, v in nats_namespace.items())
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


def nats_subject_matches(filter_subject: str, subject: str) -> bool:
    """NATS's own rule: ``*`` is one token, a final ``>`` one or more."""
    wanted, tokens = filter_subject.split("."), subject.split(".")
    for i, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > i
        if i >= len(tokens) or (token != "*" and token != tokens[i]):
            return False
    return len(tokens) == len(wanted)


@given(
    pattern=st.lists(st.sampled_from(["a", "b", "*", "#"]), min_size=1, max_size=4),
    topic=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=5),
    lane=st.sampled_from(["_", "3"]),
)
def test_broker_filter_plus_local_check_is_exactly_the_pattern(
    pattern: list[str], topic: list[str], lane: str
) -> None:
    """What JetStream delivers and the consumer accepts is what ``matches`` says."""
    text, name = ".".join(pattern), ".".join(topic)
    subject_filter_ = subject_filter("p", lane, text)
    subject = topic_subject("p", lane, name)
    delivered = nats_subject_matches(subject_filter_.subject, subject)
    assert (delivered and subject_filter_.accepts(name)) == matches(text, name)
    if subject_filter_.exact:
        assert delivered == matches(text, name)


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
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    nanoseconds = int(moment.timestamp()) * 10**9
    assert stored_at(f"$JS.ACK.S.C.2.17.5.{nanoseconds}.0") == moment
    assert stored_at(f"$JS.ACK.dom.acchash.S.C.3.18.6.{nanoseconds}.0.tok") == moment


def test_options_come_from_the_url_and_keywords() -> None:
    transport = NatsTransport(
        "nats://user:pw@127.0.0.1:4222?stream=ORDERS&prefix=orders&ack_wait=2.5&max_age=60",
        max_deliver=3,
    )
    assert transport.servers == ["nats://user:pw@127.0.0.1:4222"]  # what connects
    assert transport.server == "nats://user:***@127.0.0.1:4222"  # what messages show
    assert transport.stream == "ORDERS"
    options = transport.options
    assert (options.prefix, options.ack_wait, options.max_age, options.max_deliver) == (
        "orders",
        2.5,
        60.0,
        3,
    )
    assert NatsTransport("nats://h:1", stream="A").options.retention == "interest"
    cluster = NatsTransport("nats://a:4222, tls://b:4223?stream=C")
    assert cluster.servers == ["nats://a:4222", "tls://b:4223"]
    assert cluster.stream == "C"


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("nats://h:1?colour=red", {}, "unknown parameter 'colour' in the NATS URL"),
        ("nats://h:1?ack_wait=soon", {}, "ack_wait must be a number of seconds in decimal digits"),
        ("nats://h:1", {"stream": "a.b"}, "stream name"),
        ("nats://h:1", {"prefix": "a..b"}, "prefix"),
        ("nats://h:1", {"prefix": "a.>"}, "prefix"),
        ("nats://h:1", {"retention": "forever"}, "retention"),
        ("nats://h:1", {"partitions": 0}, "partitions"),
        ("nats://h:1", {"partitions": 1000}, "at most"),
        ("nats://h:1", {"ack_wait": -1}, "ack_wait"),
        ("redis://h:1", {}, "not a NATS URL"),
        ("nats://a:1,b:2", {}, "not a NATS URL"),
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


def test_without_nats_py_making_the_bus_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the bus is made, as on redis:// and amqp:// (not half-way through start())."""
    monkeypatch.setitem(sys.modules, "nats", None)  # as if nats-py were not installed
    with pytest.raises(MissingDependencyError, match=r"pepperpy-event\[nats\]"):
        EventBus(transport="nats://127.0.0.1:4222")


def test_the_bus_picks_the_nats_transport_from_the_url() -> None:
    bus = EventBus(transport="nats://127.0.0.1:4222?stream=X")
    assert isinstance(bus.transport, NatsTransport)
    assert bus.transport.stream == "X"


# -- against the broker ------------------------------------------------------------


def make_transport(url: str, nats_namespace: dict[str, str], **options: object) -> NatsTransport:
    return NatsTransport(url, **nats_namespace, **options)  # type: ignore[arg-type]


@pytest.mark.nats
async def test_unreachable_server_is_a_transport_error() -> None:
    bus = EventBus(transport=NatsTransport("nats://127.0.0.1:1", connect_timeout=1.0))
    with pytest.raises(TransportError, match="cannot connect"):
        await bus.start()


async def registered_subscription(nc: Any, subject: str) -> Any:
    """A core NATS subscription the server has registered: it gets whatever is published next.

    ``flush()`` right after ``subscribe()`` does not promise that with nats-py (2.16):
    ``flush`` writes its PING straight to the socket while the SUB is still in the
    client's pending buffer (the flusher task sends it a moment later), so the PONG can
    come back, and another connection publish, before the server saw the SUB; that
    message is then lost. A message this connection publishes to itself is queued
    behind the SUB, and the server handles a connection's commands in order, so once
    its echo arrives the SUB has been registered.
    """
    sub = await nc.subscribe(subject)
    probe = nc.new_inbox()
    echo = await nc.subscribe(probe)
    await nc.publish(probe, b"")
    await echo.next_msg(timeout=10)
    await echo.unsubscribe()
    return sub


@pytest.mark.nats
async def test_a_plain_nats_client_reads_and_writes_cloudevents(
    nats_url: str, nats_namespace: dict[str, str]
) -> None:
    import nats

    prefix = nats_namespace["prefix"]
    bus = EventBus(transport=make_transport(nats_url, nats_namespace))
    got: list[Event] = []
    bus.subscribe("orders.*")(got.append)
    await bus.start()
    nc = await nats.connect(nats_url)
    try:
        plain = await registered_subscription(nc, f"{prefix}.*.orders.>")
        sent = await bus.publish("orders.created", {"total": 3}, key="o-1")
        raw = await plain.next_msg(timeout=5)
        document = json.loads(raw.data)
        assert document["specversion"] == "1.0"
        assert document["type"] == "orders.created"
        assert document["id"] == sent.id
        assert document["data"] == {"total": 3}
        assert document["partitionkey"] == "o-1"
        # one per publish() call, not the event id (tests/bus/test_nats_publish.py)
        assert raw.headers is not None and raw.headers["Nats-Msg-Id"] != sent.id
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
    nats_url: str, nats_namespace: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    import nats

    bus = EventBus(transport=make_transport(nats_url, nats_namespace))
    got: list[object] = []
    bus.subscribe("jobs.*", group="workers")(lambda e: got.append(e.data))
    await bus.start()
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(f"{nats_namespace['prefix']}._.jobs.bad", b"not json")
    finally:
        await nc.close()
    await bus.publish("jobs.good", 1)
    await eventually(lambda: got == [1])
    await bus.close()
    assert "not a CloudEvents JSON event" in caplog.text
    info = await stream_info(nats_url, nats_namespace["stream"])
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
    nats_url: str, nats_namespace: dict[str, str]
) -> None:
    first = EventBus(transport=make_transport(nats_url, nats_namespace, partitions=2))
    handled: list[int] = []
    first.subscribe("jobs.*", group="workers")(lambda e: handled.append(e.data))
    first.subscribe("jobs.*")(lambda e: None)
    await first.start()
    names = await consumer_names(nats_url, nats_namespace["stream"])
    assert sum(n.startswith("g_") for n in names) == 3  # unkeyed + 2 key lanes
    assert sum(n.startswith("u_") for n in names) == 1
    await first.close()
    names = await consumer_names(nats_url, nats_namespace["stream"])
    assert len(names) == 3 and all(n.startswith("g_") for n in names)

    # while no member runs, the group's consumers keep what is published for it
    publisher = EventBus(transport=make_transport(nats_url, nats_namespace, partitions=2))
    for n in range(5):
        await publisher.publish("jobs.run", n, key=None if n % 2 else f"k{n}")
    await publisher.close()
    second = EventBus(transport=make_transport(nats_url, nats_namespace, partitions=2))
    second.subscribe("jobs.*", group="workers")(lambda e: handled.append(e.data))
    await second.start()
    await eventually(lambda: len(handled) == 5)
    await second.close()
    assert sorted(handled) == [0, 1, 2, 3, 4]


@pytest.mark.nats
async def test_delete_stream_removes_events_and_consumers(
    nats_url: str, nats_namespace: dict[str, str]
) -> None:
    transport = make_transport(nats_url, nats_namespace)
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*", group="workers")(lambda e: None)
    await bus.start()
    await bus.close()
    from nats.js.errors import NotFoundError

    assert await transport.delete_stream() is True
    with pytest.raises(NotFoundError):
        await stream_info(nats_url, nats_namespace["stream"])
    assert await transport.delete_stream() is False


@pytest.mark.nats
async def test_a_literal_nats_wildcard_token_is_refused_when_subscribing(
    nats_url: str, nats_namespace: dict[str, str]
) -> None:
    bus = EventBus(transport=make_transport(nats_url, nats_namespace))
    with pytest.raises(PatternError, match="NATS wildcard"):  # refused where it is written
        bus.subscribe("alerts.>")(lambda e: None)  # a literal '>' token in our language
    await bus.start()  # nothing was registered: the bus starts and works
    await bus.close()
    publisher = EventBus(transport=make_transport(nats_url, nats_namespace))
    with pytest.raises(PatternError, match="NATS wildcard"):
        await publisher.publish("alerts.>", 1)
    await publisher.close()


@pytest.mark.nats
async def test_an_event_jetstream_refuses_is_a_transport_error(
    nats_url: str, nats_namespace: dict[str, str]
) -> None:
    import nats

    nc = await nats.connect(nats_url)
    try:  # an operator's stream for our subjects, with a small message size limit
        await nc.jetstream().add_stream(
            name=nats_namespace["stream"],
            subjects=[f"{nats_namespace['prefix']}.>"],
            max_msg_size=512,
        )
    finally:
        await nc.close()
    bus = EventBus(transport=make_transport(nats_url, nats_namespace))
    await bus.publish("jobs.small", "x")
    with pytest.raises(TransportError, match="refused") as caught:
        await bus.publish("jobs.big", "x" * 1000)
    assert "size" in str(caught.value)
    await bus.close()


@pytest.mark.nats
async def test_a_stream_made_with_other_partitions_is_refused(
    nats_url: str, nats_namespace: dict[str, str]
) -> None:
    bus = EventBus(transport=make_transport(nats_url, nats_namespace, partitions=4))
    await bus.start()
    await bus.close()
    other = EventBus(transport=make_transport(nats_url, nats_namespace, partitions=8))
    with pytest.raises(ConfigurationError, match="partitions=4"):
        await other.start()


@pytest.mark.nats
async def test_a_stream_name_taken_for_other_subjects_is_refused(
    nats_url: str, nats_namespace: dict[str, str]
) -> None:
    import nats

    nc = await nats.connect(nats_url)
    try:
        elsewhere = f"{nats_namespace['prefix']}_elsewhere.>"
        await nc.jetstream().add_stream(name=nats_namespace["stream"], subjects=[elsewhere])
    finally:
        await nc.close()
    bus = EventBus(transport=make_transport(nats_url, nats_namespace))
    with pytest.raises(ConfigurationError, match="elsewhere"):
        await bus.start()


@pytest.mark.nats
async def test_per_key_order_holds_across_group_members_on_separate_connections(
    nats_url: str, nats_namespace: dict[str, str]
) -> None:
    """Two buses (two connections, like two processes) share a group; order per key holds."""
    log: list[tuple[str, int]] = []
    by_member: dict[str, int] = {"a": 0, "b": 0}
    buses = [EventBus(transport=make_transport(nats_url, nats_namespace)) for _ in range(2)]
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


@pytest.mark.nats
@pytest.mark.slow
async def test_a_handler_slower_than_ack_wait_is_not_redelivered(
    nats_url: str, nats_namespace: dict[str, str]
) -> None:
    """In-progress acks keep a slow event with its member instead of a second one."""
    calls: list[str] = []
    buses = [
        EventBus(transport=make_transport(nats_url, nats_namespace, ack_wait=1.0)) for _ in "ab"
    ]
    for member, bus in zip("ab", buses, strict=True):

        async def slow(event: Event, member: str = member) -> None:
            calls.append(member)
            await asyncio.sleep(2.5)

        bus.subscribe("jobs.*", group="crunch")(slow)
        await bus.start()
    await buses[0].publish("jobs.run", 1)
    await eventually(lambda: len(calls) == 1)
    await asyncio.sleep(3.0)  # three ack_waits: a redelivery would have happened
    for bus in buses:
        await bus.close()
    assert len(calls) == 1


# -- processes dying, brokers restarting ---------------------------------------------

REPO = Path(__file__).resolve().parents[2]


class Worker:
    """A ``tests.bus.nats_worker`` process in a group, recording what it handled."""

    def __init__(self, process: asyncio.subprocess.Process, out: Path) -> None:
        self.process = process
        self.out = out

    @classmethod
    async def start(
        cls,
        url: str,
        nats_namespace: dict[str, str],
        pattern: str,
        group: str,
        out: Path,
        *options: str,
    ) -> Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.bus.nats_worker",
            url,
            nats_namespace["stream"],
            nats_namespace["prefix"],
            pattern,
            group,
            str(out),
            *options,
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        assert line.strip() == b"ready", line
        return cls(process, out)

    def handled(self) -> list[int]:
        if not self.out.exists():
            return []
        lines = self.out.read_text().splitlines()
        return [int(line.split()[0]) for line in lines if line.endswith(str(self.process.pid))]

    async def kill(self) -> None:
        self.process.kill()
        await self.process.wait()

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), timeout=30)


@pytest.fixture
async def workers() -> AsyncIterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.process.returncode is None:
            await worker.kill()


@pytest.mark.nats
@pytest.mark.slow
async def test_an_event_whose_consumer_died_mid_handler_reaches_another_member(
    nats_url: str, nats_namespace: dict[str, str], tmp_path: Path, workers: list[Worker]
) -> None:
    worker = await Worker.start(
        nats_url, nats_namespace, "jobs.*", "crunch", tmp_path / "out", "--hang", "--ack-wait", "1"
    )
    workers.append(worker)
    bus = EventBus(transport=make_transport(nats_url, nats_namespace, ack_wait=1.0))
    sent = await bus.publish("jobs.run", {"n": 7})
    await eventually(lambda: worker.handled() == [7])
    await worker.kill()  # SIGKILL in the middle of the handler: never acknowledged
    got: list[Event] = []
    bus.subscribe("jobs.*", group="crunch")(got.append)
    await bus.start()
    await eventually(lambda: len(got) == 1, timeout=15)
    await bus.close()
    assert got[0].id == sent.id and got[0].data == {"n": 7}


@pytest.mark.nats
@pytest.mark.slow
async def test_an_event_that_keeps_killing_its_consumers_is_dead_lettered(
    nats_url: str, nats_namespace: dict[str, str], tmp_path: Path, workers: list[Worker]
) -> None:
    options = ("--hang", "--ack-wait", "1", "--max-deliver", "2")
    bus = EventBus(transport=make_transport(nats_url, nats_namespace, ack_wait=1.0, max_deliver=2))
    dead: list[Event] = []
    bus.subscribe("deadletter.#")(dead.append)
    await bus.start()
    sent: Event | None = None
    for attempt in range(2):  # each delivery kills the process handling it
        worker = await Worker.start(
            nats_url, nats_namespace, "jobs.*", "crunch", tmp_path / f"out{attempt}", *options
        )
        workers.append(worker)
        if sent is None:  # once the group exists
            sent = await bus.publish("jobs.poison", {"n": 1}, key="k")
        await eventually(lambda worker=worker: worker.handled() == [1], timeout=15)
        await worker.kill()
    survivor = await Worker.start(
        nats_url, nats_namespace, "jobs.*", "crunch", tmp_path / "survivor", *options
    )
    workers.append(survivor)
    await eventually(lambda: len(dead) == 1, timeout=15)
    await survivor.stop()
    await bus.close()
    assert survivor.handled() == [], "the third delivery went to the dead-letter topic"
    letter = dead[0]
    assert letter.type == "deadletter.jobs.poison"
    assert sent is not None and letter.metadata["dlid"] == sent.id
    assert letter.metadata["dlattempts"] == 2
    assert letter.metadata["dlgroup"] == "crunch"
    assert "without being acknowledged" in letter.metadata["dlreason"]
    assert letter.metadata["partitionkey"] == "k"


@pytest.mark.nats
@pytest.mark.slow
async def test_a_killed_plain_subscriber_leaves_no_consumer_behind(
    nats_url: str, nats_namespace: dict[str, str], tmp_path: Path, workers: list[Worker]
) -> None:
    bus = EventBus(transport=make_transport(nats_url, nats_namespace))
    await bus.start()  # creates the stream
    worker = await Worker.start(
        nats_url, nats_namespace, "jobs.*", "-", tmp_path / "out", "--inactive-threshold", "1"
    )
    workers.append(worker)
    await bus.publish("jobs.run", {"n": 1})
    await eventually(lambda: worker.handled() == [1])
    assert len(await consumer_names(nats_url, nats_namespace["stream"])) == 1
    await worker.kill()  # no chance to delete its consumer: JetStream expires it

    async def consumers_left() -> int:
        return len(await consumer_names(nats_url, nats_namespace["stream"]))

    for _ in range(100):
        if await consumers_left() == 0:
            break
        await asyncio.sleep(0.1)
    assert await consumers_left() == 0
    await bus.publish("jobs.run", {"n": 2})  # interest retention: nobody wants it
    await bus.close()
    assert (await stream_info(nats_url, nats_namespace["stream"])).state.messages == 0


@pytest.mark.nats
@pytest.mark.slow
async def test_three_workers_one_killed_midway_process_every_event(
    nats_url: str, nats_namespace: dict[str, str], tmp_path: Path, workers: list[Worker]
) -> None:
    total = 10_000
    for i in range(3):
        workers.append(
            await Worker.start(nats_url, nats_namespace, "jobs.*", "crunch", tmp_path / f"w{i}")
        )
    publisher = EventBus(transport=make_transport(nats_url, nats_namespace))
    victim = workers[0]

    async def kill_midway() -> None:
        await eventually(lambda: len(victim.handled()) >= 1_000, timeout=60, interval=0.05)
        await victim.kill()

    killer = asyncio.ensure_future(kill_midway())
    for start in range(0, total, 500):
        await asyncio.gather(
            *(publisher.publish("jobs.run", {"n": n}) for n in range(start, start + 500))
        )
    await killer
    await publisher.close()

    def seen() -> list[int]:
        return [n for worker in workers for n in worker.handled()]

    await eventually(lambda: set(seen()) == set(range(total)), timeout=40, interval=0.1)
    for worker in workers[1:]:
        await worker.stop()
    counts = Counter(seen())
    twice = sum(1 for c in counts.values() if c > 1)
    shares = [len(set(worker.handled())) for worker in workers]
    print(f"\n{total} events, 3 workers (one SIGKILLed), shares {shares}, processed twice: {twice}")
    assert set(counts) == set(range(total))
    assert twice <= shares[0], "only events the killed worker held can be repeated"


class PrivateNats:
    """A nats-server of this test's own (JetStream on disk), to kill and restart."""

    def __init__(self, store: Path, *options: str) -> None:
        self.options = options  # more nats-server flags (--auth TOKEN)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.store = store
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js"]
        self.process = subprocess.Popen(
            [*command, "-sd", str(self.store), *self.options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the private nats-server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[PrivateNats]:
    if not Path(NATS_SERVER).exists():
        if IN_CI:
            pytest.fail("nats-server is not installed")
        pytest.skip("nats-server is not installed")
    server = PrivateNats(tmp_path / "nats_jetstream")
    server.start()
    yield server
    server.kill()


@pytest.mark.nats
@pytest.mark.slow
async def test_a_broker_restart_loses_nothing_acknowledged(private_nats: PrivateNats) -> None:
    url = private_nats.url
    nats_namespace = {"stream": "RESTART", "prefix": "restart"}
    consumer = EventBus(transport=make_transport(url, nats_namespace, ack_wait=2.0))
    grouped: list[int] = []
    plain: list[int] = []
    consumer.subscribe("jobs.*", group="crunch")(lambda e: grouped.append(e.data))
    consumer.subscribe("jobs.*")(lambda e: plain.append(e.data))
    await consumer.start()
    publisher = EventBus(transport=make_transport(url, nats_namespace))
    acknowledged: list[int] = []

    async def publish_all() -> None:
        for n in range(300):
            await publisher.publish("jobs.run", n, key=f"k{n % 3}" if n % 2 else None)
            acknowledged.append(n)
            await asyncio.sleep(0.005)

    publishing = asyncio.ensure_future(publish_all())
    await eventually(lambda: len(acknowledged) >= 100)
    private_nats.kill()
    await asyncio.sleep(1.0)
    assert not publishing.done(), "publish waits for the broker to come back"
    private_nats.start()
    await asyncio.wait_for(publishing, timeout=60)
    everything = set(range(300))
    await eventually(lambda: set(grouped) == everything and set(plain) == everything, timeout=30)
    await consumer.close()
    await publisher.close()
    print(
        f"\nbroker restarted mid-run: group handled {len(grouped)} deliveries of 300, "
        f"plain subscriber {len(plain)}"
    )


@pytest.mark.nats
@pytest.mark.slow
async def test_a_broker_that_lost_its_store_gets_stream_and_consumers_back(
    private_nats: PrivateNats,
) -> None:
    url = private_nats.url
    nats_namespace = {"stream": "WIPED", "prefix": "wiped"}
    consumer = EventBus(transport=make_transport(url, nats_namespace))
    grouped: list[int] = []
    plain: list[int] = []
    consumer.subscribe("jobs.*", group="crunch")(lambda e: grouped.append(e.data))
    consumer.subscribe("jobs.#")(lambda e: plain.append(e.data))
    await consumer.start()
    publisher = EventBus(transport=make_transport(url, nats_namespace))
    await publisher.publish("jobs.run", 0)
    await eventually(lambda: grouped == [0] and plain == [0])
    private_nats.kill()
    shutil.rmtree(private_nats.store)
    private_nats.start()
    for n in range(1, 21):  # retried until the stream is back
        await publisher.publish("jobs.run", n, key=f"k{n % 2}")
    after = set(range(1, 21))
    await eventually(lambda: after <= set(grouped) and after <= set(plain), timeout=30)
    await consumer.close()
    await publisher.close()


@pytest.mark.nats
async def test_a_group_joins_its_consumer_made_with_other_settings(
    nats_url: str, nats_namespace: dict[str, str]
) -> None:
    old = EventBus(transport=make_transport(nats_url, nats_namespace, ack_wait=5.0, partitions=1))
    old.subscribe("jobs.*", group="crunch")(lambda e: None)
    await old.start()
    await old.close()
    handled: list[int] = []
    new = EventBus(transport=make_transport(nats_url, nats_namespace, ack_wait=9.0, partitions=1))
    new.subscribe("jobs.*", group="crunch")(lambda e: handled.append(e.data))
    await new.start()
    await new.publish("jobs.run", 1)
    await new.publish("jobs.run", 2, key="k")
    await eventually(lambda: sorted(handled) == [1, 2])
    await new.close()


# -- the documentation's examples run as written ---------------------------------------

DOC = REPO / "docs" / "transport-nats.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def doc_blocks() -> list[tuple[int, str]]:
    text = DOC.read_text()
    return [
        (text.count("\n", 0, match.start()) + 2, match.group(1)) for match in BLOCK.finditer(text)
    ]


@pytest.mark.nats
@pytest.mark.parametrize(("line", "code"), doc_blocks(), ids=[str(n) for n, _ in doc_blocks()])
async def test_doc_example_runs(nats_url: str, line: int, code: str) -> None:
    """Each block runs as written, on a stream and prefix of its own (then deleted)."""
    name = unique_name("doc")
    code = code.replace("DOCS_EXAMPLE", name.upper()).replace("docs.example", name)
    compiled = compile("\n" * (line - 1) + code, str(DOC), "exec")
    try:
        # the examples call asyncio.run(), so they run in a thread of their own
        with contextlib.redirect_stdout(io.StringIO()):
            await asyncio.to_thread(exec, compiled, {"__name__": "__main__"})
    finally:
        await delete_stream(nats_url, name.upper())
