"""The bus conformance suite on Redis Streams, plus what is specific to Redis."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.formats.json import JSONFormat

from pepperpy.event import (
    ClosedError,
    ConfigurationError,
    Event,
    EventBus,
    MissingDependencyError,
    RetryPolicy,
    SerializationError,
    Transport,
    TransportError,
)
from pepperpy.event.transports import Subscription
from pepperpy.event.transports.redis import RedisTransport
from tests.bus.conformance import BusConformance
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys, eventually

pytestmark = pytest.mark.redis


async def delete_namespace(url: str, namespace: str) -> None:
    """Remove every key a test's transports created under ``namespace``."""
    await delete_redis_keys(url, f"{namespace}:*")


@pytest.fixture
async def namespace(redis_url: str) -> AsyncIterator[str]:
    name = unique_name("pep")
    yield name
    await delete_namespace(redis_url, name)


class TestRedisBus(BusConformance):
    @pytest.fixture
    def transport_factory(self, redis_url: str, namespace: str) -> Callable[[], Transport | str]:
        return lambda: RedisTransport(redis_url, namespace=namespace)


class TestRedisBusFromUrl(BusConformance):
    @pytest.fixture
    def transport_factory(self, redis_url: str, namespace: str) -> Callable[[], Transport | str]:
        return lambda: f"{redis_url}?namespace={namespace}&partitions=4&lease_ttl=2"


# -- the wire: plain Redis clients read and write what we do ---------------------------


@pytest.fixture
async def plain(redis_url: str) -> AsyncIterator[Any]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def transport(redis_url: str, namespace: str) -> AsyncIterator[RedisTransport]:
    transport = RedisTransport(redis_url, namespace=namespace, partitions=4, max_backoff=0.1)
    await transport.start()
    yield transport
    await transport.close()


async def test_a_plain_client_reads_cloudevents_json(
    redis_url: str, namespace: str, plain: Any
) -> None:
    async with EventBus(transport=RedisTransport(redis_url, namespace=namespace)) as bus:
        sent = await bus.publish(
            "orders.created",
            {"total": 3},
            key="order-1",
            headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        )
    stream = f"{namespace}:stream:{zlib.crc32(b'order-1') % 16}"
    entries = await plain.xrange(stream)
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields[b"topic"] == b"orders.created"
    document = json.loads(fields[b"event"])
    assert document["specversion"] == "1.0"
    assert document["type"] == "orders.created"
    assert document["id"] == sent.id
    assert document["data"] == {"total": 3}
    assert document["datacontenttype"] == "application/json"
    assert document["partitionkey"] == "order-1"
    assert document["traceparent"].startswith("00-0af7651916cd43dd")
    ce = JSONFormat().read(None, fields[b"event"])  # the official CloudEvents SDK reads it
    assert ce.get_type() == "orders.created"
    assert ce.get_id() == sent.id


async def test_cloudevents_a_plain_client_adds_reach_subscribers(
    redis_url: str, namespace: str, plain: Any
) -> None:
    bus = EventBus(transport=RedisTransport(redis_url, namespace=namespace, partitions=4))
    got: list[Event] = []
    grouped: list[Event] = []
    bus.subscribe("billing.#")(got.append)
    bus.subscribe("billing.#", group="accounting")(grouped.append)
    async with bus:
        document = {
            "specversion": "1.0",
            "id": "from-a-plain-client",
            "source": "urn:other-service",
            "type": "billing.invoice.paid",
            "datacontenttype": "application/json",
            "data": {"invoice": 42},
        }
        stream = f"{namespace}:stream:{zlib.crc32(b'billing.invoice.paid') % 4}"
        await plain.xadd(stream, {"event": json.dumps(document)})  # no topic field needed
        await eventually(lambda: len(got) == 1 and len(grouped) == 1)
    for event in (got[0], grouped[0]):
        assert event.id == "from-a-plain-client"
        assert event.type == "billing.invoice.paid"
        assert event.source == "urn:other-service"
        assert event.data == {"invoice": 42}


async def test_unreadable_entries_are_skipped_and_acknowledged(
    transport: RedisTransport, plain: Any, namespace: str
) -> None:
    got: list[Event] = []
    grouped: list[Event] = []
    await transport.subscribe(Subscription("jobs.#", _collect(got)))
    await transport.subscribe(Subscription("jobs.#", _collect(grouped), group="g", name="g"))
    stream = transport.stream_for("jobs.run")
    await plain.xadd(stream, {"topic": "jobs.run", "event": b"not json"})
    await plain.xadd(stream, {"something": "else"})
    await transport.publish(Event("jobs.run", {"n": 1}))
    await eventually(lambda: len(got) == 1 and len(grouped) == 1)
    assert got[0].data == grouped[0].data == {"n": 1}
    await eventually_async(lambda: _pending(plain, stream, "g:jobs.#"), 0)


# -- groups: redelivery, dead letters, order, durability --------------------------------


def _collect(into: list[Event]) -> Callable[[Event], Awaitable[None]]:
    async def deliver(event: Event) -> None:
        into.append(event)

    return deliver


async def _pending(client: Any, stream: str, group: str) -> int:
    summary = await client.xpending(stream, group)
    return int(summary["pending"])


async def eventually_async(
    probe: Callable[[], Awaitable[Any]], expected: Any, timeout: float = 10.0
) -> None:
    deadline = time.monotonic() + timeout
    while (value := await probe()) != expected:
        assert time.monotonic() < deadline, f"still {value!r}, expected {expected!r}"
        await asyncio.sleep(0.02)


async def test_a_failed_delivery_is_redelivered_before_later_events(
    transport: RedisTransport,
) -> None:
    handled: list[int] = []
    failures = {"left": 2}

    async def deliver(event: Event) -> None:
        n = event.data["n"]
        if n == 1 and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("transient")
        handled.append(n)

    await transport.subscribe(Subscription("acct.*", deliver, group="ledger", name="ledger"))
    for n in range(5):
        await transport.publish(Event("acct.moved", {"n": n}, {"partitionkey": "a"}), key="a")
    await eventually(lambda: len(handled) == 5)
    assert handled == [0, 1, 2, 3, 4]  # 2..4 waited for 1's redelivery


async def test_an_event_whose_delivery_keeps_failing_is_dead_lettered(
    redis_url: str, namespace: str
) -> None:
    transport = RedisTransport(
        redis_url, namespace=namespace, partitions=2, max_deliveries=3, max_backoff=0.05
    )
    calls: list[str] = []
    dead: list[Event] = []

    async def poison(event: Event) -> None:
        calls.append(event.id)
        raise RuntimeError("crashes every time")

    async with transport:
        await transport.subscribe(Subscription("pay.*", poison, group="payments", name="p"))
        await transport.subscribe(Subscription("deadletter.pay.*", _collect(dead)))
        sent = Event("pay.charge", {"amount": 5})
        await transport.publish(sent)
        await eventually(lambda: len(dead) == 1)
    assert calls == [sent.id] * 3
    letter = dead[0]
    assert letter.type == "deadletter.pay.charge"
    assert letter.data == {"amount": 5}
    assert letter.metadata["dlid"] == sent.id
    assert letter.metadata["dlattempts"] == 3
    assert letter.metadata["dlgroup"] == "payments"
    assert "delivered 3 times" in letter.metadata["dlreason"]


async def _crash(transport: RedisTransport) -> None:
    """Stop ``transport``'s group members like a SIGKILL would: nothing given back or acked."""
    t: Any = transport
    for member in t._members:
        member._stopping = True
        tasks = [member._beater, *member._workers.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    t._members = []
    await transport.close()


async def test_members_leaving_and_rejoining_count_no_delivery_of_what_they_never_started(
    redis_url: str, namespace: str
) -> None:
    transport = RedisTransport(redis_url, namespace=namespace, partitions=1, max_deliveries=2)
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    handled: list[int] = []
    dead: list[Event] = []
    bus.subscribe("deadletter.jobs.*")(dead.append)

    async def work(event: Event) -> None:
        handled.append(event.data)
        await asyncio.sleep(0.02)

    bus.subscribe("jobs.*", group="g")(work)
    async with bus:
        for n in range(10):
            await bus.publish("jobs.run", n, key="k")
        for cycle in range(5):  # each member handles one event, then leaves gracefully
            await eventually(lambda c=cycle: len(handled) > c)  # type: ignore[misc]
            await bus.unsubscribe("jobs.*", work, group="g")
            bus.subscribe("jobs.*", group="g")(work)
            await bus.start()
        await eventually(lambda: len(handled) == 10 or bool(dead))
    assert dead == []
    assert handled == list(range(10))


async def test_an_event_that_kills_its_consumer_each_time_is_still_dead_lettered(
    redis_url: str, namespace: str
) -> None:
    calls: list[int] = []
    dead: list[Event] = []
    after = asyncio.Event()

    async def deadly(event: Event) -> None:
        calls.append(event.data)
        if event.data == 0:
            await asyncio.Event().wait()  # "the process dies" in here (see _crash)
        after.set()

    def make() -> RedisTransport:
        return RedisTransport(
            redis_url, namespace=namespace, partitions=1, max_deliveries=3, lease_ttl=0.3
        )

    async with make() as watcher:
        await watcher.subscribe(Subscription("deadletter.jobs.*", _collect(dead)))
        for attempt in range(1, 4):
            member = make()
            await member.start()
            await member.subscribe(Subscription("jobs.*", deadly, group="g", name="g"))
            if attempt == 1:
                for n in range(3):  # 1 and 2 wait behind the deadly 0
                    await member.publish(Event("jobs.run", n, {"partitionkey": "k"}), key="k")
            await eventually(lambda a=attempt: len(calls) == a)  # type: ignore[misc]
            await _crash(member)
        async with make() as last:  # 0 was delivered 3 times: dead-lettered, 1 and 2 run
            await last.subscribe(Subscription("jobs.*", deadly, group="g", name="g"))
            await eventually(lambda: len(dead) == 1 and calls[-2:] == [1, 2])
    assert calls == [0, 0, 0, 1, 2]
    assert dead[0].data == 0 and dead[0].metadata["dlattempts"] == 3
    assert after.is_set()


async def test_a_group_catches_up_on_what_was_published_while_it_was_away(
    redis_url: str, namespace: str
) -> None:
    def make() -> EventBus:
        return EventBus(transport=RedisTransport(redis_url, namespace=namespace, partitions=4))

    first = make()
    seen: list[int] = []
    first.subscribe("mail.*", group="mailer")(lambda e: seen.append(e.data["n"]))
    async with first:
        await first.publish("mail.send", {"n": 0})
        await eventually(lambda: seen == [0])
    async with make() as publisher:  # nobody of the group is running now
        for n in range(1, 4):
            await publisher.publish("mail.send", {"n": n})
    second = make()
    second.subscribe("mail.*", group="mailer")(lambda e: seen.append(e.data["n"]))
    async with second:
        await eventually(lambda: len(seen) == 4)
    assert seen == [0, 1, 2, 3]


async def test_per_key_order_holds_while_members_join_and_leave(
    redis_url: str, namespace: str
) -> None:
    handled: list[tuple[str, str, int]] = []

    def make(name: str) -> EventBus:
        transport = RedisTransport(redis_url, namespace=namespace, partitions=8, lease_ttl=0.6)
        bus = EventBus(transport=transport)

        @bus.subscribe("acct.*", group="ledger")
        async def work(event: Event) -> None:
            await asyncio.sleep(0.001)
            handled.append((name, event.data["key"], event.data["n"]))

        return bus

    publisher = EventBus(transport=RedisTransport(redis_url, namespace=namespace, partitions=8))
    first, second = make("first"), make("second")
    keys = [f"k{i}" for i in range(6)]
    sent = 0

    async def publish(count: int) -> None:
        nonlocal sent
        for _ in range(count):
            key = keys[sent % len(keys)]
            await publisher.publish("acct.moved", {"key": key, "n": sent}, key=key)
            sent += 1
            await asyncio.sleep(0.002)

    def handled_by(name: str) -> int:
        return sum(1 for who, _, _ in handled if who == name)

    async with publisher, first:
        await publish(100)
        await second.start()  # a second member joins: half the partitions move to it
        deadline = time.monotonic() + 20
        while handled_by("second") < 10 or handled_by("first") <= 100:
            assert time.monotonic() < deadline, "the group never rebalanced"
            await publish(10)
        await first.close()  # the first leaves: everything moves to the second
        await publish(100)
        await eventually(lambda: len(handled) >= sent, timeout=20)
        await second.close()
    for key in keys:
        ns = [n for _, k, n in handled if k == key]
        assert ns == sorted(ns), f"{key} handled out of order"
        assert sorted(set(ns)) == [n for n in range(sent) if keys[n % len(keys)] == key]
    assert handled_by("first") > 100 and handled_by("second") >= 110


async def test_closing_leaves_no_member_state_and_ungrouped_leave_no_groups(
    redis_url: str, namespace: str, plain: Any
) -> None:
    bus = EventBus(transport=RedisTransport(redis_url, namespace=namespace, partitions=2))
    seen: list[str] = []
    bus.subscribe("x.*")(lambda e: seen.append(e.type))
    bus.subscribe("y.*", group="durable")(lambda e: seen.append(e.type))
    async with bus:
        await bus.publish("x.one", 1)
        await bus.publish("y.one", 1)
        await eventually(lambda: len(seen) == 2)
    keys = sorted([k.decode() async for k in plain.scan_iter(match=f"{namespace}:*")])
    assert keys == [f"{namespace}:meta", f"{namespace}:stream:0", f"{namespace}:stream:1"]
    for p in range(2):
        groups = await plain.xinfo_groups(f"{namespace}:stream:{p}")
        assert [g["name"] for g in groups] == [b"durable:y.*"]  # the group itself is durable
        assert groups[0]["consumers"] == 0 and groups[0]["pending"] == 0


async def test_trim_removes_only_what_every_group_acknowledged(
    transport: RedisTransport, plain: Any
) -> None:
    done: list[Event] = []
    await transport.subscribe(Subscription("t.*", _collect(done), group="fast", name="fast"))
    for n in range(10):
        await transport.publish(Event("t.x", n), key="same")
    await eventually(lambda: len(done) == 10)
    stream = transport.stream_for("t.x", "same")
    await eventually_async(lambda: _pending(plain, stream, "fast:t.*"), 0)
    assert await transport.trim(older_than=3600) == 0  # too young
    await plain.xgroup_create(stream, "lagging", id="0")  # a group that has read nothing
    assert await transport.trim(older_than=0) == 0
    await plain.xgroup_destroy(stream, "lagging")
    assert await transport.trim(older_than=0) == 10
    assert await plain.xlen(stream) == 0


# -- configuration and failures -------------------------------------------------------


def test_options_come_from_keywords_and_the_url() -> None:
    transport = RedisTransport(
        "redis://localhost:6379/2?namespace=orders&partitions=8&lease_ttl=3.5&db=2",
        batch_size=10,
    )
    options = transport.options
    assert (options.namespace, options.partitions, options.lease_ttl) == ("orders", 8, 3.5)
    assert options.batch_size == 10
    assert "namespace" not in repr(transport).split("?")[-1].split(",")[0]
    assert RedisTransport("redis://h/0?partitions=8", partitions=4).options.partitions == 4


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("redis://h/0", {"partitions": 0}, "partitions"),
        ("redis://h/0?partitions=many", {}, "partitions"),
        ("redis://h/0", {"lease_ttl": 0.01}, "lease_ttl"),
        ("redis://h/0", {"namespace": ""}, "namespace"),
        ("redis://h/0", {"max_deliveries": -1}, "max_deliveries"),
        ("http://h/0", {}, "not a Redis URL"),
        ("redis://h:port/0", {}, "bad port 'port'"),
        ("redis://h/0?socket_timeout=soon", {}, "socket_timeout"),
        # a typo reached redis-py's connection class: a bare TypeError at start()
        ("redis://h/0?partiton=8", {}, r"unknown parameter 'partiton'.*'partitions'\?"),
        ("redis://h/0?timeout=2", {}, "unknown parameter 'timeout'"),
        ("redis://h/0?ssl_ca_certs=ca.pem", {}, "unknown parameter 'ssl_ca_certs'"),
        # nan <= 0 is False: NaN passed the checks and failed later, raw
        (
            "redis://h/0?lease_ttl=nan",
            {},
            "lease_ttl must be a number of seconds in decimal digits",
        ),
        (
            "redis://h/0?connect_timeout=nan",
            {},
            "connect_timeout must be a number of seconds in decimal digits",
        ),
        (
            "redis://h/0?max_backoff=nan",
            {},
            "max_backoff must be a number of seconds in decimal digits",
        ),
        (
            "redis://h/0?trim_interval=nan",
            {},
            "trim_interval must be a number of seconds in decimal digits",
        ),
        (
            "redis://h/0?retention=nan",
            {},
            "retention must be a number of seconds in decimal digits",
        ),
        (
            "redis://h/0?connect_timeout=inf",
            {},
            "connect_timeout must be a number of seconds in decimal digits",
        ),
        (
            "redis://h/0?retention=inf",
            {},
            "retention must be a number of seconds in decimal digits",
        ),
        ("redis://h/0", {"lease_ttl": float("nan")}, "lease_ttl must be a finite number"),
        ("redis://h/0", {"retention": float("nan")}, "retention must be a finite number"),
        ("redis://h/0?socket_timeout=nan", {}, "socket_timeout must be a finite number"),
        ("redis://h/0?socket_timeout=-1", {}, "socket_timeout must be a finite number"),
        ("redis://h/0?socket_connect_timeout=inf", {}, "socket_connect_timeout .* finite"),
        ("redis://h/0?socket_timeout=1", {}, "socket_timeout must be .*, at least 2"),
        ("redis://h/0?max_connections=0", {}, "max_connections must be .*, at least 1"),
        ("redis://h/0", {"replicas": -1}, "replicas must be an int >= 0, got -1"),
    ],
)
def test_bad_options_raise_configuration_error(
    url: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisTransport(url, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retention": True}, "retention must be a finite number"),
        # True passed isinstance(int): a flag meaning "wait for 1 replica", unasked
        ({"replicas": True}, "replicas must be an int >= 0, got True"),
        ({"replicas": 1.0}, "replicas must be an int >= 0, got 1.0"),
    ],
)
def test_options_of_a_wrong_type_raise_type_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        RedisTransport("redis://h/0", **kwargs)


@pytest.mark.parametrize(
    "url",
    [
        "redis://h/0?client_name=shop&socket_timeout=2.5&max_connections=7&health_check_interval=5",
        "redis://h?socket_keepalive=true&retry_on_timeout=false&db=2&namespace=n",
        "rediss://h/0?ssl_ca_certs=ca.pem&ssl_cert_reqs=required",
        "unix:///tmp/redis.sock?db=1&path=/tmp/redis.sock",  # a different path: refused
    ],
)
def test_redis_py_options_in_the_url_are_accepted(url: str) -> None:
    RedisTransport(url)  # the unknown-name check knows every option redis-py's clients take


async def test_every_process_of_a_namespace_must_agree_on_partitions(
    redis_url: str, namespace: str
) -> None:
    async with RedisTransport(redis_url, namespace=namespace, partitions=4):
        pass
    other = RedisTransport(redis_url, namespace=namespace, partitions=8)
    with pytest.raises(ConfigurationError, match="uses 4 partitions"):
        await other.start()


async def test_an_unreachable_redis_gives_a_transport_error() -> None:
    port = _free_port()
    bus = EventBus(transport=f"redis://127.0.0.1:{port}/0?connect_timeout=0.3")
    with pytest.raises(TransportError, match="unreachable"):
        await bus.publish("a.b", 1)


def test_a_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(MissingDependencyError, match=r"pepperpy-event\[redis\]"):
        RedisTransport()


async def test_publish_refuses_a_key_with_a_lone_surrogate_as_the_bus_does(
    transport: RedisTransport,
) -> None:
    # routing encodes the key: a lone surrogate raised UnicodeEncodeError there
    for publish in (
        lambda: transport.publish(Event("a.b"), key="k\ud800"),
        lambda: EventBus(transport="memory://").publish("a.b", key="k\ud800"),
    ):
        with pytest.raises(SerializationError, match=r"key 'k\\ud800' contains a lone surrogate"):
            await publish()
    with pytest.raises(TypeError, match="key must be a str"):
        await transport.publish(Event("a.b"), key=b"k")  # type: ignore[arg-type]
    assert await transport._require_client().xlen(transport.stream_for("a.b")) == 0


async def test_publish_on_a_closed_transport_is_refused(transport: RedisTransport) -> None:
    await transport.close()
    with pytest.raises(ClosedError):
        await transport.publish(Event("a.b"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- processes that die, brokers that restart (slow) ------------------------------------

WORKER = Path(__file__).with_name("redis_worker.py")


class Workers:
    """Group members in subprocesses (``redis_worker.py``), killed or stopped by the test."""

    def __init__(self, url: str, namespace: str, pattern: str, results: str) -> None:
        self.args = [url, namespace, pattern, results]
        self.processes: dict[str, subprocess.Popen[str]] = {}

    def start(self, name: str, hang_on: int | None = None) -> None:
        extra = [] if hang_on is None else [str(hang_on)]
        process = subprocess.Popen(
            [sys.executable, str(WORKER), *self.args, name, *extra],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.processes[name] = process
        assert process.stdout is not None
        line = process.stdout.readline()  # "ready" once subscribed
        assert line.strip() == "ready", f"worker {name} did not start: {line!r}"

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


@pytest.fixture
def workers(redis_url: str, namespace: str) -> Iterator[Workers]:
    group = Workers(redis_url, namespace, "jobs.*", f"{namespace}:results")
    yield group
    group.stop_all()


@pytest.mark.slow
async def test_three_processes_share_10000_events_and_survive_a_sigkill(
    redis_url: str, namespace: str, plain: Any, workers: Workers
) -> None:
    results = f"{namespace}:results"
    for name in ("w0", "w1", "w2"):
        await asyncio.to_thread(workers.start, name)
    total = 10_000

    async def kill_midway() -> int:
        while (processed := await plain.hlen(results)) < total // 4:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(workers.kill, "w0")
        return int(processed)

    killer = asyncio.ensure_future(kill_midway())
    async with EventBus(transport=RedisTransport(redis_url, namespace=namespace)) as bus:
        for start in range(0, total, 200):  # concurrent publishes share round trips
            chunk = range(start, start + 200)
            await asyncio.gather(
                *(bus.publish("jobs.run", {"n": n}, key=f"k{n % 97}") for n in chunk)
            )
        killed_at = await killer
        await eventually_async(lambda: plain.hlen(results), total, timeout=60)
    counts = {int(n): int(c) for n, c in (await plain.hgetall(results)).items()}
    assert sorted(counts) == list(range(total)), "every event was processed at least once"
    twice = sum(c - 1 for c in counts.values())
    per_worker = {w: int(await plain.get(f"{results}:{w}") or 0) for w in ("w0", "w1", "w2")}
    print(
        f"\n10,000 events, w0 SIGKILLed after {killed_at} were processed: "
        f"{twice} processed twice; per worker: {per_worker}"
    )
    assert per_worker["w0"] > 0 and per_worker["w1"] > 0 and per_worker["w2"] > 0
    assert sum(per_worker.values()) == total + twice
    assert twice <= 2 * 50 * 16  # at most the unacknowledged batches of the dead member
    appended: dict[str, list[int]] = {}  # each key's events in stream (= Redis) order
    for p in range(16):
        for _, fields in await plain.xrange(f"{namespace}:stream:{p}"):
            event = Event.from_json(fields[b"event"])
            appended.setdefault(event.metadata["partitionkey"], []).append(event.data["n"])
    for key, order in appended.items():  # per-key order held across the crash
        handled = [int(n) for n in await plain.lrange(f"{results}:order:{key}", 0, -1)]
        assert list(dict.fromkeys(handled)) == order, f"{key} out of order"


@pytest.mark.slow
async def test_an_event_whose_consumer_dies_mid_handler_goes_to_another(
    redis_url: str, namespace: str, plain: Any, workers: Workers
) -> None:
    results = f"{namespace}:results"
    await asyncio.to_thread(workers.start, "doomed", 7)
    async with EventBus(transport=RedisTransport(redis_url, namespace=namespace)) as bus:
        for n in range(5, 10):
            await bus.publish("jobs.run", {"n": n}, key="one-key")
        await eventually_async(lambda: plain.get(f"{results}:hung"), b"doomed")
        await asyncio.to_thread(workers.start, "survivor")
        workers.kill("doomed")
        await eventually_async(lambda: plain.hlen(results), 5)
    counts = {int(n): int(c) for n, c in (await plain.hgetall(results)).items()}
    assert counts == {5: 1, 6: 1, 7: 1, 8: 1, 9: 1}
    assert await plain.get(f"{results}:doomed") == b"2"  # 5 and 6, then it hung on 7
    assert await plain.get(f"{results}:survivor") == b"3"  # 7 (redelivered), 8, 9


class PrivateRedis:
    """A redis-server of our own on a free port, so the test may kill it."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        command += ["--dir", str(self.directory)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "private redis-server did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.mark.slow
@pytest.mark.parametrize("downtime", [0.5, 3.0], ids=["leases-survive", "leases-expire"])
async def test_nothing_acknowledged_is_lost_when_redis_restarts(
    private_redis: PrivateRedis, downtime: float
) -> None:
    def transport() -> RedisTransport:
        return RedisTransport(
            private_redis.url, partitions=4, lease_ttl=1.5, connect_timeout=20, max_backoff=0.2
        )

    consumer = EventBus(transport=transport())
    grouped: list[int] = []
    live: list[int] = []
    consumer.subscribe("orders.*", group="billing")(lambda e: grouped.append(e.data["n"]))
    consumer.subscribe("orders.*")(lambda e: live.append(e.data["n"]))
    total = 200
    async with consumer, EventBus(transport=transport()) as publisher:
        for n in range(total):
            if n == total // 2:
                await eventually(lambda: len(grouped) >= total // 4)
                private_redis.kill()  # SIGKILL mid-run; acknowledged publishes are fsynced
                restart = asyncio.get_running_loop().call_later(downtime, private_redis.start)
            await publisher.publish("orders.created", {"n": n}, key=f"c{n % 5}")
        await eventually(lambda: set(grouped) == set(range(total)), timeout=30)
        await eventually(lambda: set(live) == set(range(total)), timeout=30)
        restart.cancel()
    twice = len(grouped) - total
    print(f"\nRedis down {downtime}s mid-run: {twice} event(s) handled twice by the group")
    for key in range(5):
        first_seen = list(dict.fromkeys(n for n in grouped if n % 5 == key))
        assert first_seen == sorted(first_seen), "per-key order (redeliveries aside)"


async def test_concurrent_publishes_share_round_trips_and_all_arrive(
    transport: RedisTransport,
) -> None:
    got: list[Event] = []
    await transport.subscribe(Subscription("burst.*", _collect(got), group="g", name="g"))
    sent = [Event("burst.x", {"n": n}) for n in range(500)]
    await asyncio.gather(*(transport.publish(event) for event in sent))
    await eventually(lambda: len(got) == 500)
    assert sorted(e.data["n"] for e in got) == list(range(500))


def test_the_examples_in_the_docs_run(redis_url: str) -> None:
    text = (Path(__file__).parents[2] / "docs" / "transport-redis.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 2
    namespace = unique_name("docs")
    try:
        for block in blocks:
            code = block.replace("namespace=docs_example", f"namespace={namespace}")
            exec(compile(code, "docs/transport-redis.md", "exec"), {"__name__": "docs"})
    finally:
        asyncio.run(delete_namespace(redis_url, namespace))


async def test_trim_takes_a_pending_list_emptied_since_xinfo_for_nothing_pending(
    redis_url: str, namespace: str
) -> None:
    release = asyncio.Event()
    started: list[int] = []

    async def slow(event: Event) -> None:
        started.append(1)
        await release.wait()

    transport = RedisTransport(redis_url, namespace=namespace, partitions=1, trim_interval=None)
    async with transport:
        await transport.subscribe(Subscription("jobs.*", slow, group="g", name="g"))
        await transport.publish(Event("jobs.run", 1))
        await eventually(lambda: started == [1])  # pending: 1, per XINFO GROUPS
        client: Any = transport._client

        async def acked_meanwhile(*args: Any, **kwargs: Any) -> dict[str, Any]:
            return {"pending": 0, "min": None, "max": None, "consumers": []}

        client.xpending = acked_meanwhile  # the ack lands between XINFO and XPENDING
        try:
            removed = await transport.trim(older_than=0)
        finally:
            del client.xpending
            release.set()
        # nothing pending and everything delivered: the entry every group acknowledged goes
        assert removed == 1
        assert await client.xlen(transport.stream_for("jobs.run")) == 0


async def test_a_failing_trim_neither_ends_the_trimmer_nor_stops_close_halfway(
    redis_url: str, namespace: str
) -> None:
    transport = RedisTransport(redis_url, namespace=namespace, partitions=1, trim_interval=0.01)
    t: Any = transport
    calls: list[int] = []

    async def broken_trim(*args: Any, **kwargs: Any) -> int:
        calls.append(1)
        raise RuntimeError("a bug in trim")

    t._trim_once = broken_trim
    await transport.start()
    try:
        await transport.subscribe(Subscription("jobs.*", _collect([]), group="g", name="g"))
        await eventually(lambda: len(calls) >= 3)  # it keeps trimming after a failure
        assert not t._trimmer.done()

        async def died() -> None:
            raise RuntimeError("the trimmer died")

        t._trimmer.cancel()
        t._trimmer = asyncio.ensure_future(died())
        await asyncio.sleep(0)
        member = t._members[0]
    finally:
        await transport.close()  # must not raise, and must close what it started
    assert member._stopping and not member._workers


async def test_acknowledged_entries_are_trimmed_automatically(
    redis_url: str, namespace: str, plain: Any
) -> None:
    transport = RedisTransport(
        redis_url, namespace=namespace, partitions=2, trim_interval=0.1, retention=0
    )
    done: list[Event] = []
    async with transport:
        await transport.subscribe(Subscription("t.*", _collect(done), group="g", name="g"))
        for n in range(20):
            await transport.publish(Event("t.x", n))
        await eventually(lambda: len(done) == 20)
        stream = transport.stream_for("t.x")
        await eventually_async(lambda: plain.xlen(stream), 0)


def test_trimming_can_be_switched_off_in_the_url() -> None:
    options = RedisTransport("redis://h/0?trim_interval=off&maxlen=none&retention=5").options
    assert options.trim_interval is None and options.maxlen is None and options.retention == 5


async def test_publish_waits_for_replicas_and_says_when_too_few_confirm(
    redis_url: str, namespace: str
) -> None:
    transport = RedisTransport(redis_url, namespace=namespace, replicas=1, connect_timeout=0.2)
    async with transport:  # the shared test server has no replica
        with pytest.raises(TransportError, match="only 0 of 1 replicas confirmed"):
            await transport.publish(Event("a.b", 1))


async def test_a_member_stops_reading_a_partition_whose_lease_it_lost(
    redis_url: str, namespace: str, plain: Any
) -> None:
    transport = RedisTransport(redis_url, namespace=namespace, partitions=2, lease_ttl=0.6)
    got: list[Event] = []
    async with transport:
        sub = Subscription("t.*", _collect(got), group="g", name="gid")
        await transport.subscribe(sub)
        partition = zlib.crc32(b"t.x") % 2
        lease = f"{namespace}:group:gid:lease:{partition}"
        await eventually_async(lambda: plain.exists(lease), 1)  # we hold it
        await plain.set(lease, "someone-else", px=1500)  # another member took it over
        await asyncio.sleep(0.5)  # our next heartbeat notices
        await transport.publish(Event("t.x", 1))
        await asyncio.sleep(0.3)
        assert got == [], "read a partition it no longer owns"
        await eventually(lambda: len(got) == 1)  # the lease expired: taken back, read again
    assert got[0].data == 1


async def test_a_slow_partition_does_not_hold_up_the_others(redis_url: str, namespace: str) -> None:
    partitions = 4
    slow_key = "slow"
    fast_key = next(
        key
        for key in (f"fast-{i}" for i in range(100))
        if zlib.crc32(key.encode()) % partitions != zlib.crc32(slow_key.encode()) % partitions
    )
    release = asyncio.Event()
    fast: list[int] = []
    bus = EventBus(transport=RedisTransport(redis_url, namespace=namespace, partitions=partitions))

    @bus.subscribe("work.*", group="workers")
    async def work(event: Event) -> None:
        if event.metadata["partitionkey"] == slow_key:
            await release.wait()
        else:
            fast.append(event.data)

    async with bus:
        await bus.publish("work.item", -1, key=slow_key)  # blocks its partition
        for n in range(5):
            await bus.publish("work.item", n, key=fast_key)
        await eventually(lambda: len(fast) == 5, timeout=5)
        assert not release.is_set()  # all handled while the slow one was still running
        release.set()
    assert fast == [0, 1, 2, 3, 4]


async def test_entries_orphaned_with_another_consumer_are_swept_up(
    redis_url: str, namespace: str, plain: Any
) -> None:
    transport = RedisTransport(redis_url, namespace=namespace, partitions=1, lease_ttl=0.6)
    busy = asyncio.Event()
    gate = asyncio.Event()
    got: list[int] = []

    async def deliver(event: Event) -> None:
        if event.data == 1:
            busy.set()
            await gate.wait()
        got.append(event.data)

    async with transport:
        await transport.subscribe(Subscription("t.*", deliver, group="g", name="g"))
        await transport.publish(Event("t.x", 1))
        await asyncio.wait_for(busy.wait(), 10)  # our member is inside a handler, not reading
        await transport.publish(Event("t.x", 2))
        stream = f"{namespace}:stream:0"
        stolen = await plain.xreadgroup("g:t.*", "ghost", {stream: ">"}, count=10)
        assert len(stolen[0][1]) == 1  # entry 2 is now pending with a consumer that is gone
        gate.set()
        await eventually(lambda: got == [1, 2], timeout=10)
    assert await _pending(plain, stream, "g:t.*") == 0
