"""The bus on RabbitMQ: the conformance suite, plus what only a real broker can show.

Every test publishes to its own topic exchange (``unique_name``) and deletes the exchange
and the group queues it declared afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import (
    ClosedError,
    ConfigurationError,
    Event,
    EventBus,
    MissingDependencyError,
    TransportError,
)
from pepperpy.event.transports import Subscription
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from tests.bus.conformance import BusConformance
from tests.conftest import unique_name
from tests.helpers import eventually, settle

pytestmark = pytest.mark.rabbitmq


class TestRabbitMQBus(BusConformance):
    @pytest.fixture
    def transport_factory(
        self, rabbitmq_transports: Callable[..., RabbitMQTransport]
    ) -> Callable[[], RabbitMQTransport]:
        return rabbitmq_transports


class TestRabbitMQBusOnePartitionClassic(BusConformance):
    """The same suite with one classic group queue (no lanes exchange, no rebalancing)."""

    @pytest.fixture
    def transport_factory(
        self, rabbitmq_transports: Callable[..., RabbitMQTransport]
    ) -> Callable[[], RabbitMQTransport]:
        return lambda: rabbitmq_transports(partitions=1, queue_type="classic")


# -- helpers for the multi-process tests ----------------------------------------------

REPO = Path(__file__).resolve().parents[2]


class Worker:
    """A ``tests/bus/rabbitmq_worker.py`` process and the file it records into."""

    def __init__(self, process: asyncio.subprocess.Process, out: Path) -> None:
        self.process = process
        self.out = out

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []

    def handled(self) -> list[int]:
        return [int(line) for line in self.lines() if line.isdigit()]

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def spawn(
    url: str, exchange: str, pattern: str, group: str, out: Path, *extra: str
) -> Worker:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.bus.rabbitmq_worker",
        url,
        exchange,
        pattern,
        group,
        str(out),
        *extra,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    assert line.strip() == b"ready", f"worker did not start: {line!r}"
    return Worker(process, out)


@pytest.fixture
async def workers() -> AsyncIterator[list[Worker]]:
    running: list[Worker] = []
    yield running
    for worker in running:
        await worker.stop()


async def join_to_clean_up(transport: RabbitMQTransport, pattern: str, group: str) -> None:
    """Subscribe ``transport`` to the workers' group, so its ``delete_topology`` drops it."""
    bus = EventBus(transport=transport)
    bus.subscribe(pattern, group=group)(lambda event: None)
    await bus.start()
    await bus.close()


# -- distributed semantics ------------------------------------------------------------


@pytest.mark.slow
async def test_three_workers_one_killed_midway_every_event_is_processed(
    amqp_url: str,
    rabbitmq_transports: Callable[..., RabbitMQTransport],
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    publisher = rabbitmq_transports()
    exchange, root, group = publisher.exchange_name, unique_name("t"), unique_name("g")
    pattern, count = f"{root}.jobs.*", 10_000
    for i in range(3):
        workers.append(await spawn(amqp_url, exchange, pattern, group, tmp_path / f"w{i}"))
    bus = EventBus(transport=publisher)
    await bus.start()

    async def publish_all() -> None:
        for start in range(0, count, 100):
            batch = range(start, start + 100)
            await asyncio.gather(*(bus.publish(f"{root}.jobs.run", {"n": n}) for n in batch))

    publishing = asyncio.ensure_future(publish_all())
    total = lambda: sum(len(w.lines()) for w in workers)  # noqa: E731
    await eventually(lambda: total() >= count // 3, timeout=30)
    victim = max(workers, key=lambda w: len(w.lines()))
    victim.process.kill()
    await victim.process.wait()
    before_kill = {id(w): len(w.handled()) for w in workers}

    def all_seen() -> bool:
        return len({n for w in workers for n in w.handled()}) == count

    await publishing
    await eventually(all_seen, timeout=45, interval=0.1)
    handled = [n for w in workers for n in w.handled()]
    twice = len(handled) - len(set(handled))
    spread = {w.out.name: len(w.handled()) for w in workers}
    print(f"\n{count} events, handled {len(handled)} times, {twice} twice; per worker {spread}")
    assert set(handled) == set(range(count))
    survivors = [w for w in workers if w is not victim]
    assert sum(len(w.handled()) - before_kill[id(w)] for w in survivors) > 0
    assert sum(1 for w in workers if w.handled()) >= 2, "the group shares work between processes"
    for worker in survivors:
        await worker.stop()
    await bus.close()
    await join_to_clean_up(rabbitmq_transports(), pattern, group)


@pytest.mark.slow
async def test_event_whose_consumer_dies_mid_handler_is_redelivered_to_another(
    amqp_url: str,
    rabbitmq_transports: Callable[..., RabbitMQTransport],
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    publisher = rabbitmq_transports()
    exchange, root, group = publisher.exchange_name, unique_name("t"), unique_name("g")
    pattern = f"{root}.jobs.*"
    first = await spawn(amqp_url, exchange, pattern, group, tmp_path / "first", "7")
    workers.append(first)
    bus = EventBus(transport=publisher)
    await bus.start()
    for n in range(10):
        await bus.publish(f"{root}.jobs.run", {"n": n}, key="account-1")
    assert await asyncio.wait_for(first.process.wait(), 30) == -signal.SIGKILL
    assert first.lines()[-1] == "dying 7"
    second = await spawn(amqp_url, exchange, pattern, group, tmp_path / "second")
    workers.append(second)
    await eventually(lambda: 9 in second.handled())
    # what the dead worker acknowledged is not redone; the rest arrives in key order
    resumed = second.handled()
    assert resumed == list(range(resumed[0], 10))
    assert resumed[0] <= 7
    assert set(first.handled()) | set(resumed) == set(range(10))
    await second.stop()
    await bus.close()
    await join_to_clean_up(rabbitmq_transports(), pattern, group)


@pytest.mark.slow
async def test_event_that_keeps_killing_consumers_goes_to_the_dead_letter_topic(
    amqp_url: str,
    rabbitmq_transports: Callable[..., RabbitMQTransport],
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    publisher = rabbitmq_transports()
    exchange, root, group = publisher.exchange_name, unique_name("t"), unique_name("g")
    pattern = f"{root}.jobs.*"
    bus = EventBus(transport=publisher)
    dead: list[Event] = []
    bus.subscribe(f"deadletter.{root}.#")(dead.append)
    await bus.start()
    first = await spawn(amqp_url, exchange, pattern, group, tmp_path / "first", "3", "1")
    workers.append(first)
    sent = await bus.publish(f"{root}.jobs.run", {"n": 3})
    assert await asyncio.wait_for(first.process.wait(), 30) == -signal.SIGKILL
    second = await spawn(amqp_url, exchange, pattern, group, tmp_path / "second", "3", "1")
    workers.append(second)
    await eventually(lambda: len(dead) == 1)
    letter = dead[0]
    assert letter.type == f"deadletter.{root}.jobs.run"
    assert letter.metadata["dlid"] == sent.id
    assert letter.metadata["dlattempts"] == 1  # max_deliveries, as on Redis and NATS
    assert letter.metadata["dlgroup"] == group
    assert "without an acknowledgement" in letter.metadata["dlreason"]
    assert second.lines() == [], "the second worker never ran the poisonous event"
    await second.stop()
    await bus.close()
    await join_to_clean_up(rabbitmq_transports(), pattern, group)


async def test_graceful_close_hands_the_rest_of_a_key_to_the_next_member_in_order(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
) -> None:
    root = unique_name("t")
    first, second = (
        EventBus(transport=rabbitmq_transports()),
        EventBus(transport=rabbitmq_transports()),
    )
    got: dict[str, list[int]] = {"first": [], "second": []}

    @first.subscribe(f"{root}.acct.*", group="ledger")
    async def slow(event: Event) -> None:
        await asyncio.sleep(0.02)
        got["first"].append(event.data)

    @second.subscribe(f"{root}.acct.*", group="ledger")
    async def quick(event: Event) -> None:
        got["second"].append(event.data)

    await first.start()
    await second.start()  # waits behind ``first`` on every partition
    for n in range(30):
        await first.publish(f"{root}.acct.moved", n, key="acct-9")
    await eventually(lambda: len(got["first"]) >= 5)
    await first.close()
    await eventually(lambda: len(got["first"]) + len(got["second"]) == 30)
    await settle()
    assert got["first"] + got["second"] == list(range(30)), "exactly once, in key order"
    assert got["second"], "the second member took over"
    await second.close()


# -- interoperability with plain AMQP clients ------------------------------------------


async def test_plain_client_reads_what_we_publish_as_cloudevents(
    amqp_url: str, rabbitmq_transports: Callable[..., RabbitMQTransport]
) -> None:
    import aio_pika
    from cloudevents.core.bindings.rabbitmq import RabbitMQMessage, from_rabbitmq_event

    transport = rabbitmq_transports()
    root = unique_name("t")
    bus = EventBus(transport=transport)
    await bus.start()
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("", exclusive=True)
        await queue.bind(transport.exchange_name, routing_key=f"{root}.#")
        sent = await bus.publish(
            f"{root}.orders.created",
            {"total": 12.5},
            key="order-7",
            headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        )
        message = await queue.get(timeout=5)
        await message.ack()
    assert message.routing_key == f"{root}.orders.created"
    assert message.content_type == "application/cloudevents+json"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    document = json.loads(message.body)
    assert document["specversion"] == "1.0"
    assert document["id"] == sent.id == message.message_id
    assert document["type"] == f"{root}.orders.created"
    assert document["data"] == {"total": 12.5}
    assert document["traceparent"].startswith("00-0af7651916cd43dd")  # an extension attribute
    assert document["partitionkey"] == "order-7"
    official = from_rabbitmq_event(RabbitMQMessage({}, message.content_type, message.body))
    assert official.get_id() == sent.id
    assert official.get_type() == f"{root}.orders.created"
    assert official.get_data() == {"total": 12.5}
    assert official.get_extension("partitionkey") == "order-7"
    await bus.close()


async def test_cloudevents_from_a_plain_client_reach_our_subscribers(
    amqp_url: str, rabbitmq_transports: Callable[..., RabbitMQTransport], caplog: Any
) -> None:
    import aio_pika
    from cloudevents.core.bindings.rabbitmq import to_structured_event
    from cloudevents.core.v1.event import CloudEvent

    transport = rabbitmq_transports()
    root = unique_name("t")
    bus = EventBus(transport=transport)
    alone: list[Event] = []
    grouped: list[Event] = []
    bus.subscribe(f"{root}.users.*")(alone.append)
    bus.subscribe(f"{root}.users.*", group="mailer")(grouped.append)
    await bus.start()
    official = CloudEvent(
        attributes={
            "id": "plain-1",
            "source": "urn:other-service",
            "type": f"{root}.users.created",
            "time": datetime(2024, 5, 1, 12, tzinfo=UTC),
            "datacontenttype": "application/json",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        },
        data={"name": "Ada"},
    )
    structured = to_structured_event(official)
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(transport.exchange_name)
        # no lane header, and a message that is not a CloudEvent at all before it
        await exchange.publish(aio_pika.Message(b"not json"), routing_key=f"{root}.users.junk")
        await exchange.publish(
            aio_pika.Message(structured.body, content_type=structured.content_type),
            routing_key=f"{root}.users.created",
        )
    await eventually(lambda: len(alone) == 1 and len(grouped) == 1)
    for event in (alone[0], grouped[0]):
        assert event.id == "plain-1"
        assert event.source == "urn:other-service"
        assert event.data == {"name": "Ada"}
        assert event.timestamp == datetime(2024, 5, 1, 12, tzinfo=UTC)
        assert event.metadata["traceparent"].startswith("00-0af7651916cd43dd")
    assert "not a CloudEvents JSON document" in caplog.text
    await bus.close()


# -- configuration and errors ---------------------------------------------------------


def test_transport_url_picks_rabbitmq_without_connecting() -> None:
    bus = EventBus(transport="amqp://guest:guest@127.0.0.1:5672/")
    assert isinstance(bus.transport, RabbitMQTransport)
    assert bus.transport.exchange_name == "pepperpy.events"


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("redis://localhost", {}, "amqp://"),
        ("amqp://localhost", {"exchange": ""}, "exchange"),
        ("amqp://localhost", {"exchange": "amq.topic"}, "reserved"),
        ("amqp://localhost", {"prefetch": 0}, "prefetch"),
        ("amqp://localhost", {"partitions": 65}, "at most 64"),
        ("amqp://localhost", {"queue_type": "stream"}, "queue_type"),
        ("amqp://localhost", {"delivery_limit": -1}, "delivery_limit"),
        ("amqp://localhost/?partitions=many", {}, "partitions='many'"),
        ("amqp://localhost", {"rebalance_interval": 0}, "rebalance_interval"),
        ("amqp://localhost", {"ungrouped_expiry": -1}, "ungrouped_expiry"),
    ],
)
def test_bad_options_are_refused_up_front(url: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RabbitMQTransport(url, **options)


def test_options_come_from_the_url_query_and_keywords_win() -> None:
    transport = RabbitMQTransport(
        "amqp://guest:guest@127.0.0.1/?exchange=shop&partitions=4&heartbeat=30&delivery_limit=0",
        partitions=6,
    )
    assert transport.exchange_name == "shop"
    assert transport.partitions == 6
    assert transport.delivery_limit == 0
    assert transport.prefetch == 128
    assert transport.url == "amqp://guest:guest@127.0.0.1/?heartbeat=30"  # the rest: aio-pika's


async def test_unreachable_broker_is_a_transport_error_without_the_password() -> None:
    bus = EventBus(
        transport=RabbitMQTransport("amqp://guest:secret@127.0.0.1:1/", connect_timeout=3)
    )
    with pytest.raises(TransportError, match="cannot connect") as caught:
        await bus.start()
    assert "secret" not in str(caught.value)
    assert caught.value.__cause__ is not None


async def test_topic_longer_than_an_amqp_routing_key_is_refused(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
) -> None:
    bus = EventBus(transport=rabbitmq_transports())
    with pytest.raises(TransportError, match="255-byte"):
        await bus.publish("a." + "x" * 300, None)
    await bus.close()


async def test_exchange_of_another_type_is_a_clear_error(
    amqp_url: str, rabbitmq_transports: Callable[..., RabbitMQTransport]
) -> None:
    import aio_pika

    transport = rabbitmq_transports()
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        await channel.declare_exchange(
            transport.exchange_name, aio_pika.ExchangeType.FANOUT, auto_delete=True
        )
        with pytest.raises(TransportError, match="another type"):
            await transport.start()


# -- reconnecting ---------------------------------------------------------------------


async def close_connections_named(name: str) -> int:
    """Make the broker drop our connections (the shared broker keeps running)."""
    rabbitmqctl = shutil.which("rabbitmqctl")
    if rabbitmqctl is None:
        pytest.skip("rabbitmqctl is not installed")
    listing = await asyncio.create_subprocess_exec(
        rabbitmqctl,
        "-q",
        "list_connections",
        "pid",
        "client_properties",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await listing.communicate()
    if listing.returncode != 0:
        pytest.skip("rabbitmqctl cannot reach the broker (not running as its admin?)")
    pids = [line.split()[0] for line in out.decode().splitlines() if name in line]
    for pid in pids:
        closing = await asyncio.create_subprocess_exec(
            rabbitmqctl,
            "-q",
            "close_connection",
            pid,
            "test: simulated network failure",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await closing.wait()
    return len(pids)


@pytest.mark.slow
async def test_publishing_and_consuming_resume_after_the_connection_drops(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
) -> None:
    transport = rabbitmq_transports()
    root = unique_name("t")
    bus = EventBus(transport=transport)
    alone: list[Any] = []
    grouped: list[Any] = []
    bus.subscribe(f"{root}.jobs.*")(lambda event: alone.append(event.data))
    bus.subscribe(f"{root}.jobs.*", group="workers")(lambda event: grouped.append(event.data))
    await bus.start()
    await bus.publish(f"{root}.jobs.run", 1)
    await eventually(lambda: alone == [1] and grouped == [1])
    assert await close_connections_named(transport.connection_name) == 1
    await bus.publish(f"{root}.jobs.run", 2)  # waits for the reconnect, then sends
    await eventually(lambda: grouped == [1, 2], timeout=20)
    await eventually(lambda: alone == [1, 2], timeout=20)
    await bus.close()


@pytest.mark.parametrize(("first", "second"), [(4, 12), (12, 4), (1, 4), (4, 1)])
async def test_group_members_with_different_partition_counts_are_refused(
    rabbitmq_transports: Callable[..., RabbitMQTransport], first: int, second: int
) -> None:
    root = unique_name("t")
    buses = [EventBus(transport=rabbitmq_transports(partitions=n)) for n in (first, second)]
    for bus in buses:
        bus.subscribe(f"{root}.jobs.*", group="workers")(lambda event: None)
    await buses[0].start()
    with pytest.raises(ConfigurationError, match="same 'partitions'"):
        await buses[1].start()
    for bus in buses:
        await bus.close()


def test_the_examples_in_the_docs_run(amqp_url: str) -> None:
    text = (REPO / "docs" / "transport-rabbitmq.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 2
    exchange = unique_name("pep.docs")

    async def clean_up() -> None:
        transport = RabbitMQTransport(amqp_url, exchange=exchange)
        await join_to_clean_up(transport, "orders.*", "billing")
        await transport.delete_topology()

    try:
        for block in blocks:
            code = block.replace("exchange=docs_example", f"exchange={exchange}")
            exec(compile(code, "docs/transport-rabbitmq.md", "exec"), {"__name__": "docs"})
    finally:
        asyncio.run(clean_up())


async def test_a_closed_transport_refuses_work(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
) -> None:
    transport = rabbitmq_transports()
    await transport.start()
    await transport.close()
    await transport.close()  # idempotent
    with pytest.raises(ClosedError):
        await transport.publish(Event("a.b", 1))
    with pytest.raises(ClosedError):
        await transport.subscribe(Subscription("a.*", _ignore_event))
    with pytest.raises(ClosedError):
        await transport.start()


async def _ignore_event(event: Event) -> None:
    return None


# -- a broker restart (a private RabbitMQ node: the shared one stays up) --------------

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateBroker:
    """A RabbitMQ node of our own on a free port, with its data in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None
        (directory / "enabled_plugins").write_text("[].\n")
        (directory / "rabbitmq.conf").write_text(f"listeners.tcp.default = {self.port}\n")
        self.environment = {
            **os.environ,
            "RABBITMQ_NODENAME": f"pepperpy_{self.port}@localhost",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq"),
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            RABBITMQ_SERVER,
            env=self.environment,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # its own process group: kill() takes the whole node
        )
        deadline = time.monotonic() + 60
        while not await self._listening():
            if time.monotonic() > deadline or self.process.returncode is not None:
                raise AssertionError("the private RabbitMQ node did not start")
            await asyncio.sleep(0.25)

    async def kill(self) -> None:
        """SIGKILL the node (no clean shutdown: only what it fsynced survives)."""
        if self.process is not None and self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
            while await self._listening():  # the VM's socket closes a moment later
                await asyncio.sleep(0.1)

    async def _listening(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        await writer.wait_closed()
        return True


@pytest.fixture
async def private_broker(tmp_path: Path) -> AsyncIterator[PrivateBroker]:
    if not Path(RABBITMQ_SERVER).exists():
        pytest.skip("rabbitmq-server is not installed here")
    broker = PrivateBroker(tmp_path)
    yield broker
    await broker.kill()


@pytest.mark.slow
async def test_broker_killed_and_restarted_mid_run_loses_nothing_confirmed(
    private_broker: PrivateBroker,
) -> None:
    await private_broker.start()
    # classic durable queues: on a single RabbitMQ 3.10 node killed with SIGKILL, one of
    # the twelve quorum queues sometimes never elects a leader again (publishes to it
    # stall, then are nacked); see docs/transport-rabbitmq.md
    options: dict[str, Any] = {"exchange": "restart", "connect_timeout": 30}
    transport = RabbitMQTransport(private_broker.url, queue_type="classic", **options)
    consumer = RabbitMQTransport(private_broker.url, queue_type="classic", **options)
    publisher, worker = EventBus(transport=transport), EventBus(transport=consumer)
    handled: list[int] = []
    worker.subscribe("jobs.*", group="workers")(lambda event: handled.append(event.data))
    try:
        await worker.start()
        await asyncio.gather(*(publisher.publish("jobs.run", n) for n in range(100)))
        await private_broker.kill()  # some of the 100 handled, the rest only stored
        await private_broker.start()
        for n in range(100, 200):  # the first waits for the reconnect, then sends
            await publisher.publish("jobs.run", n, key=f"k{n % 7}")
        await eventually(lambda: set(handled) >= set(range(200)), timeout=45, interval=0.1)
    finally:
        await publisher.close()
        await worker.close()
    twice = len(handled) - len(set(handled))
    print(f"\nbroker restart: 200 confirmed events handled {len(handled)} times ({twice} twice)")


def test_a_missing_driver_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aio_pika", None)  # import now fails as if absent
    with pytest.raises(MissingDependencyError, match=r"pip install 'pepperpy-event\[rabbitmq\]'"):
        RabbitMQTransport("amqp://localhost")


async def test_a_handover_under_way_when_the_group_closes_never_consumes_again(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
) -> None:
    transport = rabbitmq_transports(partitions=2, rebalance_interval=60)
    publisher = EventBus(transport=rabbitmq_transports())
    bus = EventBus(transport=transport)
    root = unique_name("t")
    pattern = f"{root}.jobs.*"
    got: list[int] = []

    async def work(event: Event) -> None:
        got.append(event.data)

    bus.subscribe(pattern, group="g")(work)
    await bus.start()
    t: Any = transport
    group = next(iter(t._groups.values()))
    consumer = group.consumers[0]
    # a handover (rejoin) in flight whose channel opening outlives one cancellation, as
    # a robust connection's reconnect wait can: it resumes after close() began
    gate = asyncio.Event()
    opening = t._channel

    async def slow_channel() -> Any:
        try:
            await gate.wait()
        except asyncio.CancelledError:
            await gate.wait()
        return await opening()

    t._channel = slow_channel
    group._rebalancer.cancel()
    group._rebalancer = asyncio.ensure_future(consumer.rejoin())
    await eventually(lambda: consumer._channel is None)  # waiting in open()
    asyncio.get_running_loop().call_later(0.2, gate.set)
    assert await bus.unsubscribe(pattern, work, group="g") is True
    t._channel = opening
    await asyncio.sleep(0.3)
    for n in range(20):
        await publisher.publish(f"{root}.jobs.run", n, key=f"k{n}")
    await settle(1.0)
    assert got == [], "a handler got events after unsubscribe() returned"
    assert consumer._channel is None
    await publisher.close()
    await bus.close()
