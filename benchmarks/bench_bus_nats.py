"""EventBus on NATS JetStream vs FastStream vs raw nats-py: throughput and latency.

Every contender publishes to a file-backed JetStream stream and waits for the PubAck
(durable acceptance), and consumes through a push consumer with explicit acks sent after
the handler ran, so all pay for the same durability; only the library around it differs.
Each contender gets a stream of its own (each library's default retention: ours is
interest-based, the others keep messages per limits).

* throughput: publish ``n`` events (100 in flight at a time) and wait until the
  subscriber has handled all of them.
* group throughput: the same through a durable queue consumer (our group with its key
  lanes; FastStream's and nats-py's durable consumer with a queue group).
* keyed group throughput (ours only): every event carries one of 64 keys, so each key
  lane is consumed one event at a time across the group; the price of per-key order.
* latency: publish one event, wait for the handler to see it; repeat; median and p99.

Needs NATS with JetStream on 127.0.0.1:4222. ``python -m benchmarks.bench_bus_nats``
prints the Markdown section.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from faststream.nats import JStream, NatsBroker
from nats.js.api import ConsumerConfig, DeliverPolicy

from benchmarks._bus import (
    WINDOW,
    BusContender,
    interleaved_latency,
    latency_table,
    start_bus,
)
from benchmarks._harness import Result, compare, machine, table
from pepperpy.event import Event
from pepperpy.event.transports.nats import NatsTransport

URL = "nats://127.0.0.1:4222"
KEYS = 64


class Contender(BusContender):
    """A NATS contender: its own JetStream stream and subject prefix."""

    def __init__(self, grouped: bool, keyed: bool = False) -> None:
        super().__init__(grouped)
        self.keyed = keyed
        token = uuid.uuid4().hex[:8]
        self.stream = f"BENCH_{token}"
        self.prefix = f"bench{token}"

    async def delete_stream(self) -> None:
        nc = await nats.connect(URL)
        try:
            await nc.jetstream().delete_stream(self.stream)
        finally:
            await nc.close()


class Pepperpy(Contender):
    name = "pepperpy EventBus"

    async def setup(self) -> None:
        self.bus = await start_bus(self, NatsTransport(URL, stream=self.stream, prefix=self.prefix))

    async def send(self, n: int) -> None:
        key = f"key-{n % KEYS}" if self.keyed else None
        await self.bus.publish("bench.work", {"n": n}, key=key)

    async def teardown(self) -> None:
        await self.bus.close()
        await self.delete_stream()


class FastStream(Contender):
    name = "FastStream NatsBroker"

    async def setup(self) -> None:
        self.broker = NatsBroker(URL, logger=None)
        self.js_stream = JStream(self.stream, subjects=[f"{self.prefix}.>"])
        options: dict[str, Any] = {}
        if self.grouped:
            options = {"durable": "bench", "queue": "bench"}

        @self.broker.subscriber(f"{self.prefix}.bench.>", stream=self.js_stream, **options)
        async def handle(message: dict[str, Any]) -> None:
            self.seen()

        await self.broker.start()

    async def send(self, n: int) -> None:
        await self.broker.publish({"n": n}, f"{self.prefix}.bench.work", stream=self.stream)

    async def teardown(self) -> None:
        await self.broker.stop()
        await self.delete_stream()


class Raw(Contender):
    name = "raw nats-py (floor)"

    async def setup(self) -> None:
        self.nc = await nats.connect(URL)
        self.js = self.nc.jetstream()
        await self.js.add_stream(name=self.stream, subjects=[f"{self.prefix}.>"])

        async def handle(message: Any) -> None:
            Event.from_json(message.data)
            self.seen()
            await message.ack()

        subject = f"{self.prefix}.bench.>"
        config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW, max_ack_pending=1000)
        if self.grouped:
            await self.js.subscribe(
                subject,
                queue="bench",
                durable="bench",
                cb=handle,
                manual_ack=True,
                stream=self.stream,
                config=config,
            )
        else:
            await self.js.subscribe(
                subject, cb=handle, manual_ack=True, stream=self.stream, config=config
            )

    async def send(self, n: int) -> None:
        body = Event("bench.work", {"n": n}).to_json()
        await self.js.publish(f"{self.prefix}.bench.work", body, stream=self.stream)

    async def teardown(self) -> None:
        await self.nc.close()
        await self.delete_stream()


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


KINDS: list[type[Contender]] = [Raw, FastStream, Pepperpy]


async def throughput(contenders: list[Contender], operations: int, passes: int) -> list[Result]:
    async def body(contenders: list[Contender]) -> list[Result]:
        for contender in contenders:  # warm up connections, consumers, caches
            await contender.run(200)
            contender.cpu_per_event.clear()
        return await compare(
            {c.name: c.run for c in contenders}, operations=operations, passes=passes
        )

    result: list[Result] = await _with(contenders, body)
    return result


def cpu_table(contenders: list[Contender]) -> str:
    """Client CPU per event: steadier than events/s when the machine is shared."""
    lines = ["| contender | client CPU µs/event (median) |", "|---|---:|"]
    for c in contenders:
        lines.append(f"| {c.name} | {statistics.median(c.cpu_per_event) * 1e6:,.0f} |")
    return "\n".join(lines)


async def latency(samples: int) -> list[tuple[str, float, float]]:
    async def body(contenders: list[Contender]) -> list[tuple[str, float, float]]:
        return await interleaved_latency(contenders, samples)

    rows: list[tuple[str, float, float]] = await _with(
        [kind(False) for kind in KINDS],  # type: ignore[abstract]
        body,
    )
    return rows


def _contenders(grouped: bool) -> list[Contender]:
    return [kind(grouped) for kind in KINDS]  # type: ignore[abstract]


async def main(quick: bool) -> str:
    operations, passes, samples = (2_000, 3, 200) if quick else (10_000, 5, 1_000)
    alone_contenders, grouped_contenders = _contenders(False), _contenders(True)
    alone = await throughput(alone_contenders, operations, passes)
    grouped = await throughput(grouped_contenders, operations, passes)
    keyed_contenders: list[Contender] = [Pepperpy(True), Pepperpy(True, keyed=True)]
    keyed_contenders[1].name = f"pepperpy EventBus, {KEYS} keys"
    keyed = await throughput(keyed_contenders, operations, passes)
    lat = await latency(samples)
    lines = [
        "## EventBus on NATS JetStream",
        "",
        f"Machine: {machine()}. nats-server with JetStream (file storage) on loopback;",
        f"every publish waits for its PubAck; explicit acks after the handler; {WINDOW}",
        f"publishes in flight; {operations:,} events per pass, median of {passes}",
        "interleaved passes.",
        "",
        "Publish + consume, one ungrouped subscriber (events/s until all were handled):",
        "",
        table(alone, baseline="FastStream NatsBroker", unit="events/s"),
        "",
        "The same runs, CPU time this process spent per event (publisher and consumer;",
        "the broker's CPU is not included):",
        "",
        cpu_table(alone_contenders),
        "",
        "Publish + consume through a durable queue consumer (our group):",
        "",
        table(grouped, baseline="FastStream NatsBroker", unit="events/s"),
        "",
        cpu_table(grouped_contenders),
        "",
        f"Our group, unkeyed vs every event keyed ({KEYS} keys over the key lanes):",
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
