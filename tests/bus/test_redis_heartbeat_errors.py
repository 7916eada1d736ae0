"""A group member's lease heartbeat survives an error it did not expect.

The heartbeat loop retried a lost connection and a refused command; anything else (a
bug, a reply it cannot read, a ``CancelledError`` a driver raises on its own) ended it
for good: the member renewed no lease, stopped delivering once its leases lapsed, and
stayed so, silently, while ``health()`` said ready; alone in its group, the group's
events piled up. Now the error is logged with its traceback, ``health()`` reports it
(``outage_reason`` ``"consumer failed"``) while it lasts, and the heartbeat goes on
(docs/transport-redis.md, "Reconnecting").
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


async def test_a_heartbeat_failing_unexpectedly_is_reported_and_goes_on(
    redis_url: str,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    transport = RedisTransport(
        f"{redis_url}?namespace={namespace}&partitions=2&trim_interval=off",
        lease_ttl=1.5,
        max_backoff=0.3,
    )
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    seen: list[int] = []

    @bus.subscribe("jobs.*", group="workers")
    def work(event: Event) -> None:
        seen.append(event.data)

    async with asyncio.timeout(60), bus:
        await bus.publish("jobs.run", 1)
        await eventually(lambda: seen == [1])
        member: Any = transport._members[0]
        # the narrowest seam: the lease script's call fails as a bug below it would
        real = member._leases.renew
        failing = [True]

        async def renew(ttl_ms: int) -> Any:
            if failing[0]:
                raise RuntimeError("a bug under the heartbeat")
            return await real(ttl_ms)

        monkeypatch.setattr(member._leases, "renew", renew)
        await eventually(
            lambda: any("a bug under the heartbeat" in r.getMessage() for r in caplog.records)
        )
        logged = [r for r in caplog.records if "a bug under the heartbeat" in r.getMessage()]
        assert logged[0].levelno == logging.ERROR
        assert logged[0].exc_info is not None
        assert "workers" in logged[0].getMessage()
        await eventually(lambda: bus.health().outage_reason == "consumer failed")
        assert not bus.health().ready
        assert "a bug under the heartbeat" in (bus.health().outage_message or "")
        await asyncio.sleep(2.5)  # the leases lapse meanwhile (lease_ttl 1.5 s)
        await bus.publish("jobs.run", 2)
        # once, not at every heartbeat
        assert (
            len([r for r in caplog.records if "a bug under the heartbeat" in r.getMessage()]) == 1
        )
        failing[0] = False
        await eventually(lambda: seen == [1, 2], timeout=20)
        await eventually(lambda: bus.health().ready)
        await bus.publish("jobs.run", 3)
        await eventually(lambda: seen == [1, 2, 3])
