"""Driving a follower through faults of its state store, one at a time."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from pepperpy.event import Event, EventStore


class Fault(Protocol):
    """A fault injector that counts the faults it has caused."""

    fired: int


async def append_until_fired(
    store: EventStore, fault: Fault, fired: int, follower: asyncio.Future[Any]
) -> None:
    """Append events one by one (each a commit of the follower's own) until ``fault``
    has fired ``fired`` times; then check the follower is still going a moment later."""
    for _ in range(50):
        await store.append("acc.1", Event("acc.add"))
        await asyncio.sleep(0.02)
        if fault.fired == fired:
            break
    assert fault.fired == fired
    await asyncio.sleep(0.2)
    assert not follower.done(), follower.exception()
