"""A group member in its own process, for the Redis multi-process tests.

Usage: ``python redis_worker.py URL NAMESPACE PATTERN RESULTS NAME [HANG_ON]``

Joins group ``workers`` on ``PATTERN`` and, for each event, increments ``RESULTS``
field ``n`` (the event's ``data["n"]``) and the counter ``RESULTS:NAME``, and appends
``n`` to ``RESULTS:order:KEY`` for events published with a key. With
``HANG_ON`` given, the handler for that ``n`` marks ``RESULTS:hung`` and never returns,
so the test can kill the process mid-handler. Prints ``ready`` once subscribed; exits
cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import redis.asyncio as aioredis

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.redis import RedisTransport


async def main(url: str, namespace: str, pattern: str, results: str, name: str, hang: int) -> None:
    client = aioredis.Redis.from_url(url)
    transport = RedisTransport(url, namespace=namespace, lease_ttl=3.0, batch_size=50)
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)

    @bus.subscribe(pattern, group="workers")
    async def work(event: Event) -> None:
        n = event.data["n"]
        if n == hang:
            await client.set(f"{results}:hung", name)
            await asyncio.Event().wait()
        pipe = client.pipeline(transaction=False)
        pipe.hincrby(results, str(n), 1)
        pipe.incr(f"{results}:{name}")
        key = event.metadata.get("partitionkey")
        if key is not None:
            pipe.rpush(f"{results}:order:{key}", n)
        await pipe.execute()

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with bus:
        print("ready", flush=True)
        await stop.wait()
    await client.aclose()


if __name__ == "__main__":
    url, namespace, pattern, results, name = sys.argv[1:6]
    hang = int(sys.argv[6]) if len(sys.argv) > 6 else -1
    asyncio.run(main(url, namespace, pattern, results, name, hang))
