"""A group's partition worker failing by something unexpected, again and again.

The worker retries each failed round; an error it did not expect (a bug, a reply it
cannot read) was logged with its traceback at every retry (every ``max_backoff`` at
most, for as long as it lasted) while ``health()`` said ready, though the partition
delivered nothing. Now it is logged at ERROR once per cause, ``health()`` reports it
(``outage_reason`` ``"consumer failed"``) until a round succeeds, and the partition
delivers again once the error is gone (docs/transport-redis.md, "Reconnecting").
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.redis import RedisTransport
from tests.helpers import eventually

pytestmark = pytest.mark.redis

LOGGER = "pepperpy.event.transports.redis"


async def test_a_worker_failing_unexpectedly_is_logged_once_and_reported(
    redis_url: str,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    transport = RedisTransport(
        redis_url, namespace=namespace, partitions=1, trim_interval=None, max_backoff=0.1
    )
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    seen: list[int] = []

    @bus.subscribe("jobs.*", group="workers")
    def work(event: Event) -> None:
        seen.append(event.data)

    def logged() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if "a bug under the worker" in r.getMessage()
            or (r.exc_info and "a bug under the worker" in str(r.exc_info[1]))
        ]

    async with asyncio.timeout(60), bus:
        await bus.publish("jobs.run", 1)
        await eventually(lambda: seen == [1])
        member: Any = transport._members[0]
        # the narrowest seam: the claim a worker makes after its reads fails as a bug would
        real = member._claim
        failing = [True]

        async def claim(*args: Any) -> bool:
            if failing[0]:
                raise RuntimeError("a bug under the worker")
            result: bool = await real(*args)
            return result

        monkeypatch.setattr(member, "_claim", claim)
        member._acks.reclaim.add(0)  # its next round claims
        await bus.publish("jobs.run", 2)
        await eventually(lambda: bool(logged()))
        await eventually(lambda: bus.health().outage_reason == "consumer failed")
        assert "a bug under the worker" in (bus.health().outage_message or "")
        await asyncio.sleep(1.0)  # ten retries or so
        assert len(logged()) == 1
        assert logged()[0].levelno == logging.ERROR and logged()[0].exc_info
        failing[0] = False
        await eventually(lambda: seen == [1, 2], timeout=20)
        await eventually(lambda: bus.health().ready)
