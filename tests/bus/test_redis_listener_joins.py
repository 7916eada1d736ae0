"""An ungrouped Redis subscription joining or leaving the shared reader.

A subscription gets exactly the events published after ``subscribe()`` returned (at least
those after the streams' last ids taken while it subscribed), never earlier ones, even
when it joins a reader that has not read up to the streams' ends yet; and the shared
reader stops reading once the last ungrouped subscription has left, and starts afresh
for the next one.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.redis import RedisTransport
from tests.helpers import eventually, settle

pytestmark = pytest.mark.redis


def make_bus(redis_url: str, namespace: str, **options: Any) -> tuple[EventBus, Any]:
    transport = RedisTransport(redis_url, namespace=namespace, trim_interval=None, **options)
    return EventBus(transport=transport, retry_policy=RetryPolicy.NONE), transport


def collector(into: list[Any]) -> Any:
    async def handler(event: Event) -> None:
        into.append(event.data)

    return handler


class CountingReads:
    """The listener's client, counting the reads sent through it (blocking or not)."""

    def __init__(self, shared: Any) -> None:
        self.shared = shared
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.shared, name)

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1  # the reader's XREAD behind a counter snapshot
        return self.shared.pipeline(*args, **kwargs)

    async def xread(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        return await self.shared.xread(*args, **kwargs)


async def test_a_subscription_joining_a_reader_behind_gets_nothing_published_before(
    redis_url: str, namespace: str
) -> None:
    # The shared reader has not read the last three events yet when the second
    # subscription joins. Before, the new subscription started from the reader's
    # position and was handed those three, published before it subscribed.
    bus, transport = make_bus(redis_url, namespace, partitions=1)
    first: list[int] = []
    second: list[int] = []
    bus.subscribe("t.*", collector(first))
    async with asyncio.timeout(20), bus:
        await bus.publish("t.x", 0)
        await eventually(lambda: first == [0])
        listener: Any = transport._listener
        listener._next_check = math.inf  # plain XREADs only: the gate below holds them
        shared = listener._client
        gate = asyncio.Event()
        held = asyncio.Event()

        class Gated:
            def __getattr__(self, name: str) -> Any:
                return getattr(shared, name)

            async def xread(self, *args: Any, **kwargs: Any) -> Any:
                if not gate.is_set():
                    held.set()
                    await gate.wait()
                return await shared.xread(*args, **kwargs)

        listener._client = Gated()
        await asyncio.wait_for(held.wait(), 5)  # its read under way ended; the next waits
        for n in (1, 2, 3):
            await bus.publish("t.x", n)
        bus.subscribe("t.*", collector(second))
        await bus.start()  # the second subscription is registered
        gate.set()
        await bus.publish("t.x", 4)
        await eventually(lambda: first == [0, 1, 2, 3, 4] and 4 in second)
        await settle(0.2)
    assert second == [4]


async def test_events_the_reader_reads_while_a_subscription_joins_are_neither_lost_nor_early(
    redis_url: str, namespace: str
) -> None:
    # While the joining subscription takes the streams' last ids, one event is published
    # before that snapshot and one after it, and the shared reader reads both before the
    # subscription knows where it starts: it must skip the first and get the second.
    bus, transport = make_bus(redis_url, namespace, partitions=1)
    first: list[int] = []
    second: list[int] = []
    bus.subscribe("t.*", collector(first))
    async with asyncio.timeout(20), bus:
        await bus.publish("t.x", 0)
        await eventually(lambda: first == [0])
        listener: Any = transport._listener
        snapshot = listener._counters

        class PublishingAround:
            def __getattr__(self, name: str) -> Any:
                return getattr(snapshot, name)

            async def __call__(self, *args: Any, **kwargs: Any) -> Any:
                listener._counters = snapshot
                # on the transport: the bus's publish would wait for this subscription
                await transport.publish(Event("t.x", 1))
                reply = await snapshot(*args, **kwargs)
                await transport.publish(Event("t.x", 2))
                await eventually(lambda: first == [0, 1, 2])  # the reader has read both
                return reply

        listener._counters = PublishingAround()
        bus.subscribe("t.*", collector(second))
        await bus.start()
        assert listener._counters is snapshot, "the subscription took no snapshot"
        await bus.publish("t.x", 3)
        await eventually(lambda: first == [0, 1, 2, 3] and 3 in second)
        await settle(0.2)
    assert second == [2, 3]


async def test_subscriptions_joining_under_steady_publishing_get_an_unbroken_tail(
    redis_url: str, namespace: str
) -> None:
    # Events are published one after another while subscriptions join; each must get
    # every event from some point on, in order, and nothing published before it joined.
    bus, transport = make_bus(redis_url, namespace, partitions=1)
    everything: list[int] = []
    bus.subscribe("t.*", collector(everything))
    published = 0
    stop = asyncio.Event()

    async def publish_steadily() -> None:
        nonlocal published
        while not stop.is_set() and published < 5000:
            # on the transport: the bus's publish would wait for the subscriptions joining
            await transport.publish(Event("t.x", published))
            published += 1

    joined: list[tuple[int, int, list[int]]] = []
    async with asyncio.timeout(30), bus:
        publisher = asyncio.get_running_loop().create_task(publish_steadily())
        try:
            for _ in range(8):
                await asyncio.sleep(0.02)
                got: list[int] = []
                before = published  # 0 .. before-1 were stored before it subscribed
                bus.subscribe("t.*", collector(got))
                await bus.start()
                joined.append((before, published, got))
            ending = published + 3  # a few more after the last one joined
            await eventually(lambda: published >= ending)
        finally:
            stop.set()
            await publisher
        last = published - 1
        await eventually(lambda: all(got and got[-1] == last for _, _, got in joined))
    for before, after, got in joined:
        assert got[0] >= before, f"joined after {before} events, got {got[0]}"
        # the publish under way as it returned may have been stored before it started
        assert got[0] <= after + 1, f"missed events published after it joined: {got[:3]}"
        assert got == list(range(got[0], last + 1))


async def test_the_shared_reader_stops_with_the_last_ungrouped_subscription(
    redis_url: str, namespace: str
) -> None:
    bus, transport = make_bus(redis_url, namespace, partitions=2)
    a: list[int] = []
    b: list[int] = []
    a_handler, b_handler = collector(a), collector(b)
    bus.subscribe("a.*", a_handler)
    bus.subscribe("b.*", b_handler)
    async with asyncio.timeout(20), bus:
        await bus.publish("a.x", 1)
        await bus.publish("b.x", 1)
        await eventually(lambda: a == [1] and b == [1])
        listener: Any = transport._listener
        counting = CountingReads(listener._client)
        listener._client = counting
        await bus.unsubscribe("a.*", a_handler)
        assert listener._task is not None and not listener._task.done()
        await eventually(lambda: counting.reads > 0)  # the other one is still read for
        await bus.unsubscribe("b.*", b_handler)
        assert listener._task is None or listener._task.done(), "the reader reads on"
        reads = counting.reads
        await settle(1.2)  # longer than a blocking read
        assert counting.reads == reads, "reads were sent for no subscription"

        # a new subscription starts it again, from the streams' ends
        await bus.publish("a.x", 2)
        again: list[int] = []
        bus.subscribe("a.*", collector(again))
        await bus.start()
        assert listener._task is not None and not listener._task.done()
        await bus.publish("a.x", 3)
        await eventually(lambda: again == [3])
        await settle(0.2)
    assert again == [3] and a == [1] and b == [1]


async def test_a_subscription_made_while_the_last_one_leaves_is_read_for(
    redis_url: str, namespace: str
) -> None:
    # the reader may be stopping for the one leaving as the other joins: either way the
    # newcomer is read for, from the streams' ends
    bus, transport = make_bus(redis_url, namespace, partitions=2)
    async with asyncio.timeout(30), bus:
        previous: tuple[str, Any] | None = None
        for round_ in range(6):
            got: list[int] = []
            handler = collector(got)
            pattern = f"r{round_}.*"
            await bus.publish(pattern.replace("*", "x"), -1)  # before it: never delivered
            bus.subscribe(pattern, handler)
            joining = bus.start()
            if previous is None:
                await joining
            elif round_ % 2:
                await asyncio.gather(bus.unsubscribe(*previous), joining)
            else:
                await asyncio.gather(joining, bus.unsubscribe(*previous))
            listener: Any = transport._listener
            assert listener._task is not None and not listener._task.done()
            await bus.publish(pattern.replace("*", "x"), round_)
            await eventually(lambda: got == [round_])  # noqa: B023
            previous = (pattern, handler)
        await settle(0.2)
        assert got == [5]


async def test_the_last_subscription_leaving_while_it_lags_stops_every_read(
    redis_url: str, namespace: str
) -> None:
    # Its lane overflowed: it reads a partition by itself when it leaves. Neither that
    # catch-up nor the shared reader may read on after unsubscribe() returned.
    bus, transport = make_bus(redis_url, namespace, partitions=1, batch_size=2)
    gate = asyncio.Semaphore(0)
    seen: list[int] = []

    async def slow(event: Event) -> None:
        await gate.acquire()
        seen.append(event.data)

    bus.subscribe("l.*", slow)
    async with asyncio.timeout(20), bus:
        listener: Any = transport._listener
        feed = listener._feeds[0]
        for n in range(6):  # one in the handler, two in its lane, the rest left behind
            await bus.publish("l.x", n)
        await eventually(lambda: 0 in feed._behind)
        counting = CountingReads(listener._client)
        listener._client = counting
        feed._client = counting
        leaving = asyncio.get_running_loop().create_task(bus.unsubscribe("l.*", slow))
        await settle(0.1)
        gate.release()  # the delivery in progress ends; unsubscribe() can return
        await leaving
        assert seen == [0]
        assert listener._task is None or listener._task.done()
        assert feed._catching_up is None
        reads = counting.reads
        await settle(1.2)
        assert counting.reads == reads
        later: list[int] = []
        bus.subscribe("l.*", collector(later))
        await bus.start()
        await bus.publish("l.x", 100)
        await eventually(lambda: later == [100])
