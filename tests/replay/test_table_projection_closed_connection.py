"""A TableProjection handler that closes the SQLite connection it was given.

It used to fail with a ``StoreError`` that read like an outage ("writes work again once
the cause is gone"), naming no handler, and the state store kept the closed connection:
every later run, load and save failed the same way (``follow()`` rode it out as an
outage for 60 s), until the process restarted. Now the handler is named in a
``ReplayError``, nothing of the batch is written, and the next call opens a new
connection.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import Event, EventStore, ReplayError, TableProjection


async def test_a_handler_closing_the_connection_is_named_and_the_next_run_recovers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    closes = [1]  # the handler closes the connection once, at global position 1

    def setup(db: Any) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS seen (pos INTEGER PRIMARY KEY)")

    async with EventStore(f"sqlite:///{path}") as store:
        await store.append("s", [Event("n.added") for _ in range(3)])
        projection = TableProjection("seen", store, setup=setup, batch_size=10)

        @projection.on("n.added")
        def add(db: Any, event: Event) -> None:
            db.execute("INSERT INTO seen VALUES (?)", (event.global_position,))
            if event.global_position in closes:
                closes.clear()
                db.close()

        try:
            with pytest.raises(ReplayError, match=r"handler .*add closed the state store's"):
                await projection.run()
            assert projection.position is None  # nothing of the batch was committed
            report = await projection.run()  # a new connection: no StoreError
            assert report.replayed == 3
            assert projection.position == 2
        finally:
            await projection.close()
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute("SELECT pos FROM seen ORDER BY pos").fetchall()
    finally:
        connection.close()
    assert rows == [(0,), (1,), (2,)]  # each event once


async def test_a_reset_closing_the_connection_forgets_nothing(tmp_path: Path) -> None:
    closes = [True]

    def setup(db: Any) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS seen (pos INTEGER PRIMARY KEY)")

    def reset(db: Any) -> None:
        db.execute("DELETE FROM seen")
        if closes:
            closes.clear()
            db.close()

    async with EventStore(f"sqlite:///{tmp_path / 'events.db'}") as store:
        await store.append("s", [Event("n.added") for _ in range(2)])
        projection = TableProjection("seen", store, setup=setup, reset=reset)
        projection.on(
            "n.added",
            lambda db, event: db.execute("INSERT INTO seen VALUES (?)", (event.global_position,)),
        )
        try:
            await projection.run()
            with pytest.raises(ReplayError, match=r"reset .*closed .*nothing was emptied"):
                await projection.rebuild()
            assert await projection.load() == 1  # the position was not forgotten
            report = await projection.rebuild()  # a new connection
            assert (report.replayed, projection.position) == (2, 1)
        finally:
            await projection.close()
