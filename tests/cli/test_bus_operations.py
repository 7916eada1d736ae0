"""What an operator needs from ``pepperpy-event bus`` during operations (audit 3, findings
14 to 16): ``bus delete-group`` retires a group with its stored messages; ``bus tail``
shows the end of an outage it showed the start of, and why a dead letter died.

Against real brokers: a group's storage, and an outage, exist only there. Each test has
a Redis namespace (or a NATS stream and prefix) of its own, deleted after it.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.cli._bus import event_line
from pepperpy.event.cli._bus_logs import RECOVERIES
from pepperpy.event.transports.nats import NatsTransport
from pepperpy.event.transports.redis import RedisTransport
from tests.conftest import unique_name
from tests.faultproxy import FaultProxy
from tests.helpers import delete_redis_keys

from .test_bus_cli import WAIT, Tail, command
from .test_cli import one_line_error


@pytest.fixture
async def namespace(redis_url: str) -> AsyncIterator[str]:
    name = unique_name("pepcliops")
    yield name
    await delete_redis_keys(redis_url, f"{name}:*")


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Any]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def _groups(client: Any, streams: list[str]) -> list[dict[str, int]]:
    """Each stream's consumer groups, with how many entries each has pending."""
    return [
        {info["name"].decode(): info["pending"] for info in await client.xinfo_groups(stream)}
        for stream in streams
    ]


async def _keys(client: Any, pattern: str) -> list[str]:
    return sorted([key.decode() async for key in client.scan_iter(match=pattern)])


async def _group_with_pending_events(url: str, **options: Any) -> list[int]:
    """A group ``workers`` on ``jobs.*`` whose member took events and died before
    acknowledging them (as a SIGKILL would: member entry and leases stay), then 2 more
    events it never read; returns what its handler was given."""
    transport = RedisTransport(url, lease_ttl=60, trim_interval=None, **options)
    bus = EventBus(transport=transport)
    started: list[int] = []
    took = asyncio.Event()
    never = asyncio.Event()

    async def stuck(event: Event) -> None:
        started.append(event.data)
        took.set()
        await never.wait()

    bus.subscribe("jobs.*", stuck, group="workers")
    await bus.start()
    for n in range(3):
        await bus.publish("jobs.run", n, key="k")  # one key: one partition, in order
    await asyncio.wait_for(took.wait(), WAIT)
    t: Any = transport  # stop the member like a SIGKILL: nothing given back or acked
    for member in t._members:
        member._stopping = True
        tasks = [member._beater, *member._workers.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    t._members = []
    await transport.close()
    never.set()
    await bus.close()
    async with EventBus(transport=RedisTransport(url, trim_interval=None, **options)) as other:
        for n in range(3, 5):
            await other.publish("jobs.run", n)
    return started


@pytest.mark.redis
async def test_delete_group_yes_deletes_the_group_with_its_pending_events(
    redis_url: str, namespace: str, redis_client: Any, tmp_path: Path
) -> None:
    options = {"namespace": namespace, "partitions": 2}
    assert await _group_with_pending_events(redis_url, **options) == [0]
    streams = [f"{namespace}:stream:{p}" for p in range(2)]
    before = await _groups(redis_client, streams)
    assert all(set(groups) == {"workers:jobs.*"} for groups in before), before
    assert sum(groups["workers:jobs.*"] for groups in before) >= 1, before
    assert await _keys(redis_client, f"{namespace}:group:*"), "the dead member's keys"

    url = f"{redis_url}?namespace={namespace}&partitions=2"
    done = await command(
        "bus", "delete-group", "jobs.*", "workers", "--yes", "--transport", url, cwd=tmp_path
    )
    assert done.code == 0, done.err
    assert done.err == "", done.err
    assert done.out == (
        f"deleted group workers on jobs.* at {url} (nothing to delete if it did not exist)\n"
    )
    assert await _groups(redis_client, streams) == [{}, {}]
    assert await _keys(redis_client, f"{namespace}:group:*") == []
    again = await command(
        "bus", "delete-group", "jobs.*", "workers", "--yes", "--transport", url, cwd=tmp_path
    )
    assert again.code == 0 and again.out.startswith("deleted group workers"), again.err


@pytest.mark.redis
async def test_delete_group_without_yes_and_no_terminal_is_refused(
    redis_url: str, namespace: str, redis_client: Any, tmp_path: Path
) -> None:
    options = {"namespace": namespace, "partitions": 1}
    await _group_with_pending_events(redis_url, **options)
    url = f"{redis_url}?namespace={namespace}&partitions=1"
    refused = await command(
        "bus", "delete-group", "jobs.*", "workers", "--transport", url, cwd=tmp_path
    )
    one_line_error(
        refused,
        f"not deleting group workers on jobs.* at {url}: it drops the events the group has "
        "not handled, and stdin is not a terminal to ask on; pass --yes to delete it",
    )
    assert refused.out == ""
    [groups] = await _groups(redis_client, [f"{namespace}:stream:0"])
    assert set(groups) == {"workers:jobs.*"} and groups["workers:jobs.*"] >= 1, groups


@pytest.mark.nats
async def test_delete_group_yes_on_nats_deletes_the_group_consumers(
    nats_url: str, tmp_path: Path
) -> None:
    import nats

    name = unique_name("pepcliops")
    stream = name.upper()
    url = f"{nats_url}?stream={stream}&prefix={name}&partitions=2"
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        bus = EventBus(transport=url)
        bus.subscribe("jobs.*", lambda event: None, group="workers")
        async with bus:
            await bus.publish("jobs.run", 1)
        before = await js.consumers_info(stream)
        assert len(before) == 3, before  # partitions + 1 durable consumers
        done = await command(
            "bus", "delete-group", "jobs.*", "workers", "--yes", "--transport", url, cwd=tmp_path
        )
        assert done.code == 0 and done.out.startswith("deleted group workers"), done.err
        assert await js.consumers_info(stream) == []
    finally:
        await nc.close()
        await asyncio.wait_for(NatsTransport(nats_url, stream=stream).delete_stream(), WAIT)


#: per broker: its port, the URL through the proxy (``{port}``, ``{name}``), the outage's
#: warning and the start of its recovery line (after ``at <where>``)
OUTAGES = {
    "redis": (
        6379,
        "redis://127.0.0.1:{port}/0?namespace={name}&max_backoff=0.2",
        "Redis at 127.0.0.1:{port} is unreachable",
        "Redis at 127.0.0.1:{port} is reachable again after ",
    ),
    "nats": (
        4222,
        "nats://127.0.0.1:{port}?stream={stream}&prefix={name}&reconnect_wait=0.2",
        "disconnected from NATS at nats://127.0.0.1:{port}",
        "reconnected to NATS at nats://127.0.0.1:{port} after ",
    ),
    "rabbitmq": (
        5672,
        "amqp://guest:guest@127.0.0.1:{port}/?exchange={name}&reconnect_interval=0.2",
        "lost the connection to RabbitMQ at amqp://guest:***@127.0.0.1:{port}/",
        "the connection to RabbitMQ at amqp://guest:***@127.0.0.1:{port}/ is back after ",
    ),
}


async def _forget_broker(broker: str, port: int, name: str) -> None:
    """Delete what the test made on ``broker`` (Redis keys, the stream, the exchange)."""
    if broker == "redis":
        await delete_redis_keys("redis://127.0.0.1:6379/0", f"{name}:*")
        return
    direct = OUTAGES[broker][1].format(port=port, name=name, stream=name.upper())
    from pepperpy.event.transports import transport_from_url

    transport: Any = transport_from_url(direct)
    await asyncio.wait_for(transport.delete_topology(), WAIT)


@pytest.mark.parametrize(
    "broker",
    [
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("nats", marks=pytest.mark.nats),
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
    ],
)
async def test_tail_shows_the_end_of_an_outage_it_warned_about(
    broker: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Without -v: the outage's WARNING, then its recovery INFO, and no other INFO; the
    tail goes on printing after it."""
    request.getfixturevalue({"redis": "redis_url", "nats": "nats_url"}.get(broker, "amqp_url"))
    upstream, template, warned, recovered = OUTAGES[broker]
    name = unique_name("pepcliops")
    seen: list[str] = []

    async def stderr_until(text: str) -> None:
        async with asyncio.timeout(WAIT):
            while text not in (seen or [""])[-1]:
                line = (await tail.stderr.readline()).decode()
                assert line, f"the tail's stderr ended before {text!r}: {seen}"
                seen.append(line.rstrip("\n"))

    try:
        async with FaultProxy(upstream) as proxy:
            url = template.format(port=proxy.port, name=name, stream=name.upper())
            tail = await Tail.start("jobs.#", "--transport", url, cwd=tmp_path)
            try:
                proxy.refuse()
                proxy.drop()
                await stderr_until(warned.format(port=proxy.port))
                proxy.heal()
                await stderr_until(recovered.format(port=proxy.port))
                direct = template.format(port=upstream, name=name, stream=name.upper())
                async with EventBus(transport=direct) as publisher:
                    sent = await publisher.publish("jobs.run", {"n": 1})
                printed = await tail.line()
                tail.process.send_signal(signal.SIGTERM)
                code, out, err = await tail.finish()
            finally:
                await tail.stop()
    finally:
        await _forget_broker(broker, upstream, name)
    assert code == 0 and out == "", err
    assert printed.split()[3] == sent.id, printed
    lines = seen + err.splitlines()
    info = [line for line in lines if line.startswith("pepperpy-event: info:")]
    assert len(info) == 1 and info[0] == seen[-1], lines
    assert info[0].startswith("pepperpy-event: info: " + recovered.format(port=proxy.port))
    assert all(line.startswith("pepperpy-event: ") for line in lines), lines


def test_each_recovery_message_is_the_one_its_transport_logs() -> None:
    """The tail recognises a recovery by its logger and format string: a reworded one
    would be hidden again, so each must still be what its transport's module logs."""
    modules = {
        "pepperpy.event.transports.redis": "pepperpy.event.transports.redis._outage",
        "pepperpy.event.transports.nats": "pepperpy.event.transports.nats._outage",
        "pepperpy.event.transports.rabbitmq": "pepperpy.event.transports.rabbitmq._logs",
    }
    assert set(modules) == set(RECOVERIES)
    for logger, name in modules.items():
        module = importlib.import_module(name)
        assert module.logger.name == logger, name
        assert f'"{RECOVERIES[logger]}' in inspect.getsource(module), (logger, RECOVERIES[logger])


def _letter(**metadata: Any) -> Event:
    when = datetime(2026, 12, 6, 10, 4, 59, 517000, tzinfo=UTC)
    event = Event("deadletter.jobs.run", {"n": 5}, metadata=metadata, timestamp=when)
    return event


def test_a_dead_letter_line_says_why_and_whence() -> None:
    letter = _letter(
        dlreason="RuntimeError: no stock for kettle",
        dlid="01a24b48-10e0-7000-8000-000000000001",
        dlgroup="workers",
        dlattempts=5,
    )
    assert event_line(letter) == (
        f'2026-12-06T10:04:59.517Z deadletter.jobs.run - {letter.id} {{"n":5}} '
        'dlreason="RuntimeError: no stock for kettle" '
        "dlid=01a24b48-10e0-7000-8000-000000000001 dlgroup=workers dlattempts=5"
    )
    ungrouped = _letter(dlreason="x" * 300 + "\nsecond line", dlid="i", dlattempts=1)
    tail = event_line(ungrouped).split(' {"n":5} ', 1)[1]
    assert tail == f"dlreason={'x' * 197}... dlid=i dlgroup=- dlattempts=1", tail
    plain = Event("jobs.run", {"n": 5}, metadata={"dlreason": "not a dead letter"})
    assert "dlreason" not in event_line(plain)


@pytest.mark.redis
async def test_tail_of_dead_letters_shows_the_reason_without_json(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    url = f"{redis_url}?namespace={namespace}"

    async def fails(event: Event) -> None:
        raise RuntimeError("no stock for " + event.data["sku"])

    tail = await Tail.start("deadletter.#", "--count", "1", "--transport", url, cwd=tmp_path)
    try:
        async with EventBus(transport=url, retry_policy=RetryPolicy.NONE) as bus:
            bus.subscribe("orders.*", fails, group="warehouse")
            await bus.start()
            failed = await bus.publish("orders.placed", {"sku": "kettle"})
            code, out, err = await tail.finish()
    finally:
        await tail.stop()
    assert code == 0, err
    fields = out.rstrip("\n").split(" ", 4)
    assert fields[1] == "deadletter.orders.placed", out
    assert fields[4] == (
        '{"sku":"kettle"} dlreason="RuntimeError: no stock for kettle" '
        f"dlid={failed.id} dlgroup=warehouse dlattempts=1"
    ), out


@pytest.mark.parametrize("answer", ["n", ""])
def test_delete_group_at_a_terminal_asks_and_a_no_deletes_nothing(
    tmp_path: Path, answer: str
) -> None:
    """Declined (or Enter: the default is no), it stops before connecting: nothing listens
    at the URL, and the error is not a connection error."""
    import os
    import pty
    import subprocess
    import sys

    from .conftest import command_env

    leader, follower = pty.openpty()
    try:
        os.write(leader, f"{answer}\n".encode())
        done = subprocess.run(
            [sys.executable, "-m", "pepperpy.event", "bus", "delete-group", "jobs.*", "workers"],
            cwd=tmp_path,
            env=command_env({"PEPPERPY_EVENT_TRANSPORT": "redis://127.0.0.1:1/0"}),
            stdin=follower,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(follower)
        os.close(leader)
    question = (
        "Delete group workers on jobs.* at redis://127.0.0.1:1/0, with the events it has "
        "not handled? [y/N]: "
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == (
        f"{question}pepperpy-event: error: not deleted: group workers on jobs.* at "
        "redis://127.0.0.1:1/0 is left as it was\n"
    ), done.stderr
    assert done.stdout == ""
