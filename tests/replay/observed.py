"""SQLite checkpoints that say when one kind of write has reached the database."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from pepperpy.event import SQLiteCheckpointStore
from pepperpy.event._checkpoints import sqlite_path


class ObservedCheckpoints(SQLiteCheckpointStore):
    """SQLite checkpoints; ``entered`` is set once a thread running ``work`` (one of the
    module's ``_sqlite_*`` functions) is inside the store, e.g. waiting for its lock."""

    def __init__(self, url: str, work: Any) -> None:
        super().__init__(sqlite_path(url))
        self.work = work
        self.entered = asyncio.Event()

    async def _run(self, work: Any, *args: Any) -> Any:
        if work is not self.work:
            return await super()._run(work, *args)
        loop = asyncio.get_running_loop()

        def observed(connection: sqlite3.Connection, *rest: Any) -> Any:
            loop.call_soon_threadsafe(self.entered.set)
            return work(connection, *rest)

        return await super()._run(observed, *args)
