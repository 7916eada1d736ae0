"""A group's acknowledgement that fails by something unexpected is delivered again.

Acks leave in the background; one that fails because Redis is unreachable or refuses
marks its partition for a new claim, which delivers its entries again. Any other error
(a bug, a reply it cannot read, a ``CancelledError`` a driver raised on its own) ended
the ack task without that mark: the finished entries stayed pending with a live member
that never claims them while it holds the partition (not redelivered, and the stream
never trimmed past them). Now they are marked for a claim as well, the error logged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.redis import RedisTransport
from tests.helpers import eventually

pytestmark = pytest.mark.redis

LOGGER = "pepperpy.event.transports.redis"


@pytest.mark.parametrize("error", [RuntimeError("a bug under the ack"), asyncio.CancelledError()])
async def test_an_ack_failing_unexpectedly_leaves_nothing_stranded(
    redis_url: str,
    namespace: str,
    client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    transport = RedisTransport(
        redis_url, namespace=namespace, partitions=1, trim_interval=None, max_backoff=0.3
    )
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    stream = f"{namespace}:stream:0"
    seen: list[int] = []
    failed: list[int] = []
    execute = Pipeline.execute

    # the narrowest seam: the first XACK pipeline fails as a bug below it would
    async def failing_execute(self: Pipeline, raise_on_error: bool = True) -> list[Any]:
        if not failed and any(args[0] == "XACK" for args, _ in self.command_stack):
            failed.append(1)
            raise error
        return await execute(self, raise_on_error)

    @bus.subscribe("h.*", group="g")
    def handle(event: Event) -> None:
        seen.append(event.data)

    async with asyncio.timeout(60), bus:
        monkeypatch.setattr(Pipeline, "execute", failing_execute)
        await bus.publish("h.x", 1)
        await eventually(lambda: bool(failed))
        await bus.publish("h.x", 2)
        # at-least-once: the entry whose ack was lost comes again, and nothing stays
        # pending with the live member
        await eventually(lambda: seen.count(1) == 2 and 2 in seen, timeout=20)

        async def pending() -> int:
            summary: Any = await client.xpending(stream, "g:h.*")
            return int(summary["pending"])

        deadline = asyncio.get_running_loop().time() + 20
        while await pending() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert await pending() == 0
    if isinstance(error, RuntimeError):
        assert any(
            r.levelno == logging.ERROR and r.exc_info and "acknowledg" in r.getMessage()
            for r in caplog.records
        )
