"""``EventBus.publish_many`` vs a loop of awaited ``publish``, on every transport.

What a producer with a batch of events gains: a loop awaits each publish (one round trip
per event, the broker's acceptance included); ``publish_many`` publishes different keys,
and unkeyed events, concurrently (at most 256 in flight), and the events of one key one
after the other, so a batch of one key gains nothing, by design (concurrent publishes do
not keep their order on a broker). Timed: until the call (or the loop) returned, every
event accepted by the broker. A group of one no-op member consumes meanwhile (so RabbitMQ
routes to a queue and NATS's work queue has a consumer), the same for every contender,
and catches up between runs (not timed).

Needs Redis, NATS JetStream and RabbitMQ on loopback (a broker that is not running is
reported as such). ``python -m benchmarks.bench_publish_many [--quick]``.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from benchmarks._harness import Result, compare, machine, table
from pepperpy.event import EventBus, RetryPolicy
from pepperpy.event.transports.base import Transport

KEYS = 64
LOOP = "loop of awaited publish"


@asynccontextmanager
async def redis() -> AsyncIterator[Transport]:
    import redis.asyncio as aioredis

    from pepperpy.event.transports.redis import RedisTransport

    url, prefix = "redis://127.0.0.1:6379/0", f"bench{uuid.uuid4().hex[:8]}"
    try:
        yield RedisTransport(url, namespace=prefix)
    finally:
        client = aioredis.Redis.from_url(url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


@asynccontextmanager
async def nats() -> AsyncIterator[Transport]:
    from pepperpy.event.transports.nats import NatsTransport

    url, name = "nats://127.0.0.1:4222", f"bench{uuid.uuid4().hex[:8]}"
    try:
        yield NatsTransport(url, stream=name.upper(), prefix=name)
    finally:
        await NatsTransport(url, stream=name.upper()).delete_stream()


@asynccontextmanager
async def rabbitmq() -> AsyncIterator[Transport]:
    from pepperpy.event.transports.rabbitmq import RabbitMQTransport

    transport = RabbitMQTransport(
        "amqp://guest:guest@127.0.0.1:5672/", exchange=f"bench{uuid.uuid4().hex[:8]}"
    )
    try:
        yield transport
    finally:
        await transport.delete_topology()


@asynccontextmanager
async def memory() -> AsyncIterator[Transport]:
    from pepperpy.event import MemoryTransport

    yield MemoryTransport()


TRANSPORTS: dict[str, Callable[[], Any]] = {
    "memory://": memory,
    "Redis": redis,
    "NATS JetStream": nats,
    "RabbitMQ": rabbitmq,
}


async def measure(transport: Transport, operations: int, passes: int) -> list[Result]:
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    handled = [0]
    published = [0]

    def consume(event: Any) -> None:
        handled[0] += 1

    bus.subscribe("bench.#", group="bench")(consume)
    messages = [{"n": n} for n in range(operations)]

    async def drained(count: int, elapsed: float) -> float:
        """Untimed: wait for the consumer to catch up, so no run pays for the last's."""
        published[0] += count
        async with asyncio.timeout(120):
            while handled[0] < published[0]:
                await asyncio.sleep(0.01)
        return elapsed

    def by_key(message: dict[str, int]) -> str:
        return f"key-{message['n'] % KEYS}"

    async def loop(count: int) -> float:
        started = time.perf_counter()
        for message in messages[:count]:
            await bus.publish("bench.work", message)
        return await drained(count, time.perf_counter() - started)

    def batch(key: Any) -> Callable[[int], Any]:
        async def run(count: int) -> float:
            started = time.perf_counter()
            await bus.publish_many("bench.work", messages[:count], key=key)
            return await drained(count, time.perf_counter() - started)

        return run

    contenders = {
        LOOP: loop,
        "publish_many, unkeyed": batch(None),
        f"publish_many, {KEYS} keys": batch(by_key),
        "publish_many, one key": batch("key-0"),
    }
    async with bus:
        for run in contenders.values():  # warm up connections, consumers, caches
            await run(200)
        return await compare(contenders, operations=operations, passes=passes)


async def main(quick: bool) -> str:
    operations, passes = (2_000, 3) if quick else (10_000, 5)
    lines = [
        "## EventBus.publish_many vs a loop of publish",
        "",
        f"Machine: {machine()}. Brokers on loopback; timed until every event of the",
        "batch was accepted (Redis XADD reply, JetStream PubAck, RabbitMQ confirm);",
        f"{operations:,} events per pass, median of {passes} interleaved passes; a group",
        "of one no-op member consumes meanwhile and catches up between runs (untimed).",
        "",
    ]
    for name, make in TRANSPORTS.items():
        try:
            async with make() as transport:
                results = await measure(transport, operations, passes)
        except Exception as exc:  # a broker that is not running: say so, go on
            lines += [f"{name}: not measured ({type(exc).__name__}: {exc})", ""]
            continue
        lines += [f"{name}:", "", table(results, baseline=LOOP, unit="events/s"), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(asyncio.run(main("--quick" in sys.argv)))
