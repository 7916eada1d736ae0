"""Redis and NATS: a dead letter of their delivery limit over the server's size limit.

After ``max_deliveries`` the Redis and NATS transports publish the event's dead letter
themselves. A dead letter is the event plus its failure metadata, so an event that fit
the server's limit can have one that does not. NATS dropped it with a message of its own
(no ``kind``, no fields), where RabbitMQ logs ``dead_letter_dropped`` (2dc669d); Redis
sent it, the server refused it (``Protocol error: invalid bulk length`` past its
``proto-max-bulk-len``), and the entry stayed pending, to be claimed, delivered to the
dead-lettering again and refused again, for ever. Now both end such an event with the
same ``dead_letter_dropped`` ERROR record as RabbitMQ's (event_id, event_type, group,
deliveries, size, limit, transport) and acknowledge it: once, never again.

With ``replicas``, a Redis publish goes through another path (``XADD`` and ``WAIT`` on
one connection); a message over ``proto-max-bulk-len`` raises :class:`OversizeError`
there too, not a plain :class:`TransportError` like an outage's.

On the real servers, with names of the test's own, deleted after it. Redis's
``proto-max-bulk-len`` (at least 1 MiB) is lowered only for the test's duration and
restored in a ``finally`` (other tests use the same server); NATS's ``max_payload`` is the
server's own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pepperpy.event import Event
from pepperpy.event._oversize import OversizeError
from pepperpy.event.transports import Subscription, Transport
from pepperpy.event.transports.nats import NatsTransport
from pepperpy.event.transports.redis import RedisTransport
from tests.bus.test_dead_letter_oversize_bus import MiB, event_of_size, redis_bulk_limit
from tests.conftest import unique_name
from tests.helpers import eventually, settle


def _kind(caplog: pytest.LogCaptureFixture, kind: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if vars(r).get("kind") == kind]


async def _give_up_on(
    transport: Transport, event: Event, caplog: pytest.LogCaptureFixture
) -> tuple[logging.LogRecord, list[str], list[Event]]:
    """Publish ``event`` to a group handler that always fails (with ``max_deliveries``
    1 on ``transport``) until the transport drops its dead letter; returns the
    ``dead_letter_dropped`` record, the handler's tries and the dead letters received."""
    topic = event.type
    tries: list[str] = []
    dead: list[Event] = []

    async def fail(received: Event) -> None:
        tries.append(received.id)
        raise RuntimeError("boom")

    async def keep(received: Event) -> None:
        dead.append(received)

    await transport.subscribe(Subscription(topic, fail, "workers", "fail"))
    await transport.subscribe(Subscription("deadletter.#", keep, None, "keep"))
    await transport.publish(event)  # it fits: stored, delivered, failed
    await eventually(lambda: bool(_kind(caplog, "dead_letter_dropped")), timeout=20)
    [record] = _kind(caplog, "dead_letter_dropped")
    assert record.levelno == logging.ERROR
    fields = vars(record)
    assert fields["event_id"] == event.id
    assert fields["event_type"] == topic
    assert fields["group"] == "workers"
    assert fields["deliveries"] == 1
    assert fields["size"] > len(event.to_json())  # the dead letter's, not the event's
    message = record.getMessage()
    assert message.startswith(
        f"cannot dead-letter {topic} ({event.id}): its dead letter deadletter.{topic} is "
        f"{fields['size']:,} bytes, over the broker's "
    )
    assert message.endswith("; the event is dropped")
    # one record for the event: not also one saying it was dead-lettered
    assert _kind(caplog, "broker_dead_letter") == []
    return record, tries, dead


@pytest.mark.redis
async def test_redis_drops_its_dead_letter_over_proto_max_bulk_len_and_acknowledges(
    redis_url: str, namespace: str, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "pepperpy.event.transports.redis")
    transport = RedisTransport(
        redis_url, namespace=namespace, partitions=1, max_deliveries=1, max_backoff=0.05
    )
    topic = unique_name("t") + ".big"
    event = event_of_size(topic, MiB - 40)  # it fits; its dead letter does not
    async with asyncio.timeout(90), redis_bulk_limit(redis_url, MiB):
        try:
            await transport.start()
            record, tries, dead = await _give_up_on(transport, event, caplog)
            fields = vars(record)
            assert "limit" not in fields  # Redis does not say its limit
            assert fields["size"] > MiB
            assert "127.0.0.1:6379" in fields["transport"]
            assert "over the broker's proto-max-bulk-len (Redis answered " in (record.getMessage())
            stream = transport._streams[0]
            # acknowledged: nothing left pending to be claimed, delivered and refused again
            await _no_pending(client, stream, f"workers:{topic}")
            await settle()
            assert tries == [event.id]  # delivered once, given up on once, never again
            assert len(_kind(caplog, "dead_letter_dropped")) == 1
            assert dead == []
            # not also the worker's "unexpected error" for a refused publish
            assert "unexpected error" not in caplog.text
            # the connection Redis closed on the refusal is replaced: publishing works
            await transport.publish(Event(topic.replace(".big", ".small"), "y"))
        finally:
            await transport.close()


async def _no_pending(client: Any, stream: str, group: str) -> None:
    """Wait (bounded) until ``group`` has nothing pending on ``stream``: the drop's
    acknowledgement is sent in the background, with the other acks."""
    for _ in range(200):
        summary: Any = await client.xpending(stream, group)
        if summary["pending"] == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"still pending on {stream}: {summary}")


@pytest.mark.nats
async def test_nats_drops_its_dead_letter_over_max_payload_with_the_same_record(
    nats_url: str, names: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "pepperpy.event.transports.nats")
    transport = NatsTransport(nats_url, **names, partitions=1, max_deliveries=1)
    topic = unique_name("t") + ".big"
    async with asyncio.timeout(90):
        try:
            await transport.start()
            assert transport._nc is not None
            limit = transport._nc.max_payload
            event = event_of_size(topic, limit - 80)  # its Nats-Msg-Id header: about 60 bytes
            record, tries, dead = await _give_up_on(transport, event, caplog)
            fields = vars(record)
            assert fields["limit"] == limit
            assert fields["size"] > limit
            assert fields["transport"] == transport.server
            assert f"over the broker's max_payload of {limit:,} bytes (" in record.getMessage()
            await settle()
            assert tries == [event.id]
            assert len(_kind(caplog, "dead_letter_dropped")) == 1
            assert dead == []
        finally:
            await transport.close()


@pytest.mark.redis
async def test_redis_with_replicas_raises_oversize_error_for_a_message_over_proto_max_bulk_len(
    redis_url: str, namespace: str
) -> None:
    transport = RedisTransport(redis_url, namespace=namespace, replicas=1, connect_timeout=5)
    topic = unique_name("t") + ".big"
    event = event_of_size(topic, MiB + 100)
    async with asyncio.timeout(60), redis_bulk_limit(redis_url, MiB):
        try:
            await transport.start()
            with pytest.raises(OversizeError) as raised:
                await transport.publish(event)
            assert raised.value.stored is False
            assert raised.value.size == MiB + 100
            assert raised.value.limit is None
            assert raised.value.source == "Redis's proto-max-bulk-len"
            assert "proto-max-bulk-len" in str(raised.value)
        finally:
            await transport.close()


@pytest.mark.redis
async def test_redis_a_message_over_proto_max_bulk_len_among_concurrent_publishes(
    redis_url: str, namespace: str, client: Any
) -> None:
    """Publishes made while one is in flight share a pipeline. Redis closes the
    connection on its refusal, so the publish after the large one in that pipeline
    (or the rest of the large message, still being written) meets a reset: the large
    one was retried like an outage's, refused again, and raised a plain TransportError,
    which the delivery limit could not tell from an outage (its dead letter looped).
    Now it raises OversizeError, and the other publishes are stored, once each."""
    transport = RedisTransport(redis_url, namespace=namespace, partitions=1, connect_timeout=5)
    topic = unique_name("t")
    big = event_of_size(topic + ".big", MiB + 100)
    small = [Event(topic + ".small", {"n": n}) for n in range(3)]
    async with asyncio.timeout(60), redis_bulk_limit(redis_url, MiB):
        try:
            await transport.start()
            results = await asyncio.gather(
                transport.publish(small[0]),  # goes at once: the others queue behind it
                transport.publish(big),
                transport.publish(small[1]),
                transport.publish(small[2]),
                return_exceptions=True,
            )
            stream = transport._streams[0]
        finally:
            await transport.close()
    assert results[0] is None and results[2:] == [None, None]
    error = results[1]
    assert isinstance(error, OversizeError), repr(error)
    assert error.stored is False
    assert error.size == len(big.to_json())
    entries: Any = await client.xrange(stream)
    stored = sorted(Event.from_json(fields[b"event"]).id for _, fields in entries)
    assert stored == sorted(event.id for event in small)
