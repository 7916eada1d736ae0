"""A bus started in one ``asyncio.run`` and used from a second one, in its own process.

Usage: ``python second_loop_worker.py KIND URL NAME`` (KIND: memory, redis, nats,
rabbitmq; NAME: a unique namespace). Prints one JSON object: what each step of the
second ``asyncio.run`` did (``"ok"`` or ``"<ErrorType>: <message>"``, ``"hang"`` past a
few seconds) and how long it took. Deletes what it created on the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pepperpy.event import Event, EventBus, Transport
from tests.helpers import eventually


def make_transport(kind: str, url: str, name: str) -> Transport:
    if kind == "memory":
        from pepperpy.event.transports.memory import MemoryTransport

        return MemoryTransport()
    if kind == "redis":
        from pepperpy.event.transports.redis import RedisTransport

        return RedisTransport(url, namespace=name, partitions=2)
    if kind == "nats":
        from pepperpy.event.transports.nats import NatsTransport

        return NatsTransport(url, stream=name.upper(), prefix=name)
    from pepperpy.event.transports.rabbitmq import RabbitMQTransport

    return RabbitMQTransport(url, exchange=name, partitions=2)


async def step(operation: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    began = time.monotonic()
    try:
        async with asyncio.timeout(8):
            await operation()
        outcome = "ok"
    except TimeoutError:
        outcome = "hang"
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    return {"outcome": outcome, "seconds": round(time.monotonic() - began, 3)}


async def cleanup(kind: str, url: str, name: str, transport: Transport) -> None:
    if kind == "redis":
        from tests.helpers import delete_redis_keys

        await delete_redis_keys(url, f"{name}:*")
    elif kind == "nats":
        await transport.delete_stream()  # type: ignore[attr-defined]
    elif kind == "rabbitmq":
        await transport.delete_topology()  # type: ignore[attr-defined]


def main(kind: str, url: str, name: str) -> None:
    transport = make_transport(kind, url, name)
    bus = EventBus(transport=transport)
    seen: list[Any] = []

    @bus.subscribe("t.#", group="g1")
    async def grouped(event: Event) -> None:
        seen.append(("group", event.data))

    @bus.subscribe("t.#")
    async def alone(event: Event) -> None:
        seen.append(("alone", event.data))

    async def first() -> None:
        await bus.start()
        await bus.publish("t.x", 1)
        await eventually(lambda: len(seen) == 2)

    async def second() -> dict[str, Any]:
        late: list[Any] = []
        return {
            # the first use finds the loop ended; the bus is closed from then on
            "unsubscribe": await step(lambda: bus.unsubscribe("t.#", alone)),
            "publish": await step(lambda: bus.publish("t.x", 2)),
            "start": await step(bus.start),
            "subscribe": await step(lambda: asyncio.sleep(0, bus.subscribe("t.*")(late.append))),
            "close": await step(bus.close),
            "close again": await step(bus.close),
        }

    gc.disable()  # what close() gives back, not what the collector finds later
    before = open_sockets()
    asyncio.run(first())
    report = asyncio.run(second())
    report["sockets left"] = open_sockets() - before
    gc.enable()
    asyncio.run(cleanup(kind, url, name, transport))
    print(json.dumps(report))


def open_sockets() -> int:
    """Socket file descriptors this process holds."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


if __name__ == "__main__":
    main(*sys.argv[1:4])
