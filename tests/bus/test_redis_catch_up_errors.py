"""An ungrouped subscription catching up survives an error it did not expect.

A subscription whose lane overflows reads that partition by itself until it has caught
up with the shared reader, which skips it meanwhile. Its catch-up task retried a failed
read, but an error after the read (a bug handling what it read) or a ``CancelledError``
a driver raised on its own ended it for good: the partition stayed "behind", read by
nobody, and the subscription received nothing more from it, silently. Now the error is
logged with its traceback and the catch-up goes on from the last entry it took, so every
event arrives, in order, once (docs/transport-redis.md, "Lanes that fall behind").
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.redis import RedisTransport
from pepperpy.event.transports.redis._feed import Feed
from tests.helpers import eventually

pytestmark = pytest.mark.redis

LOGGER = "pepperpy.event.transports.redis"


@pytest.mark.parametrize("error", [RuntimeError("a bug after the read"), asyncio.CancelledError()])
async def test_a_catch_up_that_fails_unexpectedly_goes_on(
    redis_url: str,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    transport = RedisTransport(
        f"{redis_url}?namespace={namespace}&partitions=1&batch_size=2&trim_interval=off",
        max_backoff=0.3,
    )
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    seen: list[int] = []
    failures: list[int] = []

    # the narrowest seam: what follows a catch-up read fails once, as a bug would
    real = Feed._check_read

    def check_read(self: Feed, *args: Any) -> int:
        if not failures:
            failures.append(1)
            raise error
        return real(self, *args)

    monkeypatch.setattr(Feed, "_check_read", check_read)

    @bus.subscribe("o.*")
    async def slow(event: Event) -> None:
        await asyncio.sleep(0.02)  # slower than the publishes: its lane overflows
        seen.append(event.data)

    async with asyncio.timeout(60), bus:
        await bus.publish_many("o.made", list(range(40)), key="one")
        await eventually(lambda: len(seen) == 40, timeout=30)
        assert seen == list(range(40))
        assert failures  # it did fall behind, and met the error
        if isinstance(error, RuntimeError):
            assert any(
                r.levelno == logging.ERROR and r.exc_info and "catching up" in r.getMessage()
                for r in caplog.records
            )


async def test_a_catch_up_failing_again_and_again_is_logged_once_and_reported(
    redis_url: str,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    transport = RedisTransport(
        f"{redis_url}?namespace={namespace}&partitions=1&batch_size=2&trim_interval=off",
        max_backoff=0.1,
    )
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    seen: list[int] = []
    failing = [True]
    real = Feed._check_read

    def check_read(self: Feed, *args: Any) -> int:
        if failing[0]:
            raise RuntimeError("a bug after the read, for a while")
        return real(self, *args)

    monkeypatch.setattr(Feed, "_check_read", check_read)

    def logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.exc_info and "for a while" in str(r.exc_info[1])]

    @bus.subscribe("o.*")
    async def slow(event: Event) -> None:
        await asyncio.sleep(0.02)
        seen.append(event.data)

    async with asyncio.timeout(60), bus:
        await bus.publish_many("o.made", list(range(40)), key="one")
        await eventually(lambda: bool(logged()), timeout=20)
        await eventually(lambda: bus.health().outage_reason == "consumer failed")
        assert "for a while" in (bus.health().outage_message or "")
        await asyncio.sleep(1.0)  # ten retries or so
        assert len(logged()) == 1
        failing[0] = False
        await eventually(lambda: len(seen) == 40, timeout=30)
        assert seen == list(range(40))
        await eventually(lambda: bus.health().ready)
