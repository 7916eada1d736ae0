"""``close()`` after an ``unsubscribe`` that was cancelled still waits for its handlers.

``unsubscribe`` returns once the handler's deliveries in progress have finished; cut
short (under a timeout, or its task cancelled), it had already forgotten the group
member or the ungrouped subscription's feed, so ``close()`` did not wait for them: the
handler was still running after ``close()`` returned, its partition workers and lane
workers with it (a group's then acknowledged on the closed client, reconnecting it).
The transport now keeps them until they have closed, and ``close()`` finishes their
close.
"""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.redis import RedisTransport
from tests.helpers import eventually

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("group", ["g", None])
async def test_close_waits_for_the_handlers_of_a_cancelled_unsubscribe(
    redis_url: str, namespace: str, group: str | None
) -> None:
    transport = RedisTransport(redis_url, namespace=namespace, partitions=2, trim_interval=None)
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    running: set[int] = set()
    finished: list[int] = []

    async def slow(event: Event) -> None:
        running.add(event.data)
        await asyncio.sleep(0.5)
        running.discard(event.data)
        finished.append(event.data)

    bus.subscribe("o.*", slow, group=group)
    before = set(asyncio.all_tasks())
    async with asyncio.timeout(60):
        await bus.start()
        await bus.publish_many("o.made", [0, 1], key=lambda n: f"k{n}")
        await eventually(lambda: bool(running))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):  # the caller gives up on waiting
                await bus.unsubscribe("o.*", slow, group=group)
        await bus.close()
        assert not running  # every handler in progress finished before close() returned
        left = [
            task
            for task in asyncio.all_tasks() - before
            if task is not asyncio.current_task() and not task.done()
        ]
        assert not left, left[:2]
