"""A subscription on an SQLite file follows what other processes append to it: two
writer processes appending at once, each SIGKILLed mid-run, are followed in global order,
every committed event once (none skipped, none twice, no half of a batch), and the
subscription stays live after the kills."""

from __future__ import annotations

import asyncio
from collections import Counter

from pepperpy.event import Event, EventStore
from tests.helpers import eventually
from tests.store.crash import BATCH, CHILD, _acknowledged_before_sigkill

#: two writers, each appending to streams of its own (crash.a0..3, crash.b0..3)
TAGS = ("a", "b")
WRITERS = [CHILD.replace('f"crash.s{', f'f"crash.{tag}{{') for tag in TAGS]


async def test_a_subscription_follows_two_writer_processes_killed_mid_run(
    sqlite_url: str,
) -> None:
    async with EventStore(sqlite_url) as store:
        await store.append("start.1", Event("start"))
        seen: list[Event] = []

        async def follow() -> None:
            async for event in store.subscribe(0):
                seen.append(event)

        follower = asyncio.ensure_future(follow())
        try:
            acknowledged = await asyncio.gather(
                *(_acknowledged_before_sigkill(writer, sqlite_url) for writer in WRITERS)
            )
            head = await store.head()
            assert head is not None
            await eventually(lambda: len(seen) == head + 1, timeout=30)
            assert [event.global_position for event in seen] == list(range(head + 1))
            ticks = [event for event in seen if event.type == "crash.tick"]
            for tag, acks in zip(TAGS, acknowledged, strict=True):
                per_batch = Counter(
                    event.data["batch"]
                    for event in ticks
                    if (event.stream or "").startswith(f"crash.{tag}")
                )
                assert set(per_batch.values()) == {BATCH}  # no half-written batch
                assert set(acks) <= set(per_batch)  # every acknowledged one
            await store.append("after.1", Event("after"))  # live after the kills
            await eventually(lambda: seen[-1].type == "after", timeout=30)
            assert seen[-1].global_position == head + 1
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
