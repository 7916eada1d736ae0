"""Attaching a processor to a store, or running it in the background, outside a loop.

Those two start a task on the running event loop, where ``attach`` to a manager or a
bus only registers a handler (SPEC 0: registrations need no running loop). Called from
sync code (module level, next to ``attach(bus, ...)``), they used to raise asyncio's
bare ``RuntimeError: no running event loop``, naming neither the call nor the way out;
they now say which call needs the loop and how to call it, and leave the store usable.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pepperpy.event import Event, EventBus, EventManager, EventProcessor, EventStore


def processor() -> EventProcessor:
    p = EventProcessor()
    p.handle("#", lambda event: None)
    return p


@pytest.mark.parametrize("options", [{}, {"from_position": 3, "types": "user.*"}])
def test_attach_to_a_store_outside_a_loop_says_what_needs_the_loop(
    options: dict[str, object],
) -> None:
    store = EventStore()
    with pytest.raises(RuntimeError, match=r"attach\(\) to an event store needs an event loop"):
        processor().attach(store, **options)  # type: ignore[arg-type]

    async def main() -> int:  # the store is untouched: nothing was subscribed
        async with store:
            await store.append("user.1", {"type": "user.created", "data": {}})
            return len(await store.get_stream("user.1"))

    assert asyncio.run(main()) == 1


def test_attach_with_a_checkpoint_outside_a_loop_says_what_needs_the_loop() -> None:
    with pytest.raises(RuntimeError, match=r"attach\(\) to an event store needs an event loop"):
        processor().attach(EventStore(), checkpoint="mails")


def test_run_in_background_outside_a_loop_says_what_needs_the_loop() -> None:
    async def events() -> AsyncIterator[Event]:
        yield Event("user.created")

    source = events()
    with pytest.raises(RuntimeError, match=r"run_in_background\(\) needs an event loop"):
        processor().run_in_background(source)
    asyncio.run(source.aclose())


def test_attach_to_a_manager_or_a_bus_needs_no_loop() -> None:
    p, manager, bus = processor(), EventManager(), EventBus()
    seen: list[str] = []
    p.handle("user.*", lambda event: seen.append(event.type))
    p.attach(manager, "user.*")
    p.attach(bus, "user.*")

    async def main() -> None:
        await manager.emit("user.created", {})
        async with bus:
            await bus.publish("user.renamed", {})

    asyncio.run(main())
    assert seen == ["user.created", "user.renamed"]


async def test_attach_to_a_store_inside_a_loop_still_follows_it() -> None:
    async with EventStore() as store:
        seen: list[str] = []
        p = EventProcessor()
        p.handle("#", lambda event: seen.append(event.type))
        following = p.attach(store)
        await store.append("user.1", {"type": "user.created", "data": {}})
        while following.processed < 1:
            await asyncio.sleep(0.01)
        await following.stop()
    assert seen == ["user.created"]
