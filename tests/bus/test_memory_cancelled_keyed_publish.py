"""memory://: a keyed publish cancelled while its delivery waits its turn keeps the key's order.

Each keyed delivery waits for the one before it of its key. When a publish is cancelled
while its delivery still waits, that delivery is done at once (cancelled); the one after
it must still wait for the delivery before it, not start beside it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, MemoryTransport, RetryPolicy


class _Announcing(MemoryTransport):
    """Sets ``entered[data]`` as each publish enters: its keyed delivery is queued by the
    time a task awaiting it runs again (queuing happens before the publish's first await)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered: dict[Any, asyncio.Event] = {}

    async def publish(self, event: Event, *, key: str | None = None) -> None:
        self.entered.setdefault(event.data, asyncio.Event()).set()
        await super().publish(event, key=key)

    async def queued(self, data: Any) -> None:
        await self.entered.setdefault(data, asyncio.Event()).wait()


@pytest.mark.parametrize("group", [None, "workers"])
async def test_a_cancelled_keyed_publish_does_not_let_the_next_one_overlap_the_one_before(
    group: str | None,
) -> None:
    transport = _Announcing()
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    release = asyncio.Event()
    first_running = asyncio.Event()
    running: list[int] = []
    overlaps: list[tuple[list[int], int]] = []
    handled: list[int] = []

    @bus.subscribe("acct.moved", group=group)
    async def handler(event: Event) -> None:
        if running:
            overlaps.append((list(running), event.data))
        running.append(event.data)
        if event.data == 1:
            first_running.set()
            await release.wait()
        running.remove(event.data)
        handled.append(event.data)

    async with asyncio.timeout(10):
        async with bus:
            first = asyncio.create_task(bus.publish("acct.moved", 1, key="a-1"))
            await first_running.wait()
            second = asyncio.create_task(bus.publish("acct.moved", 2, key="a-1"))
            await transport.queued(2)
            third = asyncio.create_task(bus.publish("acct.moved", 3, key="a-1"))
            await transport.queued(3)
            second.cancel()
            with pytest.raises(asyncio.CancelledError):
                await second
            assert not third.done()  # 3 waits for 1, which still runs
            release.set()
            await first
            await third
    assert overlaps == []
    assert handled == [1, 3]
