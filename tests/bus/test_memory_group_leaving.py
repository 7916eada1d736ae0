"""memory://: a group member leaving while an event is being published loses nothing.

``publish`` chose the member of an unkeyed event at once; its delivery task started
later, and a member that began leaving meanwhile refused it (NotDelivered): the event
reached no other member and was logged as an ERROR with a traceback (audit 13, finding
2). The member is now chosen when the delivery starts, as for keyed events. An ungrouped
subscription being removed drops what it had not started, as documented, without an
ERROR.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pepperpy.event import EventBus, RetryPolicy


@pytest.mark.parametrize("key", [None, "k"], ids=["unkeyed", "keyed"])
async def test_an_event_published_as_a_member_leaves_goes_to_another_member(
    key: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    bus = EventBus(retry_policy=RetryPolicy.NONE)
    got: list[tuple[str, int]] = []

    def a(event: Any) -> None:
        got.append(("a", event.data))

    def b(event: Any) -> None:
        got.append(("b", event.data))

    bus.subscribe("jobs.run", a, group="g")
    bus.subscribe("jobs.run", b, group="g")
    async with bus:
        await bus.publish("jobs.run", 0, key=key)  # a, then b: round robin
        await bus.publish("jobs.run", 1, key=key)
        # publish 2 (a's turn) while a leaves, in a task scheduled right behind it
        publishing = asyncio.create_task(bus.publish("jobs.run", 2, key=key))
        unsubscribing = asyncio.create_task(bus.unsubscribe("jobs.run", a, group="g"))
        async with asyncio.timeout(10):
            await asyncio.gather(publishing, unsubscribing)
        await bus.publish("jobs.run", 3, key=key)
    assert sorted(n for _, n in got) == [0, 1, 2, 3]
    assert ("b", 2) in got
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_an_ungrouped_subscription_removed_during_a_publish_drops_it_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus(retry_policy=RetryPolicy.NONE)
    got: list[Any] = []
    stays: list[Any] = []

    def leaving(event: Any) -> None:
        got.append(event.data)

    bus.subscribe("jobs.run", leaving)
    bus.subscribe("jobs.run", stays.append)
    async with bus:
        await bus.publish("jobs.run", 0)
        publishing = asyncio.create_task(bus.publish("jobs.run", 1))
        unsubscribing = asyncio.create_task(bus.unsubscribe("jobs.run", leaving))
        async with asyncio.timeout(10):
            await asyncio.gather(publishing, unsubscribing)
    assert got == [0]  # not started when it was removed: dropped, as documented
    assert [e.data for e in stays] == [0, 1]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
