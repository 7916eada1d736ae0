"""``Projection.close()`` lets go of the state store it opened before closing it.

It awaited the store's ``close()`` and only then dropped its reference: a ``run()``
made while that await was suspended used the store being closed, and an SQLite
checkpoint store reopens its connection when used after ``close()``: a connection
nothing closed. The gap is held open here by wrapping the real store's ``close()`` (the
store is closed, the projection's ``close()`` not yet back), as a slow close would; a
run in it now opens a state store of its own, and the closed one stays closed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pepperpy.event import Event, EventStore, Projection
from pepperpy.event._checkpoints_sqlite import SQLiteCheckpointStore


async def test_a_run_while_close_closes_the_state_store_opens_its_own(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with EventStore(sqlite_url) as store:
        await store.append("acc.1", [Event("acc.add"), Event("acc.add")])
        projection = Projection("count", store, initial=lambda: {"n": 0})

        @projection.on("acc.add")
        def add(state: dict[str, Any], event: Event) -> None:
            state["n"] += 1

        await projection.run()
        first = projection.state_store
        assert isinstance(first, SQLiteCheckpointStore)
        closed, go = asyncio.Event(), asyncio.Event()
        original = first.close

        async def close_slowly() -> None:
            await original()
            closed.set()
            await go.wait()  # the projection's close() is not back yet

        monkeypatch.setattr(first, "close", close_slowly)
        closing = asyncio.ensure_future(projection.close())
        try:
            async with asyncio.timeout(30):
                await closed.wait()
                await store.append("acc.1", Event("acc.add"))
                report = await projection.run()
                assert report.replayed == 1 and projection.state == {"n": 3}
                assert projection.state_store is not first  # a store of its own
                assert first._db is None  # the closed one was not opened again
        finally:
            go.set()
            await closing
            await projection.close()
        assert first._db is None
        async with Projection("count", store, initial=lambda: {"n": 0}) as fresh:
            assert await fresh.load() == {"n": 3}
