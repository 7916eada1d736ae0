"""Stored types that are not valid topics: replay and projections skip them, never crash.

Older stores hold such types ("Order Placed"): append accepted them before it refused
them. They are written here through the backend, as an older version would have.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from pepperpy.event import Event, EventReplay, EventStore, Projection
from pepperpy.event.store.base import ANY, NewRecord

LEGACY = "Order Placed"


async def store_legacy(store: EventStore, stream: str, event_type: str, data: Any) -> None:
    """Write one event with ``event_type`` as it is, bypassing append's checks."""
    record = NewRecord(
        id=str(uuid.uuid4()),
        type=event_type,
        version=1,
        data=json.dumps(data).encode(),
        metadata=None,
        timestamp=int(datetime.now(UTC).timestamp() * 1_000_000),
        source=None,
        subject=None,
    )
    await store.backend.append(stream, [record], ANY)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[EventStore]:
    async with EventStore("memory://" if request.param == "memory" else sqlite_url) as events:
        await events.append("order.1", Event("order.placed", {"n": 1}))
        await store_legacy(events, "order.1", LEGACY, {"n": 2})
        await events.append("order.1", Event("order.paid", {"n": 3}))
        assert [e.type for e in await events.get_stream("order.1")] == [
            "order.placed",
            LEGACY,
            "order.paid",
        ]
        yield events


async def test_replay_all_skips_a_type_that_is_not_a_topic(store: EventStore) -> None:
    async with EventReplay(store) as replay:
        seen: list[int] = []
        everything: list[int] = []
        replay.handle("order.*", lambda event: seen.append(event.data["n"]))
        replay.handle("#", lambda event: everything.append(event.data["n"]))
        report = await replay.replay_all()
        assert seen == everything == [1, 3]
        assert (report.replayed, report.skipped, report.failed) == (2, 1, 0)
        assert report.last_position == (await store.get_stream("order.1"))[-1].global_position
        assert replay.handlers(LEGACY) == []


@pytest.mark.parametrize("types", [None, "order.*", ["#"], ["Order", "order.paid"]])
async def test_replay_stream_and_its_types_filter_skip_it(
    store: EventStore, types: str | list[str] | None
) -> None:
    async with EventReplay(store) as replay:
        seen: list[int] = []
        replay.handle("#", lambda event: seen.append(event.data["n"]))
        report = await replay.replay_stream("order.1", types=types)
        expected = [3] if types == ["Order", "order.paid"] else [1, 3]
        assert seen == expected
        if types is None or types == ["#"]:  # every type: read, no handler takes it: skipped
            assert report.read == 3 and report.skipped == 1
        else:  # no other types pattern matches it: not read, as replay_all's store filter
            assert report.read == len(expected) and report.skipped == 0
        whole = await replay.replay_all(types=types)
        assert (whole.read, whole.skipped) == (report.read, report.skipped)
        assert report.last_position == 2


async def test_a_checkpointed_replay_moves_past_it(store: EventStore) -> None:
    async with EventReplay(store) as replay:
        seen: list[int] = []
        replay.handle("#", lambda event: seen.append(event.data["n"]))
        await replay.replay_all(checkpoint="c", checkpoint_every=1)
        await store_legacy(store, "order.1", LEGACY, {"n": 4})
        await store.append("order.1", Event("order.shipped", {"n": 5}))
        report = await replay.replay_all(checkpoint="c", checkpoint_every=1)
        assert seen == [1, 3, 5]
        assert (report.replayed, report.skipped) == (1, 1)


async def test_a_projection_skips_it(store: EventStore) -> None:
    async with Projection("orders", store, batch_size=1) as projection:

        @projection.on("#")
        def count(state: dict[str, Any], event: Event) -> None:
            state.setdefault("seen", []).append(event.data["n"])

        report = await projection.run()
        assert projection.state == {"seen": [1, 3]}
        assert (report.replayed, report.skipped) == (2, 1)
        assert projection.position == report.last_position


async def test_a_following_projection_skips_it_live(store: EventStore) -> None:
    async with Projection("orders", store) as projection:
        applied = asyncio.Event()

        @projection.on("order.*")
        def count(state: dict[str, Any], event: Event) -> None:
            state.setdefault("seen", []).append(event.data["n"])
            if event.data["n"] == 5:
                applied.set()

        follower = asyncio.create_task(projection.follow())
        done = asyncio.create_task(applied.wait())
        try:
            async with asyncio.timeout(10):
                await store_legacy(store, "order.1", LEGACY, {"n": 4})
                await store.append("order.1", Event("order.shipped", {"n": 5}))
                await asyncio.wait({follower, done}, return_when=asyncio.FIRST_COMPLETED)
            if follower.done():
                follower.result()  # it stopped: say why
        finally:
            follower.cancel()
            done.cancel()
            await asyncio.gather(follower, done, return_exceptions=True)
        assert projection.state == {"seen": [1, 3, 5]}
