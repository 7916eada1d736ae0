"""An SQLite store given a relative path stays on its file after ``os.chdir()``.

Connections are opened as they are needed (the writer's, each read thread's, the
checkpoint store's), and they used to open the relative path as given: after a change of
working directory a read created an empty ``events.db`` in the new directory and failed
with "no such table: events" (naming the old file), and replays and projections kept
their checkpoints in that other file.
"""

from __future__ import annotations

import pathlib

import pytest

from pepperpy.event import EventReplay, EventStore, Projection, SQLiteCheckpointStore


async def test_reads_writes_and_checkpoints_stay_on_the_file_opened(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    monkeypatch.chdir(first)
    async with EventStore("sqlite:///events.db") as store:
        await store.append("order.1", {"type": "order.placed", "data": {"n": 1}})
        monkeypatch.chdir(second)
        assert [event.data["n"] for event in await store.get_stream("order.1")] == [1]
        await store.append("order.1", {"type": "order.placed", "data": {"n": 2}})
        assert len(await store.read_all(types="order.*")) == 2
        async with store.subscribe(0) as subscription:
            assert (await anext(subscription)).data["n"] == 1

        async with EventReplay(store) as replay:
            replay.handle("#", lambda event: None)
            assert (await replay.replay_all(checkpoint="mailer")).replayed == 2
        async with Projection("count", store, initial=dict) as projection:
            projection.on("#", lambda state, event: {"n": state.get("n", 0) + 1})
            await projection.run()
            assert projection.state == {"n": 2}

    assert list(second.iterdir()) == []  # nothing made in the new working directory
    async with SQLiteCheckpointStore(first / "events.db") as checkpoints:
        assert await checkpoints.names() == ["projection:count", "replay:mailer"]
