"""EventBus on RabbitMQ vs FastStream vs raw aio-pika: throughput and end-to-end latency.

Every contender publishes persistent messages with publisher confirms to a topic
exchange and consumes them with manual acknowledgement, so all pay for the same
durability; only the library around it differs.

* throughput: publish ``n`` events (100 in flight at a time) and wait until the
  subscriber has handled all of them.
* latency: publish one event, wait for the handler to see it; repeat; median and p99.
* group throughput: the same, consumed through a durable quorum queue (our group with
  its partitions; FastStream's subscriber on one durable quorum queue).

Needs RabbitMQ on 127.0.0.1:5672 (guest/guest). ``python -m benchmarks.bench_bus_rabbitmq``
prints the Markdown section.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.schemas.queue import QueueType

from benchmarks._bus import (
    WINDOW,
    BusContender,
    interleaved_latency,
    latency_table,
    start_bus,
)
from benchmarks._harness import Result, compare, machine, table
from pepperpy.event import Event
from pepperpy.event.transports.rabbitmq import RabbitMQTransport

URL = "amqp://guest:guest@127.0.0.1:5672/"


class Contender(BusContender):
    """A RabbitMQ contender: its own topic exchange."""

    def __init__(self, grouped: bool) -> None:
        super().__init__(grouped)
        self.exchange = f"bench.{uuid.uuid4().hex[:8]}"


class Pepperpy(Contender):
    name = "pepperpy EventBus"

    async def setup(self) -> None:
        self.transport = RabbitMQTransport(URL, exchange=self.exchange)
        self.bus = await start_bus(self, self.transport)

    async def send(self, n: int) -> None:
        await self.bus.publish("bench.work", {"n": n})

    async def teardown(self) -> None:
        await self.bus.close()
        await self.transport.delete_topology()


class PepperpyOnePartition(Pepperpy):
    """A group on one queue: the same topology as FastStream's (no sharing across processes)."""

    name = "pepperpy EventBus, partitions=1"

    async def setup(self) -> None:
        self.transport = RabbitMQTransport(URL, exchange=self.exchange, partitions=1)
        self.bus = await start_bus(self, self.transport)


class FastStream(Contender):
    name = "FastStream RabbitBroker"

    async def setup(self) -> None:
        self.broker = RabbitBroker(URL, logger=None)
        self.x = RabbitExchange(self.exchange, type=ExchangeType.TOPIC, durable=True)
        if self.grouped:
            queue = RabbitQueue(
                f"{self.exchange}.q",
                durable=True,
                queue_type=QueueType.QUORUM,
                routing_key="bench.#",
            )
        else:
            queue = RabbitQueue(f"{self.exchange}.q", auto_delete=True, routing_key="bench.#")
        self.queue = queue

        @self.broker.subscriber(queue, self.x)
        async def handle(message: dict[str, Any]) -> None:
            self.seen()

        await self.broker.start()

    async def send(self, n: int) -> None:
        await self.broker.publish(
            {"n": n}, exchange=self.x, routing_key="bench.work", persist=True, mandatory=False
        )

    async def teardown(self) -> None:
        await self.broker.stop()
        await _delete(self.exchange, [f"{self.exchange}.q"])


class Raw(Contender):
    name = "raw aio-pika (floor)"

    async def setup(self) -> None:
        self.connection = await aio_pika.connect_robust(URL)
        channel = await self.connection.channel(publisher_confirms=True)
        self.x = await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        consume = await self.connection.channel()
        await consume.set_qos(prefetch_count=128)
        if self.grouped:
            arguments = {"x-queue-type": "quorum"}
            queue = await consume.declare_queue(
                f"{self.exchange}.q", durable=True, arguments=arguments
            )
        else:
            queue = await consume.declare_queue("", exclusive=True)
        await queue.bind(self.exchange, "bench.#")

        async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            Event.from_json(message.body)
            self.seen()
            await message.ack()

        await queue.consume(handle)

    async def send(self, n: int) -> None:
        body = Event("bench.work", {"n": n}).to_json()
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await self.x.publish(message, routing_key="bench.work", mandatory=False)

    async def teardown(self) -> None:
        await self.connection.close()
        await _delete(self.exchange, [f"{self.exchange}.q"] if self.grouped else [])


async def _delete(exchange: str, queues: list[str]) -> None:
    async with await aio_pika.connect(URL) as connection:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
        await channel.exchange_delete(exchange)


async def _with(
    kinds: list[type[Contender]], grouped: bool, body: Callable[[list[Contender]], Awaitable[Any]]
) -> Any:
    contenders = [kind(grouped) for kind in kinds]  # type: ignore[abstract]
    for contender in contenders:
        await contender.setup()
    try:
        return await body(contenders)
    finally:
        for contender in contenders:
            await contender.teardown()


KINDS: list[type[Contender]] = [Raw, FastStream, Pepperpy]
GROUP_KINDS: list[type[Contender]] = [*KINDS, PepperpyOnePartition]


async def throughput(grouped: bool, operations: int, passes: int) -> list[Result]:
    async def body(contenders: list[Contender]) -> list[Result]:
        for contender in contenders:  # warm up connections, JIT-free caches, queues
            await contender.run(200)
        return await compare(
            {c.name: c.run for c in contenders}, operations=operations, passes=passes
        )

    result: list[Result] = await _with(GROUP_KINDS if grouped else KINDS, grouped, body)
    return result


async def latency(samples: int) -> list[tuple[str, float, float]]:
    async def body(contenders: list[Contender]) -> list[tuple[str, float, float]]:
        return await interleaved_latency(contenders, samples)

    rows: list[tuple[str, float, float]] = await _with(KINDS, False, body)
    return rows


async def main(quick: bool) -> str:
    operations, passes, samples = (2_000, 3, 200) if quick else (10_000, 5, 1_000)
    alone = await throughput(False, operations, passes)
    grouped = await throughput(True, operations, passes)
    lat = await latency(samples)
    lines = [
        "## EventBus on RabbitMQ",
        "",
        f"Machine: {machine()}. RabbitMQ on loopback, persistent messages, publisher",
        f"confirms, manual acks; {WINDOW} publishes in flight; {operations:,} events per pass,",
        f"median of {passes} interleaved passes.",
        "",
        "Publish + consume, one ungrouped subscriber (events/s until all were handled):",
        "",
        table(alone, baseline="FastStream RabbitBroker", unit="events/s"),
        "",
        "Publish + consume through durable quorum queues: our group (12 partition queues by",
        "default, or one), FastStream's and raw aio-pika's one durable quorum queue:",
        "",
        table(grouped, baseline="FastStream RabbitBroker", unit="events/s"),
        "",
        f"End-to-end latency, one event at a time ({samples:,} samples):",
        "",
        *latency_table(lat),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(asyncio.run(main("--quick" in sys.argv)))
