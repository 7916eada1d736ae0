"""Hold a PostgreSQL writer's COMMIT open, to look at the store while its rows are in
flight (docs/store.md, "PostgreSQL: ordering, the hard promise")."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest


class HeldCommit:
    """After :meth:`hold`, the first asyncpg ``Transaction.commit`` of the process waits,
    with :attr:`committing` set, until :attr:`release` is set; later commits go through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.asyncpg = pytest.importorskip("asyncpg")
        self.committing, self.release = asyncio.Event(), asyncio.Event()
        self._monkeypatch = monkeypatch
        self._commits = 0

    def hold(self) -> None:
        """Hold the next commit (the caller then starts the writer whose commit it is)."""
        commit = self.asyncpg.transaction.Transaction.commit

        async def held_commit(transaction: Any) -> None:
            self._commits += 1
            if self._commits == 1:
                self.committing.set()
                await self.release.wait()
            await commit(transaction)

        self._monkeypatch.setattr(self.asyncpg.transaction.Transaction, "commit", held_commit)


async def until_one_waits_for_a_lock(admin: Any) -> None:
    """Return once a session of ``admin``'s database waits for a lock (a second writer
    queued behind the held one, for the head row)."""
    while True:
        waiting: int = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        )
        if waiting >= 1:
            return
        await asyncio.sleep(0.01)
