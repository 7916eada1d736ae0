"""Two replays with one ``--checkpoint`` at once: the second to save its position
finds the checkpoint moved. The command said only ``stream 'checkpoint replay:NAME':
expected version None, actual version 1`` (the library's words for the row it keeps),
nothing of another replay; it now says what happened and what was kept."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pepperpy.event import Event, EventReplay, EventStore
from tests.cli.conftest import start_command

_WAIT = 60.0


def test_a_checkpoint_moved_by_another_replay_is_named(tmp_path: Path, store_url: str) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)

    async def write() -> None:
        async with EventStore(store_url) as store:
            for n in range(2):  # 5 s apart: replayed at --speed 1, a 5 s pause between
                at = start + timedelta(seconds=5 * n)
                await store.append("order.1", Event("order.placed", {"n": n}, timestamp=at))

    async def other_replay() -> None:
        async with EventStore(store_url) as store, EventReplay(store) as replay:
            replay.handle("#", lambda event: None)
            await replay.replay_all(checkpoint="export")

    asyncio.run(write())
    process = start_command(
        "replay", "--checkpoint", "export", "--speed", "1", "--store", store_url, cwd=tmp_path
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()  # the first event; the pause begins
        assert first.startswith("0 order.1:0 order.placed"), first
        asyncio.run(other_replay())  # saves checkpoint 'export' meanwhile
        assert process.wait(timeout=_WAIT) == 1
        err = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=_WAIT)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
    assert err.endswith(
        "pepperpy-event: error: checkpoint 'export' was moved meanwhile by another replay "
        "with --checkpoint export (two at once on one store?): this one stopped without "
        "saving its position, and the checkpoint keeps the other's; run one replay per "
        "checkpoint name at a time\n"
    ), err
