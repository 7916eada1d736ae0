"""memory://: per-key order holds in a group whose last member leaves and a new one joins.

A group is its name and pattern (docs/bus.md, "Groups and keys"): events of one key reach
it one at a time, in publish order, whichever member handles them. On ``memory://`` a
group left by its last member was forgotten, and the same group joined again started a
key order of its own: the key's next event ran beside the one the leaving member was
still handling.
"""

from __future__ import annotations

import asyncio

from pepperpy.event import Event, EventBus, RetryPolicy


async def test_a_keys_next_event_waits_for_the_leaving_members_event_in_a_rejoined_group() -> None:
    bus = EventBus(retry_policy=RetryPolicy.NONE)
    leaving_busy = asyncio.Event()
    release = asyncio.Event()
    log: list[str] = []

    async def old_member(event: Event) -> None:
        log.append(f"old start {event.data}")
        await bus.unsubscribe("acct.*", old_member, group="ledger")  # returns at once
        leaving_busy.set()
        await release.wait()
        log.append(f"old end {event.data}")

    async def new_member(event: Event) -> None:
        log.append(f"new start {event.data}")

    bus.subscribe("acct.*", old_member, group="ledger")
    async with asyncio.timeout(10):  # a deadlock guard, not a timing assertion
        async with bus:
            first = asyncio.create_task(bus.publish("acct.moved", 1, key="a-1"))
            await leaving_busy.wait()  # the group has no member left
            bus.subscribe("acct.*", new_member, group="ledger")
            await bus.start()  # registered: the same group again
            second = asyncio.create_task(bus.publish("acct.moved", 2, key="a-1"))
            await bus.publish("acct.moved", 3, key="b-2")  # another key is not held back
            assert log == ["old start 1", "new start 3"]
            release.set()
            await first
            await second
    assert log == ["old start 1", "new start 3", "old end 1", "new start 2"]
