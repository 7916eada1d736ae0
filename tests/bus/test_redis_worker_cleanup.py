"""A group worker's end is always recorded, whatever its own cleanup does.

Each partition worker closes its reader (a client of its own) when it ends, and only then
tells its member that it ended; ``close()`` waits for that. A cleanup that raised
(redis-py 5.0.0 has no ``aclose``) skipped the notice, and ``close()`` waited for ever.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import redis.asyncio as aioredis

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.redis import RedisTransport
from tests.helpers import eventually

pytestmark = pytest.mark.redis

LOGGER = "pepperpy.event.transports.redis"


async def test_close_returns_when_closing_a_workers_reader_fails(
    redis_url: str,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    transport = RedisTransport(redis_url, namespace=namespace, partitions=2, trim_interval=None)
    make_reader = transport._reader_client

    def failing_reader() -> Any:
        reader = make_reader()
        disconnect = reader.aclose

        async def aclose() -> None:
            await disconnect()  # its connections do go: only the cleanup's end fails
            raise RuntimeError("cleanup failed")

        reader.aclose = aclose
        return reader

    monkeypatch.setattr(transport, "_reader_client", failing_reader)
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    got: list[Any] = []

    @bus.subscribe("w.*", group="g")
    def handle(event: Event) -> None:
        got.append(event.data)

    await bus.start()
    member = transport._members[0]
    await eventually(lambda: len(member._workers) == 2)  # a worker per partition
    await bus.publish("w.x", 1)
    await eventually(lambda: got == [1])
    async with asyncio.timeout(15):  # used to wait for ever
        await bus.close()
    assert not member._workers
    failures = [r for r in caplog.records if "reader failed" in r.getMessage()]
    assert len(failures) == 2
    assert all(r.exc_info and r.exc_info[0] is RuntimeError for r in failures)
    # close() went on to its end: it gave the partitions back and left the group
    plain = aioredis.Redis.from_url(redis_url)
    try:
        assert not await plain.exists(member.members_key, *member.lease_keys)
    finally:
        await plain.aclose()
