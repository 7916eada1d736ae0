"""``pepperpy-event checkpoints``: where each consumer of the store stands.

Replays with ``--checkpoint`` (``replay:NAME``), projections (``projection:NAME``), table
projections (``tables:NAME``) and processor attachments (``processor:NAME``) keep their
positions in the store's own database; this lists them with how far each is behind the
log's head, the first thing to look at when a read model seems stale.
"""

from __future__ import annotations

import json
from datetime import UTC

import click

from .._checkpoints import open_checkpoint_store
from ._output import field
from ._shell import emit, json_option, open_store, run, store_option

__all__ = ["checkpoints"]


@click.command("checkpoints")
@store_option
@json_option
def checkpoints(store: str, as_json: bool) -> None:
    """List the saved checkpoints: NAME POSITION BEHIND UPDATED.

    BEHIND is how many global positions the log's head is past the checkpoint (0: caught
    up); UPDATED is when it was last saved (UTC). With --json, one object per line.
    """

    async def work() -> None:
        async with open_store(store, reading=True, must_exist=True) as events:
            head = await events.head()
            saved = open_checkpoint_store(events.url)
            try:
                for name in await saved.names():
                    checkpoint = await saved.load(name)
                    if checkpoint is None:  # deleted between the two reads
                        continue
                    behind = 0 if head is None else max(head - checkpoint.position, 0)
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
