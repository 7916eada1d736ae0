"""A message nested deeper than an event may be is dropped with a clear log line, and the
messages after it are delivered, on every broker.

Another program may publish any JSON. orjson reads it up to 1,024 levels deep; an event's
data and metadata hold at most ``MAX_DEPTH`` levels. Data deeper than that was refused,
but metadata deeper than that was delivered (an event no transport could send again), and
a document deeper than orjson reads is refused by the parser. Each is malformed input:
logged at ERROR with what is wrong (no traceback), settled, and consumption goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event._frozen import MAX_DEPTH
from pepperpy.event.transports.nats import NatsTransport
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from pepperpy.event.transports.redis import RedisTransport
from tests.conftest import unique_name
from tests.core.test_freeze_depth import nested
from tests.helpers import eventually, settle


def document(event_id: str, **extra: Any) -> bytes:
    """A CloudEvent of type ``jobs.deep`` (json: orjson writes at most 254 levels)."""
    head = {"specversion": "1.0", "id": event_id, "source": "urn:other", "type": "jobs.deep"}
    return json.dumps({**head, **extra}).encode()


#: each message by its id, and what the log line about it says (None: it is delivered)
MESSAGES: dict[str, tuple[bytes, str | None]] = {
    "deep-data": (
        document("deep-data", data=nested(MAX_DEPTH + 1, "dict")),
        ": data is nested more than 253 levels of lists and objects deep",
    ),
    "deep-metadata": (
        document("deep-metadata", deep=nested(MAX_DEPTH, "list")),  # the dict is one more
        ": metadata is nested more than 253 levels of lists and objects deep",
    ),
    "deeper-than-json": (
        b'{"specversion":"1.0","id":"x","data":' + b"[" * 2000 + b"]" * 2000 + b"}",
        "invalid JSON: depth limit exceeded",
    ),
    "at-the-limit": (
        document(
            "at-the-limit",
            data=nested(MAX_DEPTH, "list"),
            deep=nested(MAX_DEPTH - 1, "dict"),
        ),
        None,
    ),
}
DELIVERED = ["at-the-limit", "good"]


def check_logs(caplog: pytest.LogCaptureFixture) -> None:
    """One ERROR line per dropped message, saying what is wrong, with no traceback."""
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    for name, (_, problem) in MESSAGES.items():
        if problem is not None:
            lines = [r for r in errors if problem in r.getMessage()]
            assert len(lines) == 1, (name, [r.getMessage()[:200] for r in errors])
            assert not lines[0].exc_info, name
    assert len(errors) == 3


def received(into: list[str]) -> Any:
    def handler(event: Event) -> None:
        into.append(event.id)

    return handler


@pytest.fixture
async def nats_names(nats_url: str) -> AsyncIterator[dict[str, str]]:
    name = unique_name("pep_deep")
    yield {"stream": name.upper(), "prefix": name}
    await NatsTransport(nats_url, stream=name.upper()).delete_stream()


@pytest.mark.nats
async def test_nats_drops_deep_messages_and_delivers_the_rest(
    nats_url: str, nats_names: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    import nats

    caplog.set_level(logging.ERROR, logger="pepperpy.event")
    bus = EventBus(
        transport=NatsTransport(nats_url, partitions=1, **nats_names),
        retry_policy=RetryPolicy.NONE,
    )
    got: list[str] = []
    bus.subscribe("jobs.*", group="workers")(received(got))
    async with bus:
        nc = await nats.connect(nats_url)
        try:  # on the group's only key lane: a message left unsettled would stop it
            for body, _ in MESSAGES.values():
                await nc.jetstream().publish(f"{nats_names['prefix']}.0.jobs.deep", body)
        finally:
            await nc.close()
        await bus.publish("jobs.deep", Event("jobs.deep", 1, id="good"), key="k")
        await eventually(lambda: len(got) == 2)
        await settle(0.2)
    assert got == DELIVERED
    check_logs(caplog)


@pytest.fixture
async def rabbitmq(amqp_url: str) -> AsyncIterator[RabbitMQTransport]:
    made = RabbitMQTransport(amqp_url, exchange=unique_name("pep.deep"), partitions=1, prefetch=1)
    yield made
    await made.close()
    await made.delete_topology()


@pytest.mark.rabbitmq
async def test_rabbitmq_drops_deep_messages_and_delivers_the_rest(
    amqp_url: str, rabbitmq: RabbitMQTransport, caplog: pytest.LogCaptureFixture
) -> None:
    import aio_pika

    caplog.set_level(logging.ERROR, logger="pepperpy.event")
    bus = EventBus(transport=rabbitmq, retry_policy=RetryPolicy.NONE)
    got: list[str] = []
    bus.subscribe("jobs.*", group="workers")(received(got))
    async with bus:
        async with await aio_pika.connect(amqp_url) as connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(rabbitmq.exchange_name)
            for body, _ in MESSAGES.values():  # one prefetch slot: one left unsettled stops all
                await exchange.publish(aio_pika.Message(body), routing_key="jobs.deep")
        await bus.publish("jobs.deep", Event("jobs.deep", 1, id="good"))
        await eventually(lambda: len(got) == 2)
        await settle(0.2)
    assert got == DELIVERED
    check_logs(caplog)


@pytest.mark.redis
async def test_redis_drops_deep_entries_and_delivers_the_rest(
    redis_url: str, namespace: str, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="pepperpy.event")
    transport = RedisTransport(redis_url, namespace=namespace, partitions=1, trim_interval=None)
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    got: list[str] = []
    bus.subscribe("jobs.*", group="workers")(received(got))
    async with bus:
        stream = transport.stream_for("jobs.deep")
        for body, _ in MESSAGES.values():
            await client.xadd(stream, {b"topic": b"jobs.deep", b"event": body})
        await bus.publish("jobs.deep", Event("jobs.deep", 1, id="good"))
        await eventually(lambda: len(got) == 2)
        await settle(0.2)
    assert got == DELIVERED
    check_logs(caplog)
