"""``pepperpy-event checkpoints``: where each consumer of the store stands.

Replays with ``--checkpoint`` (``replay:NAME``), projections (``projection:NAME``), table
projections (``tables:NAME``) and processor attachments (``processor:NAME``) keep their
positions in the store's own database; this lists them with how far each is behind the
log's head, the first thing to look at when a read model seems stale.
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

import click

from .._checkpoint_base import TABLE
from .._checkpoints import open_checkpoint_store
from ..store._store import EventStore
from ..store.postgres import PostgresBackend
from ..store.sqlite import SQLiteBackend
from ._output import field
from ._shell import emit, open_store, run, store_option

__all__ = ["checkpoints"]


@click.command("checkpoints")
@store_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print each checkpoint as a JSON object (name, position, behind, updated_at).",
)
def checkpoints(store: str, as_json: bool) -> None:
    """List the saved checkpoints: NAME POSITION BEHIND UPDATED.

    BEHIND is how many positions the checkpoint is short of what it follows (0: caught
    up): for a replay of one stream (``replay --stream S --checkpoint N``), whose
    checkpoint holds a stream position, the stream's last position; for every other
    checkpoint, which holds a global position, the log's head. UPDATED is when it was
    last saved (UTC). With --json, one object per line.
    """

    async def work() -> None:
        async with open_store(store, reading=True, must_exist=True) as events:
            head = await events.head()
            versions: dict[str, int | None] = {}  # each replayed stream's last position
            if not await _has_checkpoint_table(events):
                return  # none saved: no checkpoint store to open
            saved = open_checkpoint_store(events.url)
            try:
                for name in await saved.names():
                    checkpoint = await saved.load(name)
                    if checkpoint is None:  # deleted between the two reads
                        continue
                    stream = _replayed_stream(checkpoint.state)
                    if stream is None:
                        last = head
                    else:
                        if stream not in versions:
                            versions[stream] = await events.stream_version(stream)
                        last = versions[stream]
                    behind = 0 if last is None else max(last - checkpoint.position, 0)
                    updated = checkpoint.updated_at.astimezone(UTC).isoformat(timespec="seconds")
                    if as_json:
                        emit(
                            json.dumps(
                                {
                                    "name": name,
                                    "position": checkpoint.position,
                                    "behind": behind,
                                    "updated_at": updated,
                                },
                                ensure_ascii=False,
                            )
                        )
                    else:
                        emit(f"{field(name)} {checkpoint.position} {behind} {updated}")
            finally:
                await saved.close()

    run(work)


async def _has_checkpoint_table(events: EventStore) -> bool:
    """Whether the store's database holds a checkpoint table, found without making one.

    A checkpoint store makes its table on first use: listing the checkpoints of a store
    that had none created ``pepperpy_checkpoints`` there (DDL from a reading command),
    and with a role that may only read, it failed ('permission denied for schema
    public') instead of listing none.
    """
    backend = events.backend
    if isinstance(backend, PostgresBackend):  # the table in the pool's search_path
        found = await backend._run(
            "checkpoints",
            lambda connection, _: connection.fetchval("SELECT to_regclass($1) IS NOT NULL", TABLE),
        )
        return bool(found)
    if isinstance(backend, SQLiteBackend):
        row = await backend._read(
            lambda connection: connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
            ).fetchone()
        )
        return row is not None
    return True  # memory:// and others: their checkpoint store makes nothing


def _replayed_stream(state: Any) -> str | None:
    """The stream a replay checkpoint's positions are in, from the scope its state
    records (``{"scope": "stream:NAME"}``, see ``_replay_run``); None for a checkpoint
    holding global positions (a replay of the whole log, projections, processors)."""
    scope = state.get("scope") if isinstance(state, dict) else None
    if isinstance(scope, str) and scope.startswith("stream:"):
        return scope.removeprefix("stream:") or None
    return None
