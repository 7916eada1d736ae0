"""A checkpoint's compare-and-set compares a revision, not only the position (audit 18,
finding 1).

A rebuild (or a reset) deletes the checkpoint and saves it again, usually ending at the
same position as before. A follower of the same projection still holding that position
used to pass the compare-and-set and write its old state over the rebuilt one, without
an error (the ABA problem): a fixed handler's result was lost, and a state rebuilt
after ``shred_stream`` got the shredded data back. Each save now writes a new random
revision, compared together with the position.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import (
    CheckpointStore,
    ConcurrencyError,
    Event,
    EventReplay,
    EventStore,
    MemoryCheckpointStore,
    PostgresCheckpointStore,
    Projection,
    ReplayError,
    SQLiteCheckpointStore,
)
from pepperpy.event._checkpoints import open_checkpoint_store
from tests.replay.test_table_projection import append, ledger, rows


@pytest.fixture
async def checkpoints(any_store_url: str) -> AsyncIterator[CheckpointStore]:
    opened = open_checkpoint_store(any_store_url)
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_checkpoint_saved_again_at_the_same_position_is_not_the_one_loaded(
    checkpoints: CheckpointStore,
) -> None:
    first = await checkpoints.save("p", 5, {"v": 1}, previous=None)
    loaded = await checkpoints.load("p")
    assert loaded is not None and loaded.revision == first and first is not None
    assert await checkpoints.delete("p") is True  # a rebuild, or a reset
    second = await checkpoints.save("p", 5, {"v": 2}, previous=None)
    assert second not in (None, first)
    with pytest.raises(ConcurrencyError) as caught:
        await checkpoints.save("p", 6, {"v": 1}, previous=5, revision=first)
    assert (caught.value.expected, caught.value.actual) == (5, 5)
    assert str(caught.value) == (
        "checkpoint 'p': expected the save at position 5 loaded before, but it was saved "
        "again since (deleted and saved anew, by a rebuild or a reset, say), at position 5 "
        "again: nothing was written"
    )
    kept = await checkpoints.load("p")
    assert kept is not None and (kept.position, kept.state, kept.revision) == (5, {"v": 2}, second)
    third = await checkpoints.save("p", 6, {"v": 2}, previous=5, revision=second)
    assert third not in (None, first, second)
    # without a revision only the position is compared, as before revisions were kept
    assert await checkpoints.save("p", 7, {"v": 3}, previous=6) is not None


def _totals(store: EventStore, state_store: CheckpointStore | None, version: int) -> Projection:
    projection = Projection(
        "totals", store, initial=lambda: {"total": 0, "v": version}, state_store=state_store
    )

    @projection.on("acct.credited")
    def credit(state: dict[str, int], event: Event) -> None:
        state["total"] += event.data["amount"] * (10 if version == 2 else 1)

    return projection


async def test_a_follower_cannot_overwrite_a_rebuild_that_ended_at_its_position(
    any_store_url: str,
) -> None:
    async with EventStore(any_store_url) as store:
        # two objects of one name share the state store's database (in memory: one object)
        shared = MemoryCheckpointStore() if any_store_url == "memory://" else None
        for _ in range(5):
            await store.append("acct.a", Event("acct.credited", {"amount": 1}))
        follower, admin = _totals(store, shared, 1), _totals(store, shared, 2)
        try:
            await follower.run()
            assert (follower.state, follower.position) == ({"total": 5, "v": 1}, 4)
            await admin.rebuild()  # a fixed handler, at the same head
            assert (admin.state, admin.position) == ({"total": 50, "v": 2}, 4)
            await store.append("acct.a", Event("acct.credited", {"amount": 1}))
            with pytest.raises(ConcurrencyError):
                await follower.run()
            # it reloaded what is on disk: the rebuilt state, not its own
            assert (follower.state, follower.position) == ({"total": 50, "v": 2}, 4)
            await admin.load()
            assert (admin.state, admin.position) == ({"total": 50, "v": 2}, 4)
        finally:
            await follower.close()
            await admin.close()


async def test_a_following_follower_stops_instead_of_overwriting_a_rebuild(
    any_store_url: str,
) -> None:
    async with EventStore(any_store_url) as store:
        shared = MemoryCheckpointStore() if any_store_url == "memory://" else None
        for _ in range(3):
            result = await store.append("acct.a", Event("acct.credited", {"amount": 1}))
        follower, admin = _totals(store, shared, 1), _totals(store, shared, 2)
        following = asyncio.ensure_future(follower.follow())
        try:
            async with asyncio.timeout(15):
                await follower.wait_until(result.global_position)
            await admin.rebuild()
            await store.append("acct.a", Event("acct.credited", {"amount": 1}))
            async with asyncio.timeout(15):
                with pytest.raises(ReplayError) as caught:
                    await following
            assert "its state was saved again since this follower loaded it" in str(caught.value)
            await admin.load()
            assert admin.state == {"total": 30, "v": 2}
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
            await follower.close()
            await admin.close()


async def test_a_follower_of_other_filters_cannot_overwrite_a_rebuild_with_new_ones(
    any_store_url: str,
) -> None:
    async with EventStore(any_store_url) as store:
        shared = MemoryCheckpointStore() if any_store_url == "memory://" else None
        await store.append("order.1", Event("order.placed", {"amount": 30}))
        await store.append("refund.1", Event("refund.made", {"amount": 5}))
        await store.append("order.2", Event("order.placed", {"amount": 100}))

        def revenue(streams: list[str]) -> Projection:
            projection = Projection(
                "revenue", store, initial=lambda: {"total": 0}, streams=streams, state_store=shared
            )
            projection.on("order.placed", lambda s, e: {"total": s["total"] + e.data["amount"]})
            projection.on("refund.made", lambda s, e: {"total": s["total"] - e.data["amount"]})
            return projection

        old, new = revenue(["order.#"]), revenue(["order.#", "refund.#"])
        try:
            await old.run()
            assert (old.state, old.position) == ({"total": 130}, 2)
            await new.rebuild()  # the filters changed: start over with them
            assert (new.state, new.position) == ({"total": 125}, 2)
            await store.append("order.3", Event("order.placed", {"amount": 10}))
            with pytest.raises(ConcurrencyError):
                await old.run()
            await new.run()
            assert (new.state, new.position) == ({"total": 135}, 3)
        finally:
            await old.close()
            await new.close()


async def test_a_table_follower_cannot_write_its_rows_over_a_rebuild(url: str) -> None:
    async with EventStore(url) as store:
        await append(store, 4)
        follower, admin = ledger(store), ledger(store)
        try:
            await follower.run()
            await admin.rebuild()  # empties the tables, folds them again: position 3
            assert admin.position == follower.position == 3
            await append(store, 1, first=4)
            with pytest.raises(ConcurrencyError):
                await follower.run()
            credits, _ = await rows(url)
            assert sorted(credits) == [0, 1, 2, 3]  # the follower wrote nothing
            await admin.run()
            credits, _ = await rows(url)
            assert sorted(credits) == [0, 1, 2, 3, 4]
        finally:
            await follower.close()
            await admin.close()


async def test_a_replay_whose_checkpoint_was_reset_and_saved_again_does_not_overwrite_it(
    any_store_url: str,
) -> None:
    async with EventStore(any_store_url) as store:
        shared = open_checkpoint_store(any_store_url)
        await store.append("s.1", [Event("t.x", {"n": n}) for n in range(4)])
        replay = EventReplay(store, checkpoints=shared)
        gate, reached = asyncio.Event(), asyncio.Event()

        async def slow(event: Event) -> None:
            if event.data["n"] == 2:
                reached.set()
                await gate.wait()

        replay.handle("t.x", slow)
        running = asyncio.ensure_future(replay.replay_all(checkpoint="nightly", checkpoint_every=1))
        try:
            async with asyncio.timeout(15):
                await reached.wait()  # position 1 is saved
            saved = await shared.load("replay:nightly")
            assert saved is not None and saved.position == 1
            # another runner resets it and replays as far again: the same position
            assert await shared.delete("replay:nightly") is True
            await shared.save("replay:nightly", 1, saved.state, previous=None)
            gate.set()
            async with asyncio.timeout(15):
                with pytest.raises(ConcurrencyError):
                    await running
            after = await shared.load("replay:nightly")
            assert after is not None and after.position == 1
        finally:
            gate.set()
            await asyncio.gather(running, return_exceptions=True)
            await replay.close()
            await shared.close()


async def test_a_table_made_before_revisions_gets_them_and_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with EventStore(f"sqlite:///{path}") as store:
        await store.append("s.1", Event("t.x", {}))
    with closing(sqlite3.connect(path)) as db:  # as a version without revisions made it
        db.execute(
            "CREATE TABLE pepperpy_checkpoints (name TEXT PRIMARY KEY, "
            "position INTEGER NOT NULL, state TEXT, updated_at TEXT NOT NULL)"
        )
        db.execute(
            "INSERT INTO pepperpy_checkpoints VALUES ('p', 3, '{\"a\": 1}', "
            "'2026-01-01T00:00:00+00:00')"
        )
        db.commit()
    reader = SQLiteCheckpointStore(path, read_only=True)  # reads it as it is
    old = await reader.load("p")
    assert old is not None and (old.position, old.state, old.revision) == (3, {"a": 1}, None)
    await reader.close()
    first, second = SQLiteCheckpointStore(path), SQLiteCheckpointStore(path)
    try:
        loaded = await first.load("p")  # the column is added, each row given a revision
        assert loaded is not None and loaded.position == 3 and loaded.revision is not None
        assert (await second.load("p")) == loaded  # added once
        with sqlite3.connect(path) as db:  # a row an older version writes: no revision
            db.execute(
                "INSERT INTO pepperpy_checkpoints (name, position, state, updated_at) "
                "VALUES ('q', 1, NULL, '2026-01-01T00:00:00+00:00')"
            )
        db.close()
        legacy = await first.load("q")
        assert legacy is not None and legacy.revision is None
        revision = await first.save("q", 2, previous=1, revision=None)  # compared as before
        assert revision is not None
        revision = await first.save("p", 4, previous=3, revision=loaded.revision)
        with pytest.raises(ConcurrencyError):
            await second.save("p", 5, previous=4, revision=loaded.revision)
    finally:
        await first.close()
        await second.close()


@pytest.mark.postgres
async def test_a_postgres_table_made_before_revisions_gets_them(postgres_url: str) -> None:
    asyncpg = pytest.importorskip("asyncpg")
    db = await asyncpg.connect(postgres_url)
    try:
        await db.execute(
            "CREATE TABLE pepperpy_checkpoints (name TEXT PRIMARY KEY, "
            "position BIGINT NOT NULL, state BYTEA, updated_at TIMESTAMPTZ NOT NULL)"
        )
        await db.execute(
            "INSERT INTO pepperpy_checkpoints VALUES ('p', 3, convert_to('{\"a\": 1}', 'UTF8'), "
            "now()), ('q', 1, NULL, now())"
        )
        first, second = PostgresCheckpointStore(postgres_url), PostgresCheckpointStore(postgres_url)
        try:
            p, q = await asyncio.gather(first.load("p"), second.load("q"))  # both set up at once
            assert p is not None and (p.position, p.state) == (3, {"a": 1})
            assert q is not None and p.revision and q.revision and p.revision != q.revision
            await db.execute(  # a row an older version writes: no revision
                "INSERT INTO pepperpy_checkpoints (name, position, updated_at) "
                "VALUES ('r', 1, now())"
            )
            legacy = await first.load("r")
            assert legacy is not None and legacy.revision is None
            assert await first.save("r", 2, previous=1, revision=None)  # compared as before
            await first.save("p", 4, previous=3, revision=p.revision)
            await first.delete("q")
            await first.save("q", 1, previous=None)
            with pytest.raises(ConcurrencyError):
                await second.save("q", 2, previous=1, revision=q.revision)
        finally:
            await first.close()
            await second.close()
    finally:
        await db.close()


async def test_a_store_of_ones_own_without_revisions_still_works() -> None:
    class Plain(CheckpointStore):  # written before save() took revision=
        def __init__(self) -> None:
            self.inner = MemoryCheckpointStore()

        async def load(self, name: str) -> Any:
            return await self.inner.load(name)

        async def save(  # type: ignore[override]
            self, name: str, position: int, state: Any = None, *, previous: int | None
        ) -> None:
            await self.inner.save(name, position, state, previous=previous)

        async def delete(self, name: str) -> bool:
            return await self.inner.delete(name)

        async def names(self) -> list[str]:
            return await self.inner.names()

    store = EventStore()
    await store.append("acct.a", [Event("acct.credited", {"amount": 2}) for _ in range(3)])
    projection = _totals(store, Plain(), 1)
    await projection.run()
    await store.append("acct.a", Event("acct.credited", {"amount": 2}))
    await projection.run()
    assert projection.state == {"total": 8, "v": 1}
