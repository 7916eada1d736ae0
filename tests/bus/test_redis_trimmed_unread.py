"""Entries trimmed from a Redis stream before a subscription read them.

An ungrouped subscription can lose events that fall out of ``retention`` or ``maxlen``
while it lags, and a group those ``maxlen`` trims before it read (or handled) them
(docs/transport-redis.md, Retention and cleanup); the loss must never be silent.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import replace
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.redis import RedisTransport
from pepperpy.event.transports.redis._trimmed import Counters, GroupTally, id_text, passed_count
from pepperpy.event.transports.redis._wire import parse_id
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys, eventually

pytestmark = pytest.mark.redis


async def test_a_subscription_left_behind_by_maxlen_is_told_so(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    namespace = unique_name("trimmed")
    url = (
        f"{redis_url}?namespace={namespace}&partitions=1&maxlen=40&batch_size=10&trim_interval=off"
    )
    bus = EventBus(transport=url, retry_policy=RetryPolicy.NONE)
    seen: list[int] = []

    @bus.subscribe("orders.*")
    async def slow(event: Event) -> None:
        await asyncio.sleep(0.002)
        seen.append(event.data["i"])

    caplog.set_level(logging.WARNING, logger="pepperpy")
    try:
        async with bus:
            for i in range(1500):
                await bus.publish("orders.created", {"i": i, "pad": "x" * 50})
            async with asyncio.timeout(30):
                while not any("trimmed" in r.getMessage() for r in caplog.records):
                    await asyncio.sleep(0.05)
    finally:
        await delete_redis_keys(redis_url, f"{namespace}:*")
    lost = 1500 - len(set(seen))
    assert lost > 0  # the stream kept 40 entries while the handler took ~2 ms each
    warnings: list[Any] = [r for r in caplog.records if "trimmed" in r.getMessage()]
    assert warnings and all(r.levelno == logging.WARNING for r in warnings)
    assert "not read yet" in warnings[0].getMessage() or "behind" in warnings[0].getMessage()


def entry(i: int) -> dict[str, str]:
    """Stream fields of an ``orders.created`` event, as the transport writes them."""
    return {"topic": "orders.created", "event": Event("orders.created", {"i": i}).to_json()}


def counted(records: list[Any], needle: str) -> int:
    """The entries counted lost by the warnings that contain ``needle``."""
    total = 0
    for record in records:
        match = re.search(r"(\d+) (?:of its )?entries", record.getMessage())
        if needle in record.getMessage() and match:
            total += int(match.group(1))
    return total


@pytest.mark.parametrize("pause", [0.0, 0.3])
async def test_a_gap_that_opens_after_a_read_that_was_not_full_is_counted(
    redis_url: str, caplog: pytest.LogCaptureFixture, pause: float
) -> None:
    # The listener has read everything (a read that was not full: no next entry to
    # remember); then the stream is trimmed past entries it never saw. Before, nothing
    # was logged. Now its count of entries read is checked against Redis's counters:
    # before the read that jumps the gap (pause: a check is due by then) or after it.
    namespace = unique_name("trimmed")
    url = f"{redis_url}?namespace={namespace}&partitions=1&trim_interval=off"
    bus = EventBus(transport=url, retry_policy=RetryPolicy.NONE)
    stream = f"{namespace}:stream:0"
    seen: list[int] = []

    @bus.subscribe("orders.*")
    def record(event: Event) -> None:
        seen.append(event.data["i"])

    caplog.set_level(logging.WARNING, logger="pepperpy")
    client = redis.Redis.from_url(redis_url)
    try:
        async with bus:
            await bus.publish("orders.created", {"i": 0})
            await eventually(lambda: seen == [0])
            # the loop is ours until we await: the listener gets at most the first of these
            # (its blocked read returns it), and the stream keeps only the last 10
            for i in range(1, 101):
                client.xadd(stream, entry(i), maxlen=10, approximate=False)
            time.sleep(pause)
            await eventually(lambda: len(seen) + counted(caplog.records, "listener") >= 101)
            assert len(seen) + counted(caplog.records, "listener") == 101
    finally:
        client.close()
        await delete_redis_keys(redis_url, f"{namespace}:*")
    assert seen[-10:] == list(range(91, 101))
    [warning] = [r for r in caplog.records if "listener" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert f"of stream {stream}" in warning.getMessage()
    assert "trimmed" in warning.getMessage()


async def test_a_lagging_subscription_counts_a_gap_after_a_catch_up_read_that_was_not_full(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A subscription fell behind and reads the stream itself. One of its reads reaches the
    # end (not full: nothing to remember), but the shared reader moves on meanwhile, so it
    # stays behind, waiting for room; then the stream is trimmed past what it has not
    # read. Before, its next read skipped the gap silently.
    namespace = unique_name("trimmed")
    url = f"{redis_url}?namespace={namespace}&partitions=1&batch_size=4&trim_interval=off"
    transport = RedisTransport(url)
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    stream = f"{namespace}:stream:0"
    gate = asyncio.Semaphore(0)
    seen: list[int] = []

    @bus.subscribe("orders.*")
    async def slow(event: Event) -> None:
        await gate.acquire()
        seen.append(event.data["i"])

    caplog.set_level(logging.WARNING, logger="pepperpy")
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(30), bus:
            listener: Any = transport._listener
            feed = listener._feeds[0]
            for i in range(6):  # one handled, four in its lane, the sixth left behind
                await bus.publish("orders.created", {"i": i})
            await eventually(lambda: 0 in feed._behind)
            shared = feed._client

            class SharedReaderMovesOn:
                """The feed's client: while its next read is under way, one more event is
                published and the shared reader reads it."""

                def __getattr__(self, name: str) -> Any:
                    return getattr(shared, name)

                async def xread(self, *args: Any, **kwargs: Any) -> Any:
                    feed._client = shared
                    reply = await shared.xread(*args, **kwargs)
                    read = listener.ids[0]
                    await bus.publish("orders.created", {"i": 6})
                    await eventually(lambda: listener.ids[0] > read)
                    return reply

            feed._client = SharedReaderMovesOn()
            for _ in range(2):  # room for a read (of the sixth event only); then full again
                gate.release()
            await eventually(lambda: feed._client is shared and feed._waiting)
            assert 0 in feed._behind and feed._expected[0] is None
            for i in range(7, 27):  # the stream keeps the last 5
                last = await client.xadd(stream, entry(i), maxlen=5, approximate=False)
            await eventually(lambda: listener._positions[stream] == last)
            for _ in range(100):
                gate.release()
            # every event is handled or counted lost (mostly by the lagging subscription;
            # the shared reader may have missed some of the 20 too)
            await eventually(lambda: len(seen) + counted(caplog.records, stream) >= 27)
            assert len(seen) + counted(caplog.records, stream) == 27
    finally:
        await client.aclose()
        await delete_redis_keys(redis_url, f"{namespace}:*")
    assert seen[-5:] == list(range(22, 27))
    warnings = [r for r in caplog.records if "ungrouped subscription" in r.getMessage()]
    assert feed.lost_entries > 0 and counted(warnings, stream) == feed.lost_entries
    assert listener.lost_entries == counted(caplog.records, stream) - feed.lost_entries
    assert all("trimmed" in r.getMessage() for r in warnings)


async def test_a_group_is_told_what_maxlen_trimmed_before_it_read_it(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # maxlen trims what a group has not read (the transport's own trimming never does);
    # that used to go unreported. The group's count of what it read is now checked
    # against the stream's counters, and Redis's own counter for the group is corrected,
    # so XINFO GROUPS reports the real lag.
    namespace = unique_name("trimmed")
    url = (
        f"{redis_url}?namespace={namespace}&partitions=1&maxlen=20&batch_size=10&trim_interval=off"
    )
    transport = RedisTransport(url)
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    stream = f"{namespace}:stream:0"
    gate = asyncio.Event()
    seen: list[int] = []

    @bus.subscribe("orders.*", group="billing")
    async def bill(event: Event) -> None:
        await gate.wait()
        seen.append(event.data["i"])

    caplog.set_level(logging.WARNING, logger="pepperpy")
    client = aioredis.Redis.from_url(redis_url)
    total = 500
    try:
        async with asyncio.timeout(30), bus:
            for i in range(total):
                await bus.publish("orders.created", {"i": i, "pad": "x" * 50})
            gate.set()
            member = transport._members[0]
            await eventually(lambda: len(seen) + counted(caplog.records, "billing") >= total)
            assert len(seen) + counted(caplog.records, "billing") == total
            # A loss told by the check that rode with the read getting the rest of the
            # stream (a check fell due just then, the group in the middle of it) is
            # reported at once, but Redis's counter is set right only at a later check,
            # after the worker's next read (which may block for a second)
            async with asyncio.timeout(10):
                while True:
                    [group] = await client.xinfo_groups(stream)
                    if group["lag"] == 0 and group["entries-read"] == total:
                        break
                    await asyncio.sleep(0.01)
            # and setting it right there counted nothing twice
            assert len(seen) + counted(caplog.records, "billing") == total
    finally:
        await client.aclose()
        await delete_redis_keys(redis_url, f"{namespace}:*")
    assert member.lost_entries > 0
    assert seen == sorted(seen) and seen[-1] == total - 1
    warnings = [r for r in caplog.records if "'billing:orders.*'" in r.getMessage()]
    assert warnings and counted(warnings, stream) == member.lost_entries
    assert all("trimmed" in r.getMessage() for r in warnings)


async def test_a_group_loss_told_in_the_middle_of_the_stream_is_set_right_in_redis_later(
    redis_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the test above meets only when a check falls due just as the group reads the
    # rest of the stream (it flaked on that), pinned: the group jumps the trimmed gap
    # with no check (Redis counts nothing for it), and the check comes with the read that
    # gets the last 5 entries, the group in the middle of the stream. The loss is reported
    # then; Redis's counter is set right at a later check, which reports nothing again.
    namespace = unique_name("trimmed")
    url = f"{redis_url}?namespace={namespace}&partitions=1&batch_size=10&trim_interval=off"
    transport = RedisTransport(url)
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    stream = f"{namespace}:stream:0"
    gate = asyncio.Event()
    seen: list[int] = []
    left: list[tuple[int, int]] = []  # the ids the stream keeps, once trimmed
    pinned = [True]  # checks come only where the test says, until the pinned one came
    timed = GroupTally.due

    def due(tally: GroupTally) -> bool:
        if not pinned[0]:
            return timed(tally)
        at = transport._members[0]._positions.get(0)
        if left and at is not None and 0 < sum(1 for i in left if i > at) < 10:
            pinned[0] = False
            return True
        return False

    monkeypatch.setattr(GroupTally, "due", due)

    @bus.subscribe("orders.*", group="billing")
    async def bill(event: Event) -> None:
        await gate.wait()
        seen.append(event.data["i"])

    caplog.set_level(logging.WARNING, logger="pepperpy")
    client = aioredis.Redis.from_url(redis_url)
    total = 100
    try:
        async with asyncio.timeout(30), bus:
            for i in range(total):
                await bus.publish("orders.created", {"i": i})
            await client.xtrim(stream, maxlen=25, approximate=False)
            kept: Any = await client.xrange(stream)
            left.extend(parse_id(entry_id) for entry_id, _ in kept)
            gate.set()
            member = transport._members[0]
            await eventually(lambda: len(seen) + counted(caplog.records, "billing") >= total)
            assert len(seen) + counted(caplog.records, "billing") == total
            async with asyncio.timeout(10):
                while True:
                    [group] = await client.xinfo_groups(stream)
                    if group["lag"] == 0 and group["entries-read"] == total:
                        break
                    await asyncio.sleep(0.01)
            assert len(seen) + counted(caplog.records, "billing") == total
    finally:
        await client.aclose()
        await delete_redis_keys(redis_url, f"{namespace}:*")
    assert not pinned[0] and seen[-25:] == list(range(75, 100))
    [warning] = [r for r in caplog.records if "'billing:orders.*'" in r.getMessage()]
    # told at the pinned check: before the group's position then, 5 entries from the end
    assert f"before {id_text(left[-6])})" in warning.getMessage()
    assert member.lost_entries == total - len(seen) > 0 and member.trimmed_unread == 1


async def test_pending_entries_trimmed_before_they_were_handled_are_reported(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A member read five entries and went away; maxlen (here XTRIM) trimmed them while
    # they were pending. The next owner's claim finds them gone: Redis 7 drops them from
    # the pending list as XCLAIM meets them, and nothing was logged.
    namespace = unique_name("trimmed")
    url = f"{redis_url}?namespace={namespace}&partitions=1&trim_interval=off"
    stream = f"{namespace}:stream:0"
    client = aioredis.Redis.from_url(redis_url)
    caplog.set_level(logging.WARNING, logger="pepperpy")
    seen: list[int] = []
    try:
        await client.xgroup_create(stream, "billing:orders.*", id="$", mkstream=True)
        for i in range(5):
            await client.xadd(stream, entry(i))
        await client.xreadgroup("billing:orders.*", "gone-member", {stream: ">"}, count=5)
        await client.xtrim(stream, maxlen=0, approximate=False)
        await client.xadd(stream, entry(5))
        transport = RedisTransport(url)
        bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)

        @bus.subscribe("orders.*", group="billing")
        def bill(event: Event) -> None:
            seen.append(event.data["i"])

        async with asyncio.timeout(30), bus:
            await eventually(lambda: seen == [5])
            await eventually(lambda: counted(caplog.records, "pending") == 5)
            assert transport._members[0].lost_entries == 5
            assert not (await client.xpending(stream, "billing:orders.*"))["pending"]
    finally:
        await client.aclose()
        await delete_redis_keys(redis_url, f"{namespace}:*")
    [warning] = [r for r in caplog.records if "pending" in r.getMessage()]
    assert "5 entries of stream" in warning.getMessage()
    assert "'billing:orders.*'" in warning.getMessage()


def test_redis_counters_tell_where_a_reader_stands_only_where_they_can() -> None:
    # entries 1..100 were added; 91..100 are left (ids "<n>-0"); nothing deleted by XDEL
    counters = Counters(last=(100, 0), added=100, length=10, first=(91, 0), max_deleted=(0, 0))
    assert passed_count(counters, (100, 0), None) == 100  # at the end
    assert passed_count(counters, (50, 0), None) == 90  # trimmed past: 51..90 count as passed
    assert passed_count(counters, (95, 0), 5) == 95  # the read behind returned the 5 after it
    assert passed_count(counters, (95, 0), None) is None  # in the middle: cannot tell
    holed = replace(counters, max_deleted=(97, 0))  # an XDEL hole ahead: no count at all
    assert passed_count(holed, (95, 0), 4) is None and passed_count(holed, (50, 0), None) is None
    assert passed_count(replace(counters, length=0), (50, 0), None) == 100  # all trimmed
    assert passed_count(replace(counters, added=None), (100, 0), None) is None  # Redis 6.2


def test_a_group_reports_a_loss_seen_mid_stream_once() -> None:
    # Redis 7.0 keeps a gap the group jumped unnoticed in its entries-read. In the middle
    # of the stream only a read that got everything after the group's position tells it
    # (not the script, which sets the counter right only where the snapshot alone tells):
    # reported then, and not again when the script finally counts it in
    def snapshot(delivered: int, entries_read: int, was: int = -1) -> list[Any]:
        # entries 1..100 were added, 61..100 are left (ids "<n>-0")
        return [b"100-0", 100, 40, b"61-0", b"0-0", b"%d-0" % delivered, entries_read, was]

    tally = GroupTally()
    # at 90, the read behind got the other 10: 90 lie up to it, Redis counts 70
    assert tally.check(snapshot(90, 70), 10, full=False) == (20, None, (90, 0))
    assert tally.check(snapshot(95, 75), 5, full=False)[0] == 0  # known already
    assert tally.check(snapshot(96, 76), 100, full=True)[0] == 0  # cannot tell
    # at the end, the script set entries-read from 80 to 100: 20 known, 0 new
    assert tally.check(snapshot(100, 100, was=80), 0, full=False)[0] == 0
    # later, 3 more trimmed unread, counted in by the script
    assert tally.check(snapshot(100, 100, was=97), 0, full=False) == (3, (100, 0), (100, 0))
