"""Entries trimmed from a Redis stream before an ungrouped subscription read them.

Such a subscription can lose events that fall out of ``retention`` or ``maxlen`` while it
lags (docs/transport-redis.md, Retention and cleanup); the loss must never be silent.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, RetryPolicy
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys

pytestmark = pytest.mark.redis


async def test_a_subscription_left_behind_by_maxlen_is_told_so(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    namespace = unique_name("trimmed")
    url = (
        f"{redis_url}?namespace={namespace}&partitions=1&maxlen=40&batch_size=10&trim_interval=off"
    )
    bus = EventBus(transport=url, retry_policy=RetryPolicy.NONE)
    seen: list[int] = []

    @bus.subscribe("orders.*")
    async def slow(event: Event) -> None:
        await asyncio.sleep(0.002)
        seen.append(event.data["i"])

    caplog.set_level(logging.WARNING, logger="pepperpy")
    try:
        async with bus:
            for i in range(1500):
                await bus.publish("orders.created", {"i": i, "pad": "x" * 50})
            async with asyncio.timeout(30):
                while not any("trimmed" in r.getMessage() for r in caplog.records):
                    await asyncio.sleep(0.05)
    finally:
        await delete_redis_keys(redis_url, f"{namespace}:*")
    lost = 1500 - len(set(seen))
    assert lost > 0  # the stream kept 40 entries while the handler took ~2 ms each
    warnings: list[Any] = [r for r in caplog.records if "trimmed" in r.getMessage()]
    assert warnings and all(r.levelno == logging.WARNING for r in warnings)
    assert "not read yet" in warnings[0].getMessage() or "behind" in warnings[0].getMessage()
