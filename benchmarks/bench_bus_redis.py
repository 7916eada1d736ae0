"""EventBus on Redis Streams vs FastStream vs raw redis-py: throughput and latency.

Every contender appends with ``XADD`` and waits for Redis's reply (durable acceptance
as far as Redis's persistence settings go), and consumes from Redis Streams; grouped
consumers read with ``XREADGROUP`` and ``XACK`` after the handler ran. Each contender gets
streams of its own. All use the same redis-py (with hiredis) underneath.

* throughput: publish ``n`` events (100 in flight at a time) and wait until the
  subscriber has handled all of them.
* group throughput: the same through a consumer group (ours: a group of one member
  owning every partition; FastStream's and the raw client's ``StreamSub``/``XREADGROUP``).
* keyed group throughput (ours only): every event carries one of 64 keys.
* latency: publish one event, wait for the handler to see it; repeat; median and p99.

Needs Redis on 127.0.0.1:6379. ``python -m benchmarks.bench_bus_redis`` prints the
Markdown section.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from faststream.redis import RedisBroker, StreamSub

from benchmarks._bus import (
    WINDOW,
    BusContender,
    interleaved_latency,
    latency_table,
    start_bus,
)
from benchmarks._harness import Result, compare, machine, table
from pepperpy.event import Event
from pepperpy.event.transports.redis import RedisTransport

URL = "redis://127.0.0.1:6379/0"
KEYS = 64


class Contender(BusContender):
    """A Redis contender: its keys live under a unique prefix, deleted on teardown."""

    def __init__(self, grouped: bool, keyed: bool = False) -> None:
        super().__init__(grouped)
        self.keyed = keyed
        self.prefix = f"bench{uuid.uuid4().hex[:8]}"

    @abc.abstractmethod
    async def stop(self) -> None:
        """Disconnect."""

    async def teardown(self) -> None:
        await self.stop()
        client = aioredis.Redis.from_url(URL)
        try:
            keys = [key async for key in client.scan_iter(match=f"{self.prefix}*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


class Pepperpy(Contender):
    name = "pepperpy EventBus"

    async def setup(self) -> None:
        self.bus = await start_bus(self, RedisTransport(URL, namespace=self.prefix))

    async def send(self, n: int) -> None:
        key = f"key-{n % KEYS}" if self.keyed else None
        await self.bus.publish("bench.work", {"n": n}, key=key)

    async def stop(self) -> None:
        await self.bus.close()


class FastStream(Contender):
    name = "FastStream RedisBroker"

    async def setup(self) -> None:
        self.broker = RedisBroker(URL, logger=None, max_connections=1000)
        self.stream = f"{self.prefix}:bench"
        if self.grouped:
            source: StreamSub | str = StreamSub(self.stream, group="bench", consumer="c1")
        else:
            source = self.stream

        @self.broker.subscriber(stream=source)
        async def handle(message: dict[str, Any]) -> None:
            self.seen()

        await self.broker.start()

    async def send(self, n: int) -> None:
        await self.broker.publish({"n": n}, stream=self.stream)

    async def stop(self) -> None:
        await self.broker.stop()


class Raw(Contender):
    name = "raw redis-py, one XADD per publish"

    async def setup(self) -> None:
        self.client = aioredis.Redis.from_url(URL)
        self.stream = f"{self.prefix}:bench"
        if self.grouped:
            await self.client.xgroup_create(self.stream, "bench", id="$", mkstream=True)
        self.reader = asyncio.ensure_future(self._consume())
        await asyncio.sleep(0.05)  # let the first blocking read start

    async def _consume(self) -> None:
        client = aioredis.Redis.from_url(URL)
        last: Any = "$"
        try:
            while True:
                if self.grouped:
                    reply: Any = await client.xreadgroup(
                        "bench", "c1", {self.stream: ">"}, count=100, block=1000
                    )
                else:
                    reply = await client.xread({self.stream: last}, count=100, block=1000)
                for _, entries in reply or ():
                    for _entry_id, fields in entries:
                        Event.from_json(fields[b"event"])
                        self.seen()
                    last = entries[-1][0]
                    if self.grouped:
                        await client.xack(self.stream, "bench", *(e[0] for e in entries))
        finally:
            await client.aclose()

    async def send(self, n: int) -> None:
        body = Event("bench.work", {"n": n}).to_json()
        await self.client.xadd(self.stream, {"event": body})

    async def stop(self) -> None:
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader
        await self.client.aclose()


class RawPipelined(Raw):
    name = "raw redis-py, one pipeline per window (floor)"

    async def run(self, count: int) -> float:
        self.waiter = asyncio.get_running_loop().create_future()
        self.target = self.handled + count
        started = time.perf_counter()
        for first in range(0, count, WINDOW):
            pipe = self.client.pipeline(transaction=False)
            for n in range(first, min(count, first + WINDOW)):
                pipe.xadd(self.stream, {"event": Event("bench.work", {"n": n}).to_json()})
            await pipe.execute()
        await asyncio.wait_for(self.waiter, 60)
        return time.perf_counter() - started


async def _with(
    contenders: list[Contender], body: Callable[[list[Contender]], Awaitable[Any]]
) -> Any:
    for contender in contenders:
        await contender.setup()
    try:
        return await body(contenders)
    finally:
        for contender in contenders:
            await contender.teardown()


KINDS: list[type[Contender]] = [RawPipelined, Raw, FastStream, Pepperpy]


async def throughput(contenders: list[Contender], operations: int, passes: int) -> list[Result]:
    async def body(contenders: list[Contender]) -> list[Result]:
        for contender in contenders:  # warm up connections, consumers, caches
            await contender.run(200)
        return await compare(
            {c.name: c.run for c in contenders}, operations=operations, passes=passes
        )

    result: list[Result] = await _with(contenders, body)
    return result


async def latency(samples: int) -> list[tuple[str, float, float]]:
    async def body(contenders: list[Contender]) -> list[tuple[str, float, float]]:
        return await interleaved_latency(contenders, samples)

    latency_kinds: list[type[Contender]] = [Raw, FastStream, Pepperpy]
    contenders = [kind(False) for kind in latency_kinds]  # type: ignore[abstract]
    rows: list[tuple[str, float, float]] = await _with(contenders, body)
    return rows


def _contenders(grouped: bool) -> list[Contender]:
    return [kind(grouped) for kind in KINDS]  # type: ignore[abstract]


async def main(quick: bool) -> str:
    operations, passes, samples = (2_000, 3, 200) if quick else (10_000, 5, 1_000)
    alone = await throughput(_contenders(False), operations, passes)
    grouped = await throughput(_contenders(True), operations, passes)
    keyed_contenders: list[Contender] = [Pepperpy(True), Pepperpy(True, keyed=True)]
    keyed_contenders[1].name = f"pepperpy EventBus, {KEYS} keys"
    keyed = await throughput(keyed_contenders, operations, passes)
    lat = await latency(samples)
    lines = [
        "## EventBus on Redis Streams",
        "",
        f"Machine: {machine()}. Redis on loopback; every publish waits for the XADD reply;",
        f"grouped consumers XACK after the handler; {WINDOW} publishes in flight;",
        f"{operations:,} events per pass, median of {passes} interleaved passes.",
        "",
        "Publish + consume, one ungrouped subscriber (events/s until all were handled):",
        "",
        table(alone, baseline="FastStream RedisBroker", unit="events/s"),
        "",
        "Publish + consume through a consumer group:",
        "",
        table(grouped, baseline="FastStream RedisBroker", unit="events/s"),
        "",
        f"Our group, unkeyed vs every event keyed ({KEYS} keys over the partitions):",
        "",
        table(keyed, baseline="pepperpy EventBus", unit="events/s"),
        "",
        f"End-to-end latency, one event at a time ({samples:,} samples):",
        "",
        *latency_table(lat),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(asyncio.run(main("--quick" in sys.argv)))
