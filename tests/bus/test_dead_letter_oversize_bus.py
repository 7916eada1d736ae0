"""The bus's own dead letter over the broker's message size limit: a record that says so.

A dead letter is its event with failure metadata (``dlreason``, ``dlattempts``, ...), so
an event that fit the broker's limit can have a dead letter that does not. Each
transport refuses it on publish (NATS and RabbitMQ before sending it, against the
server's ``max_payload`` and the ``max_message_size`` option; Redis's server answers
``Protocol error: invalid bulk length`` past its ``proto-max-bulk-len``), and the bus
logged only the generic "could not publish dead letter ..." with a traceback, the same
as for an outage. Now it is an ERROR record of kind ``dead_letter_dropped`` (as
RabbitMQ's delivery limit logs such a drop) saying the dead letter's size, the limit
where it is known, and that it is dropped.

On the real brokers, each with names of the test's own, deleted after it. Redis's
``proto-max-bulk-len`` (at least 1 MB) is lowered only while the test publishes, and
restored in a ``finally`` (other tests use the same server).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports import Transport
from pepperpy.event.transports.nats import NatsTransport
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from pepperpy.event.transports.redis import RedisTransport
from tests.conftest import unique_name
from tests.helpers import eventually

MiB = 1024 * 1024


def event_of_size(topic: str, size: int) -> Event:
    """An event whose CloudEvents JSON is exactly ``size`` bytes."""
    event = Event(topic, {"blob": ""})
    return event.replace(data={"blob": "x" * (size - len(event.to_json()))})


def _dropped(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if vars(r).get("kind") == "dead_letter_dropped"]


async def _poison(
    transport: Transport, size: int, caplog: pytest.LogCaptureFixture
) -> tuple[Event, logging.LogRecord]:
    """Publish an event of ``size`` bytes that its handler fails on, through a bus on
    ``transport``; return it and the bus's ``dead_letter_dropped`` record."""
    caplog.set_level(logging.ERROR, "pepperpy.event.bus")
    topic = unique_name("t") + ".big"
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    tries: list[str] = []

    @bus.subscribe(topic, group="workers")
    async def fail(event: Event) -> None:
        tries.append(event.id)
        raise RuntimeError("boom")

    event = event_of_size(topic, size)
    async with asyncio.timeout(60), bus:
        await transport.publish(event)  # it fits: stored, delivered, failed
        await eventually(lambda: bool(_dropped(caplog)), timeout=20)
    [record] = _dropped(caplog)
    assert record.name == "pepperpy.event.bus"
    assert record.levelno == logging.ERROR
    assert tries == [event.id]
    assert [letter.event.id for letter in bus.dead_letters] == [event.id]
    fields = vars(record)
    assert fields["event_id"] == event.id
    assert fields["event_type"] == topic
    assert fields["group"] == "workers"
    assert fields["dead_letter_topic"] == "deadletter." + topic
    assert fields["size"] > size  # the dead letter, not the event
    message = record.getMessage()
    assert message.startswith(f"cannot publish dead letter {fields['dead_letter_id']} for {topic}")
    assert f"it is {fields['size']:,} bytes, over the broker's message size limit" in message
    assert "the dead letter is dropped" in message
    # not also the generic failure, with its traceback
    assert "could not publish dead letter" not in caplog.text
    return event, record


@pytest.mark.nats
async def test_nats_a_dead_letter_over_max_payload(
    nats_url: str, names: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    transport = NatsTransport(nats_url, **names)
    probe = NatsTransport(nats_url, **names)  # the server's max_payload
    async with asyncio.timeout(30):
        await probe.start()
        assert probe._nc is not None
        limit = probe._nc.max_payload
        await probe.close()
    _, record = await _poison(transport, limit - 80, caplog)  # its header: about 60 bytes
    assert vars(record)["limit"] == limit
    assert f"limit of {limit:,} bytes (the NATS server's max_payload)" in record.getMessage()


@pytest.mark.rabbitmq
async def test_rabbitmq_a_dead_letter_over_max_message_size(
    rabbitmq_transports: Callable[..., RabbitMQTransport], caplog: pytest.LogCaptureFixture
) -> None:
    transport = rabbitmq_transports(max_message_size=4096)
    _, record = await _poison(transport, 4096 - 40, caplog)
    assert vars(record)["limit"] == 4096
    assert "limit of 4,096 bytes (the transport's max_message_size option)" in (record.getMessage())


@asynccontextmanager
async def redis_bulk_limit(redis_url: str, limit: int) -> AsyncIterator[None]:
    """Redis's ``proto-max-bulk-len`` is ``limit`` inside, what it was again after."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        was = (await client.config_get("proto-max-bulk-len"))["proto-max-bulk-len"]
        try:
            await client.config_set("proto-max-bulk-len", limit)
            yield
        finally:
            await client.config_set("proto-max-bulk-len", was)
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_redis_a_dead_letter_over_proto_max_bulk_len(
    redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    transport = RedisTransport(redis_url, namespace=namespace)
    async with redis_bulk_limit(redis_url, MiB):  # Redis's least
        _, record = await _poison(transport, MiB - 40, caplog)
    assert "limit" not in vars(record)  # Redis does not say its limit
    assert "message size limit (Redis's proto-max-bulk-len)" in record.getMessage()
