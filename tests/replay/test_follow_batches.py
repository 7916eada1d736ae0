"""follow() commits the live events waiting together, up to batch_size.

It committed each live event in a transaction of its own: after a burst of appends (an
import, say) a follower took 30-38 times as long as run() over the same events to catch
up (audit 6: 20,000 events, 9-11 s against 0.3 s), and fell behind for good past about
2,000 events/s. Events that come one at a time are still committed one at a time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pepperpy.event import Event, EventStore, Projection, TableProjection
from tests.helpers import eventually
from tests.replay.test_table_projection import append, expected, ledger, rows

BURST = 1000


def counted(projection: Projection) -> list[int]:
    """Count the commits of ``projection`` (each the position it saved)."""
    state_store: Any = projection.state_store
    saved: list[int] = []
    name = "save_within" if isinstance(projection, TableProjection) else "save"
    original = getattr(state_store, name)

    async def counting(key: str, position: int, *args: Any, **kwargs: Any) -> None:
        await original(key, position, *args, **kwargs)
        saved.append(position)

    setattr(state_store, name, counting)
    return saved


def tally(store: EventStore) -> Projection:
    projection = Projection("tally", store, initial=lambda: {"n": 0, "last": -1})

    @projection.on("account.credited")
    def count(state: dict[str, int], event: Event) -> None:
        assert event.global_position == state["last"] + 1  # each once, in order
        state["n"] += 1
        state["last"] = event.global_position

    return projection


@pytest.mark.parametrize("kind", ["tables", "json"])
async def test_a_burst_is_committed_in_batches_and_single_events_one_by_one(
    url: str, kind: str
) -> None:
    async with EventStore(url) as store:
        projection = ledger(store, batch_size=100) if kind == "tables" else tally(store)
        await append(store, 1)
        follower = asyncio.ensure_future(projection.follow())
        try:
            await eventually(lambda: projection.position == 0, timeout=15)
            saved = counted(projection)
            for n in range(1, 4):  # one at a time: each committed as it comes
                await append(store, 1, first=n)
                await eventually(lambda n=n: projection.position == n, timeout=15)
            assert saved == [1, 2, 3]
            await store.append(  # a burst: one append of many events
                "account.burst",
                [Event("account.credited", {"amount": n}) for n in range(4, 4 + BURST)],
            )
            await eventually(lambda: projection.position == 3 + BURST, timeout=30)
            assert not follower.done()
            burst_commits = len(saved) - 3
            assert BURST // 100 <= burst_commits < BURST // 10, saved
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
        if kind == "tables":
            credits, _ = await rows(url)
            assert credits == expected(4 + BURST)[0]
        else:
            assert projection.state == {"n": 4 + BURST, "last": 3 + BURST}
        await projection.close()
