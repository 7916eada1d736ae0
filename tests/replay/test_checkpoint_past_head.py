"""A checkpoint past the newest event of the store a consumer resumes on is refused.

Positions are saved only for events that were read, so a checkpoint past the head means
the log lost events (the store restored from an older backup) or the checkpoint store
holds another event store's checkpoints. Resuming after it silently passed over the
events appended since, up to its position: a replay replayed nothing, a projection
never applied them. Replays, projections and table projections now refuse with
``ReplayError`` naming the checkpoint, its position and the head; deleting the
checkpoint (``reset``, ``rebuild``) goes on from the start.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pepperpy.event import (
    Event,
    EventReplay,
    EventStore,
    MemoryCheckpointStore,
    Projection,
    ReplayError,
    TableProjection,
)


@pytest.fixture
async def two_urls(any_store_url: str, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """Two empty event stores of one backend: memory, SQLite files, PostgreSQL schemas."""
    if any_store_url.startswith("memory"):
        yield "memory://", "memory://"
    elif any_store_url.startswith("sqlite"):
        yield any_store_url, f"sqlite:///{tmp_path}/other.db"
    else:
        yield f"{any_store_url}?schema=first", f"{any_store_url}?schema=second"


def replaying(store: EventStore, **options: object) -> EventReplay:
    """A replay of ``store`` whose handler takes every event (so each counts as replayed)."""
    replay = EventReplay(store, **options)  # type: ignore[arg-type]
    replay.handle("#", lambda event: None)
    return replay


async def fill(store: EventStore, count: int, stream: str = "a.1") -> None:
    await store.append(stream, [Event("t.x", {"n": n}) for n in range(count)])


async def test_a_replay_checkpoint_past_the_head_is_refused(two_urls: tuple[str, str]) -> None:
    checkpoints = MemoryCheckpointStore()  # shared: it points at the other store
    first_url, second_url = two_urls
    async with EventStore(first_url) as first, EventStore(second_url) as second:
        await fill(first, 5)
        async with replaying(first, checkpoints=checkpoints) as replay:
            assert (await replay.replay_all(checkpoint="daily")).replayed == 5
        await fill(second, 2)
        seen: list[int] = []
        async with EventReplay(second, checkpoints=checkpoints) as replay:
            replay.handle("#", lambda event: seen.append(event.global_position))
            with pytest.raises(ReplayError) as caught:
                await replay.replay_all(checkpoint="daily")
            message = str(caught.value)
            assert "replay checkpoint 'daily' is at global position 4" in message
            assert "newest event is at global position 1" in message
            assert "replay.reset('daily')" in message
            assert seen == []
            assert await replay.reset("daily") is True  # the way out it names
            assert (await replay.replay_all(checkpoint="daily")).replayed == 2
            assert seen == [0, 1]


async def test_a_checkpoint_over_an_empty_store_is_refused() -> None:
    checkpoints = MemoryCheckpointStore()
    async with EventStore() as first, EventStore() as empty:
        await fill(first, 3)
        async with EventReplay(first, checkpoints=checkpoints) as replay:
            await replay.replay_all(checkpoint="c")
        async with EventReplay(empty, checkpoints=checkpoints) as replay:
            with pytest.raises(
                ReplayError, match="at global position 2, past the end of the store, which is empty"
            ):
                await replay.replay_all(checkpoint="c")


async def test_a_stream_checkpoint_past_the_stream_head_is_refused(
    two_urls: tuple[str, str],
) -> None:
    checkpoints = MemoryCheckpointStore()
    first_url, second_url = two_urls
    async with EventStore(first_url) as first, EventStore(second_url) as second:
        await fill(first, 4, "user.1")
        async with EventReplay(first, checkpoints=checkpoints) as replay:
            await replay.replay_stream("user.1", checkpoint="u")
        await fill(second, 6, "other.1")  # the log's head is past 3, the stream's is not
        await fill(second, 2, "user.1")
        async with EventReplay(second, checkpoints=checkpoints) as replay:
            with pytest.raises(
                ReplayError,
                match=r"'u' is at position 3, past the end of "
                r"stream 'user.1', whose newest event is at position 1",
            ):
                await replay.replay_stream("user.1", checkpoint="u")


async def test_a_restored_sqlite_store_refuses_the_checkpoints_kept_elsewhere(
    tmp_path: Path,
) -> None:
    """The store restored from a backup older than the checkpoints (kept in a file of
    their own): the events appended after the restore were passed over."""
    events, backup = tmp_path / "events.db", tmp_path / "backup.db"
    url, checkpoints = f"sqlite:///{events}", f"sqlite:///{tmp_path}/checkpoints.db"
    async with EventStore(url) as store:
        await fill(store, 2)
    shutil.copy(events, backup)
    async with EventStore(url) as store:
        await fill(store, 3, "b.1")
        async with replaying(store, checkpoints=checkpoints) as replay:
            assert (await replay.replay_all(checkpoint="mail")).replayed == 5
    shutil.copy(backup, events)  # restored
    async with EventStore(url) as store, EventReplay(store, checkpoints=checkpoints) as replay:
        await fill(store, 2, "c.1")  # positions 2 and 3, under the checkpoint's 4
        with pytest.raises(
            ReplayError, match="'mail' is at global position 4.*at global position 3"
        ):
            await replay.replay_all(checkpoint="mail")


async def test_a_projection_state_past_the_head_is_refused(two_urls: tuple[str, str]) -> None:
    states = MemoryCheckpointStore()
    first_url, second_url = two_urls
    async with EventStore(first_url) as first, EventStore(second_url) as second:
        await fill(first, 5)
        await fill(second, 2)

        def count(state: dict[str, int], event: Event) -> None:
            state["n"] = state.get("n", 0) + 1

        async with Projection("totals", first, state_store=states) as projection:
            projection.on("t.x", count)
            await projection.run()
        async with Projection("totals", second, state_store=states) as projection:
            projection.on("t.x", count)
            for attempt in (projection.run, projection.load):
                with pytest.raises(ReplayError) as caught:
                    await attempt()
                message = str(caught.value)
                assert "the saved state of projection 'totals' is at global position 4" in message
                assert "newest event is at global position 1" in message
                assert "rebuild()" in message
            assert (await projection.rebuild()).replayed == 2
            assert projection.state == {"n": 2}


async def test_a_table_projection_past_the_head_is_refused(tmp_path: Path) -> None:
    tables = f"sqlite:///{tmp_path}/tables.db"

    def setup(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS seen (position INTEGER PRIMARY KEY)")

    def reset(db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM seen")

    def note(db: sqlite3.Connection, event: Event) -> None:
        db.execute("INSERT INTO seen VALUES (?)", (event.global_position,))

    first_url, second_url = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    async with EventStore(first_url) as first, EventStore(second_url) as second:
        await fill(first, 5)
        await fill(second, 2)
        async with TableProjection(
            "seen", first, setup=setup, reset=reset, state_store=tables
        ) as projection:
            projection.on("t.x", note)
            await projection.run()
        async with TableProjection(
            "seen", second, setup=setup, reset=reset, state_store=tables
        ) as projection:
            projection.on("t.x", note)
            with pytest.raises(ReplayError, match="projection 'seen' is at global position 4"):
                await projection.run()
            await projection.rebuild()
            assert projection.position == 1


async def test_checkpoints_at_or_below_the_head_and_empty_filtered_replays_go_on(
    any_store_url: str,
) -> None:
    async with EventStore(any_store_url) as store:
        await fill(store, 3)
        async with replaying(store) as replay:
            # nothing selected: no checkpoint saved, nothing refused, twice
            for _ in range(2):
                assert (await replay.replay_all(types="none.*", checkpoint="empty")).replayed == 0
            assert (await replay.replay_all(checkpoint="c")).replayed == 3
            assert (await replay.replay_all(checkpoint="c")).replayed == 0  # at the head
            await fill(store, 1)
            assert (await replay.replay_all(checkpoint="c")).replayed == 1
        head = await store.head()
        assert head is not None
        following = aiter(store.subscribe(head + 1))  # only the events to come
        await fill(store, 1, "z.1")
        assert (await asyncio.wait_for(anext(following), 5)).stream == "z.1"
        await following.aclose()  # type: ignore[attr-defined]


async def test_appends_racing_the_check_never_make_it_fail(any_store_url: str) -> None:
    """The head is read after the checkpoint is loaded, and only grows: replays resuming
    while others append (and a second replay saves) never see their checkpoint past it."""
    async with EventStore(any_store_url) as store:
        await fill(store, 1)
        stop = asyncio.Event()

        async def writer() -> None:
            n = 0
            while not stop.is_set():
                await store.append(f"w.{n % 4}", Event("t.x", {"n": n}))
                n += 1
                await asyncio.sleep(0)

        async def reader() -> int:
            replayed = 0
            async with replaying(store) as replay:
                for _ in range(15):
                    try:
                        replayed += (await replay.replay_all(checkpoint="race")).replayed
                    except Exception as exc:  # another reader moved the checkpoint
                        assert "past the end" not in str(exc)
            return replayed

        writing = asyncio.create_task(writer())
        try:
            results = await asyncio.gather(reader(), reader())
        finally:
            stop.set()
            await writing
        assert sum(results) > 0
