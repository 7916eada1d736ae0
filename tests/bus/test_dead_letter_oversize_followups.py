"""Follow-ups to the oversize dead letters (2dc669d, e7b6ee5, a816acf), on the real servers.

NATS: its delivery limit logged ``broker_dead_letter`` before publishing the dead letter,
so a dead letter JetStream refused was counted as dead-lettered though it was never
stored. One over the stream's ``max_msg_size`` (an operator's limit, which the
transport's own ``max_payload`` check does not know) was refused on every redelivery,
after each ``ack_wait``, for ever. Now JetStream's refusal is an :class:`OversizeError`,
the dead letter is dropped with the ``dead_letter_dropped`` ERROR record and the message
acknowledged, and ``broker_dead_letter`` is logged only once a dead letter is stored, as
on Redis and RabbitMQ. Any other failed publish still leaves the message unacknowledged,
for JetStream to deliver again.

Redis: it closes the connection on refusing a message over its ``proto-max-bulk-len``.
The publishes pipelined after the large one met that reset, and the transport reported
it as an outage: a WARNING "Redis at ... is unreachable", and ``outage_reason()``
"unreachable" until the next publish got through, while the server was fine. Now the
publishes a refusal's reset cut off are sent again without reporting an outage.

With names of the test's own, deleted after it. Redis's ``proto-max-bulk-len`` (at least
1 MiB) is lowered only for the test's duration and restored in a ``finally`` (other
tests use the same server).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pepperpy.event import Event
from pepperpy.event._oversize import OversizeError
from pepperpy.event.transports import Subscription
from pepperpy.event.transports.nats import NatsTransport
from pepperpy.event.transports.redis import RedisTransport
from tests.bus.test_dead_letter_oversize_bus import MiB, event_of_size, redis_bulk_limit
from tests.conftest import unique_name
from tests.helpers import eventually


def _kind(caplog: pytest.LogCaptureFixture, kind: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if vars(r).get("kind") == kind]


@pytest.mark.nats
async def test_nats_drops_a_dead_letter_over_the_streams_max_msg_size_uncounted(
    nats_url: str,
    nats_namespace: dict[str, str],
    nats_jetstream: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, "pepperpy.event.transports.nats")
    transport = NatsTransport(nats_url, **nats_namespace, partitions=1, max_deliveries=1)
    topic = unique_name("t")
    stream = nats_namespace["stream"]
    tries: list[str] = []

    async def fail(received: Event) -> None:
        tries.append(received.id)
        raise RuntimeError("boom")

    async with asyncio.timeout(60):
        try:
            await transport.start()
            # an operator's limit on the stream, under the server's max_payload
            config = (await nats_jetstream.stream_info(stream)).config
            config.max_msg_size = 4096
            await nats_jetstream.update_stream(config)
            await transport.subscribe(Subscription(topic + ".#", fail, "workers", "fail"))
            big = event_of_size(topic + ".big", 3900)  # it fits; its dead letter does not
            await transport.publish(big)
            await eventually(lambda: bool(_kind(caplog, "dead_letter_dropped")), timeout=20)
            [record] = _kind(caplog, "dead_letter_dropped")
            fields = vars(record)
            assert fields["event_id"] == big.id
            assert fields["group"] == "workers"
            assert fields["size"] > 4096
            assert "limit" not in fields  # JetStream does not say it
            assert record.getMessage().endswith(
                f"over the broker's max_msg_size (JetStream stream {stream!r} refused it); "
                "the event is dropped"
            )
            # the dropped dead letter is not also counted as dead-lettered
            assert _kind(caplog, "broker_dead_letter") == []
            assert not [r for r in caplog.records if "could not dead-letter" in r.getMessage()]
            # acknowledged: not delivered again (the next event comes after it)
            small = Event(topic + ".small", "x")
            await transport.publish(small)
            await eventually(lambda: bool(_kind(caplog, "broker_dead_letter")), timeout=20)
            [counted] = _kind(caplog, "broker_dead_letter")
            assert vars(counted)["event_id"] == small.id
            assert tries == [big.id, small.id]
            info = await nats_jetstream.consumers_info(stream)
            assert all(c.num_ack_pending == 0 for c in info if c.config.durable_name)
        finally:
            await transport.close()


#: the reset met while the large message was still being written: Redis closed the
#: connection before the transport could read its refusal (docs/transport-redis.md)
WRITING = "while writing to socket"


@pytest.mark.redis
async def test_redis_a_size_refusal_among_concurrent_publishes_is_no_outage(
    redis_url: str, namespace: str, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Up to 5 rounds: one where Redis closed the connection while the large message
    was still being written (the transport never read the refusal: a reset like a
    network's, still reported) does not count; the first other round is checked."""
    caplog.set_level(logging.DEBUG, "pepperpy.event.transports.redis")
    transport = RedisTransport(redis_url, namespace=namespace, partitions=1, connect_timeout=5)
    reasons: list[object] = []

    async def publish_watching(event: Event) -> None:
        try:
            await transport.publish(event)
        finally:
            reasons.append(transport.outage_reason())

    async with asyncio.timeout(60), redis_bulk_limit(redis_url, MiB):
        try:
            await transport.start()
            stream = transport._streams[0]
            for _ in range(5):
                caplog.clear()
                reasons.clear()
                topic = unique_name("t")
                big = event_of_size(topic + ".big", MiB + 100)
                small = [Event(topic + ".small", {"n": n}) for n in range(4)]
                results = await asyncio.gather(
                    transport.publish(small[0]),  # goes at once: the others queue behind it
                    publish_watching(big),  # first in the next pipeline, the others after it
                    *(publish_watching(event) for event in small[1:]),
                    return_exceptions=True,
                )
                assert results[0] is None and results[2:] == [None] * 3
                assert isinstance(results[1], OversizeError), repr(results[1])
                entries: Any = await client.xrange(stream)
                stored = [Event.from_json(fields[b"event"]) for _, fields in entries]
                assert sorted(e.id for e in stored if e.type.startswith(topic)) == sorted(
                    event.id for event in small
                )
                unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
                if not unreachable or not all(WRITING in r.getMessage() for r in unreachable):
                    break
                # the outage that round opened ends with the next publish that gets through
                await transport.publish(Event(topic + ".after", "x"))
        finally:
            await transport.close()
    # the server was fine all along: no outage logged, none reported
    assert unreachable == []
    assert _kind(caplog, "outage") == [] and _kind(caplog, "outage_over") == []
    assert reasons == [None] * 4
