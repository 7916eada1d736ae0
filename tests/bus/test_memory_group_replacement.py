"""memory://: replacing a group's member keeps what the group had not started.

docs/bus.md, "unsubscribe": a group member's unstarted events go to the other members.
A member subscribed just before the old one is unsubscribed (a replacement: subscribe
the new, unsubscribe the old) is such a member, registered or not yet: an event
published before, whose delivery had not started, went to nobody on ``memory://`` (the
group was left empty and forgotten before the new member was registered), where a
broker's group keeps it for the new member.
"""

from __future__ import annotations

import asyncio

from pepperpy.event import Event, EventBus, MemoryTransport, RetryPolicy


class _Announcing(MemoryTransport):
    """Sets ``entered`` as a publish enters: a task woken by it runs before the delivery
    that publish queues (asyncio runs ready callbacks in order), so it is not started."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()

    async def publish(self, event: Event, *, key: str | None = None) -> None:
        self.entered.set()
        await super().publish(event, key=key)


async def test_an_unstarted_event_goes_to_the_member_subscribed_to_replace_the_leaving_one() -> (
    None
):
    transport = _Announcing()
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    old: list[int] = []
    new: list[int] = []

    async def old_member(event: Event) -> None:
        old.append(event.data)

    async def new_member(event: Event) -> None:
        new.append(event.data)

    bus.subscribe("jobs.*", old_member, group="workers")
    async with asyncio.timeout(10):  # a deadlock guard, not a timing assertion
        async with bus:
            publishing = asyncio.create_task(bus.publish("jobs.run", 1))
            await transport.entered.wait()  # its delivery is queued, not started
            assert not old and not new
            bus.subscribe("jobs.*", new_member, group="workers")
            assert await bus.unsubscribe("jobs.*", old_member, group="workers")
            await publishing
            await bus.publish("jobs.run", 2)
    assert (old, new) == ([], [1, 2])
