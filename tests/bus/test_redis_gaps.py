"""A group told what maxlen trimmed before its first read (Redis 7.0 counters).

Redis 7.0 leaves a consumer group's ``entries-read`` unknown when ``XGROUP CREATE`` is
not given one, and at the group's first read estimates it from the stream's first entry:
whatever was trimmed before that read is then counted as read. A group made at
subscribe time that lost entries to ``maxlen`` before it read anything was never told
(docs/transport-redis.md, Retention and cleanup). The transport now makes its groups
with the count, and sets it where it is unknown (a group an operator or an earlier
version made) as soon as the stream's counters tell it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest
import redis.asyncio as aioredis

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.redis import RedisTransport
from tests.helpers import eventually

pytestmark = pytest.mark.redis

GROUP = "billing:o.*"


async def server_counts_entries(client: aioredis.Redis) -> None:
    info: Any = await client.info("server")
    if tuple(int(n) for n in info["redis_version"].split(".")[:2]) < (7, 0):
        pytest.skip("Redis 6.2 has no stream counters: such a loss is not reported there")


def fields(data: int) -> dict[str, str]:
    return {"topic": "o.made", "event": Event("o.made", data).to_json()}


def lost_in(records: list[logging.LogRecord], stream: str) -> int:
    """The entries the group's warnings count lost on ``stream``."""
    total = 0
    for record in records:
        text = record.getMessage()
        match = re.search(r"(\d+) entries of stream (\S+) ", text)
        if match and match.group(2) == stream and f"'{GROUP}'" in text:
            assert record.levelno == logging.WARNING and "trimmed" in text
            total += int(match.group(1))
    return total


async def burst(client: aioredis.Redis, stream: str, count: int, maxlen: int) -> None:
    """``count`` entries in one transaction, the stream cut to ``maxlen`` by each: no
    reader is served in between, so the group's next read comes after all of them."""
    pipe = client.pipeline(transaction=True)
    for n in range(count):
        pipe.xadd(stream, fields(n), maxlen=maxlen, approximate=False)
    await pipe.execute()


async def test_a_new_group_is_told_what_maxlen_trimmed_before_its_first_read(
    redis_url: str, namespace: str, client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await server_counts_entries(client)
    caplog.set_level(logging.WARNING, logger="pepperpy")
    transport = RedisTransport(f"{redis_url}?namespace={namespace}&partitions=1&trim_interval=off")
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    stream = transport.stream_for("o.made")
    seen: list[int] = []

    @bus.subscribe("o.*", group="billing")
    def bill(event: Event) -> None:
        seen.append(event.data)

    async with asyncio.timeout(30), bus:
        [group] = await client.xinfo_groups(stream)
        assert group["entries-read"] == 0  # made with its count, not left unknown
        await burst(client, stream, 50, maxlen=5)
        await eventually(lambda: len(seen) + lost_in(caplog.records, stream) >= 50)
        member = transport._members[0]
        assert seen == list(range(45, 50))
        assert lost_in(caplog.records, stream) == member.lost_entries == 45
        [group] = await client.xinfo_groups(stream)
        assert group["entries-read"] == 50 and group["lag"] == 0


async def test_a_group_made_without_a_count_gets_one_and_then_reports_losses(
    redis_url: str, namespace: str, client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # an operator (or an earlier version of the transport) made the group without
    # ENTRIESREAD: the first counter check sets the count, then a loss shows
    await server_counts_entries(client)
    caplog.set_level(logging.WARNING, logger="pepperpy")
    transport = RedisTransport(f"{redis_url}?namespace={namespace}&partitions=1&trim_interval=off")
    stream = transport.stream_for("o.made")
    await client.xgroup_create(stream, GROUP, id="$", mkstream=True)
    [group] = await client.xinfo_groups(stream)
    assert group["entries-read"] is None
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    seen: list[int] = []

    @bus.subscribe("o.*", group="billing")
    def bill(event: Event) -> None:
        seen.append(event.data)

    async def counted() -> bool:
        [group] = await client.xinfo_groups(stream)
        return group["entries-read"] is not None

    async with asyncio.timeout(30), bus:
        while not await counted():
            await asyncio.sleep(0.01)
        await burst(client, stream, 30, maxlen=4)
        await eventually(lambda: len(seen) + lost_in(caplog.records, stream) >= 30)
        assert seen == list(range(26, 30))
        assert lost_in(caplog.records, stream) == transport._members[0].lost_entries == 26


async def test_a_group_made_anew_where_it_had_read_keeps_counting(
    redis_url: str, namespace: str, client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # a destroyed group is made anew at the member's last known position (see
    # test_redis_listener_errors), with the count where the stream tells it: a later
    # loss shows, and nothing already read is counted lost
    await server_counts_entries(client)
    caplog.set_level(logging.WARNING, logger="pepperpy")
    transport = RedisTransport(f"{redis_url}?namespace={namespace}&partitions=1&trim_interval=off")
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    stream = transport.stream_for("o.made")
    seen: list[int] = []

    @bus.subscribe("o.*", group="billing")
    def bill(event: Event) -> None:
        seen.append(event.data)

    async with asyncio.timeout(30), bus:
        await bus.publish("o.made", -1)
        await eventually(lambda: seen == [-1])
        await client.xgroup_destroy(stream, GROUP)
        await eventually(lambda: any("made it anew" in r.getMessage() for r in caplog.records))
        [group] = await client.xinfo_groups(stream)
        assert group["entries-read"] == 1
        await burst(client, stream, 20, maxlen=3)
        await eventually(lambda: len(seen) + lost_in(caplog.records, stream) >= 21)
        assert seen == [-1, 17, 18, 19]
        assert lost_in(caplog.records, stream) == 17
