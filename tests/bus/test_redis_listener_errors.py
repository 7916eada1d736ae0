"""Redis readers survive what another client does to their keys.

A stream key replaced by a string (``WRONGTYPE``), a consumer group destroyed by an
operator (``NOGROUP``) or a stream deleted: each reader logs it with the key, backs off,
reads on where it can, and delivers again once the key is a stream again
(docs/transport-redis.md, Reconnecting). Before, the shared listener ended for good on
the first such error (every ungrouped subscription of the process went quiet, the error
surfaced only at close()), a lagging subscription stopped catching up for good, and a
group made a vanished consumer group anew at ``$``, losing what had been published since.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.redis import RedisTransport
from pepperpy.event.transports.redis._config import partition_of
from tests.helpers import eventually

pytestmark = pytest.mark.redis

LOGGER = "pepperpy.event.transports.redis"


def key_of(partition: int, partitions: int) -> str:
    """A partition key that routes to ``partition``."""
    return next(
        key for key in (f"k{n}" for n in range(1000)) if partition_of(key, partitions) == partition
    )


def fields(topic: str, data: Any) -> dict[str, str]:
    """A stream entry as the transport writes it."""
    return {"topic": topic, "event": Event(topic, data).to_json()}


def naming(caplog: pytest.LogCaptureFixture, *needles: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if all(n in r.getMessage() for n in needles)]


async def test_the_listener_reads_on_when_a_stream_key_is_replaced_by_a_string(
    redis_url: str,
    namespace: str,
    client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    transport = RedisTransport(f"{redis_url}?namespace={namespace}&partitions=2&trim_interval=off")
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    broken, healthy = key_of(0, 2), key_of(1, 2)
    stream = transport.stream_for("o.made", broken)
    seen: list[int] = []

    @bus.subscribe("o.*")
    def record(event: Event) -> None:
        seen.append(event.data)

    async with asyncio.timeout(30), bus:
        await bus.publish("o.made", 1, key=broken)
        await bus.publish("o.made", 2, key=healthy)
        await eventually(lambda: sorted(seen) == [1, 2])
        await client.delete(stream)
        await client.set(stream, "not a stream")
        await eventually(lambda: bool(naming(caplog, stream, "string")))
        # the other partition is read on meanwhile
        await bus.publish("o.made", 3, key=healthy)
        await eventually(lambda: 3 in seen)
        # restored: deleted, the next publish makes the stream anew
        await client.delete(stream)
        await bus.publish("o.made", 4, key=broken)
        await eventually(lambda: 4 in seen)
        await bus.publish("o.made", 5, key=healthy)
        await eventually(lambda: 5 in seen)
        task = transport._listener._task  # type: ignore[union-attr]
        assert task is not None and not task.done()
    assert sorted(seen) == [1, 2, 3, 4, 5]
    [error] = naming(caplog, stream, "string")  # once, not at every retry
    assert error.levelno == logging.ERROR and "not a stream" in error.getMessage()
    assert naming(caplog, stream, "is a stream again")


async def test_the_listener_waits_while_its_only_stream_is_unreadable(
    redis_url: str,
    namespace: str,
    client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # one partition: nothing left to read while it is broken; the listener must neither
    # end nor spin, and read the stream again once it is one
    caplog.set_level(logging.WARNING, logger=LOGGER)
    transport = RedisTransport(f"{redis_url}?namespace={namespace}&partitions=1&trim_interval=off")
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    stream = transport.stream_for("o.made")
    seen: list[int] = []
    checks = reads = 0

    @bus.subscribe("o.*")
    def record(event: Event) -> None:
        seen.append(event.data)

    async with asyncio.timeout(30), bus:
        await bus.publish("o.made", 1)
        await eventually(lambda: seen == [1])
        await client.set(stream, "not a stream")
        await eventually(lambda: bool(naming(caplog, stream, "string")))
        listener: Any = transport._listener
        shared = listener._client

        class Counting:
            def __getattr__(self, name: str) -> Any:
                return getattr(shared, name)

            def pipeline(self, *args: Any, **kwargs: Any) -> Any:
                nonlocal checks
                checks += 1
                return shared.pipeline(*args, **kwargs)

            async def xread(self, *args: Any, **kwargs: Any) -> Any:
                nonlocal reads
                reads += 1
                return await shared.xread(*args, **kwargs)

        listener._client = Counting()
        # it checks the key again (TYPE, one pipeline each time) with pauses in between,
        # and sends no read while there is nothing it can read
        await eventually(lambda: checks >= 2)
        assert reads == 0 and not listener._task.done()
        await client.delete(stream)
        await bus.publish("o.made", 2)
        await eventually(lambda: seen == [1, 2])
    [error] = naming(caplog, stream, "string")
    assert error.levelno == logging.ERROR


async def test_a_lagging_subscription_catches_up_after_its_stream_was_replaced(
    redis_url: str,
    namespace: str,
    client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The subscription fell behind on partition 0 and reads it by itself; then another
    # client replaces the stream's key. Before, its catch-up task ended on WRONGTYPE and
    # the partition stayed "behind" for good: nothing of it reached the subscription
    # again, even once the stream was back.
    caplog.set_level(logging.WARNING, logger=LOGGER)
    transport = RedisTransport(
        f"{redis_url}?namespace={namespace}&partitions=2&batch_size=2&trim_interval=off"
    )
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    stream = transport.stream_for("o.made")
    gate = asyncio.Semaphore(0)
    seen: list[int] = []

    @bus.subscribe("o.*")
    async def slow(event: Event) -> None:
        await gate.acquire()
        seen.append(event.data)

    async with asyncio.timeout(30), bus:
        listener: Any = transport._listener
        feed = listener._feeds[0]
        p = listener.partitions[stream.encode()]
        for n in range(6):  # one in the handler, two in its lane, the rest left behind
            await bus.publish("o.made", n)
        await eventually(lambda: p in feed._behind)
        await client.delete(stream)
        await client.set(stream, "not a stream")
        for _ in range(3):  # what it had read; then room for a catch-up read
            gate.release()
        await eventually(lambda: bool(naming(caplog, stream, "string")))
        await client.delete(stream)
        await bus.publish("o.made", 100)
        for _ in range(10):
            gate.release()
        await eventually(lambda: 100 in seen)
    assert seen[:3] == [0, 1, 2] and seen[-1] == 100
    assert naming(caplog, stream, "string")[0].levelno == logging.ERROR


async def test_a_group_makes_a_destroyed_consumer_group_anew_where_it_had_read(
    redis_url: str,
    namespace: str,
    client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An operator destroys the consumer group while a member handles an event; an event
    # is published before the member reads again. Before, the member made the group
    # anew at "$" (on every partition): that event was never delivered.
    caplog.set_level(logging.WARNING, logger=LOGGER)
    transport = RedisTransport(f"{redis_url}?namespace={namespace}&partitions=1&trim_interval=off")
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    stream = transport.stream_for("o.made")
    group = "billing:o.*"
    handling = asyncio.Event()
    gate = asyncio.Event()
    seen: list[int] = []

    @bus.subscribe("o.*", group="billing")
    async def bill(event: Event) -> None:
        if event.data == 1:
            handling.set()
            await gate.wait()
        seen.append(event.data)

    async with asyncio.timeout(30), bus:
        await bus.publish("o.made", 1)
        await handling.wait()
        await client.xgroup_destroy(stream, group)
        await bus.publish("o.made", 2)  # the member is busy: it reads this after the destroy
        gate.set()
        await eventually(lambda: seen == [1, 2])
        [info] = await client.xinfo_groups(stream)
        assert info["name"].decode() == group
    [error] = naming(caplog, stream, "'billing:o.*'", "made it anew")
    assert error.levelno == logging.ERROR
    assert "XGROUP DESTROY" in error.getMessage()


async def test_a_group_reads_on_once_its_stream_key_is_a_stream_again(
    redis_url: str,
    namespace: str,
    client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # WRONGTYPE while another client holds the key: logged once with the key, retried
    # with a backoff. Then the key is deleted and an event appended in one transaction
    # (as a publish right after the DEL may be): the new stream has no group. Before, the
    # member made the group anew at "$", after that event, which was never delivered.
    caplog.set_level(logging.WARNING, logger=LOGGER)
    transport = RedisTransport(f"{redis_url}?namespace={namespace}&partitions=1&trim_interval=off")
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    stream = transport.stream_for("o.made")
    seen: list[int] = []

    @bus.subscribe("o.*", group="billing")
    def bill(event: Event) -> None:
        seen.append(event.data)

    async with asyncio.timeout(30), bus:
        await bus.publish("o.made", 1)
        await eventually(lambda: seen == [1])
        pipe = client.pipeline(transaction=True)
        pipe.delete(stream)
        pipe.set(stream, "not a stream")
        await pipe.execute()
        await eventually(lambda: bool(naming(caplog, stream, "WRONGTYPE")))
        pipe = client.pipeline(transaction=True)
        pipe.delete(stream)
        pipe.xadd(stream, fields("o.made", 2))
        await pipe.execute()
        await eventually(lambda: seen == [1, 2])
        await bus.publish("o.made", 3)
        await eventually(lambda: seen == [1, 2, 3])
    [refused] = naming(caplog, stream, "WRONGTYPE")  # once, not at every retry
    assert refused.levelno == logging.ERROR and "'billing:o.*'" in refused.getMessage()
    assert naming(caplog, stream, "made it anew")
    assert naming(caplog, stream, "is read again")


async def test_trim_skips_a_stream_key_replaced_by_a_string(
    redis_url: str, namespace: str, client: aioredis.Redis
) -> None:
    # Before, trim() raised WRONGTYPE at the first such key and trimmed none of the
    # streams after it, at every pass of the periodic trimmer.
    transport = RedisTransport(f"{redis_url}?namespace={namespace}&partitions=2&trim_interval=off")
    broken, healthy = key_of(0, 2), key_of(1, 2)
    async with transport:
        for n in range(3):
            await transport.publish(Event("o.made", n), key=healthy)
        stream = transport.stream_for("o.made", broken)
        await client.set(stream, "not a stream")
        # older_than=0 trims what is older than this millisecond: the three entries may
        # still be of this one (they were, now and then, on an idle machine)
        [(last, _)] = await client.xrevrange(transport.stream_for("o.made", healthy), count=1)
        await eventually(lambda: time.time() * 1000 > int(last.split(b"-")[0]) + 1)
        assert await transport.trim(older_than=0) == 3
        assert await client.xlen(transport.stream_for("o.made", healthy)) == 0
        assert await client.get(stream) == b"not a stream"
