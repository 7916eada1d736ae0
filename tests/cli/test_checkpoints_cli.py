"""``pepperpy-event checkpoints``: each saved checkpoint, and how far behind the head it is."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from pepperpy.event import Event, EventReplay, EventStore, Projection, TableProjection
from tests.cli.conftest import Cli
from tests.cli.test_cli import ok, one_line_error


def consumers(url: str) -> None:
    """Seven events; a replay checkpointed at 4, a projection and a table projection at 6."""

    async def work() -> None:
        async with EventStore(url) as store:
            for n in range(5):
                await store.append("order.1", Event("order.placed", {"n": n}))
            replay = EventReplay(store)
            replay.handle("order.*")(lambda event: None)
            await replay.replay_all(checkpoint="nightly")
            await replay.close()  # its checkpoint store's connection
            for n in range(2):
                await store.append("order.2", Event("order.placed", {"n": n}))
            async with Projection("sales", store) as sales:
                sales.on("order.placed", lambda state, event: None)
                await sales.run()
            async with TableProjection("ledger", store) as ledger:
                ledger.on("order.placed", lambda db, event: None)
                await ledger.run()

    asyncio.run(work())


def test_it_lists_each_checkpoint_with_how_far_behind_the_head_it_is(
    cli: Cli, store_url: str
) -> None:
    consumers(store_url)
    lines = ok(cli("checkpoints", "--store", store_url)).lines
    rows = [line.split(" ") for line in lines]
    assert [row[:3] for row in rows] == [
        ["projection:sales", "6", "0"],
        ["replay:nightly", "4", "2"],
        ["tables:ledger", "6", "0"],
    ]
    for row in rows:
        updated = datetime.fromisoformat(row[3])
        assert updated.utcoffset() is not None and updated.utcoffset().total_seconds() == 0
        assert abs((datetime.now(UTC) - updated).total_seconds()) < 120
    objects = [
        json.loads(line) for line in ok(cli("checkpoints", "--json", "--store", store_url)).lines
    ]
    assert [(o["name"], o["position"], o["behind"]) for o in objects] == [
        ("projection:sales", 6, 0),
        ("replay:nightly", 4, 2),
        ("tables:ledger", 6, 0),
    ]


def test_a_store_without_checkpoints_lists_none_and_a_missing_one_is_an_error(
    cli: Cli, store_url: str
) -> None:
    one_line_error(cli("checkpoints", "--store", store_url), "no event store")
    ok(cli("append", "order.1", "order.placed", "{}", "--store", store_url))
    assert ok(cli("checkpoints", "--store", store_url)).lines == []
