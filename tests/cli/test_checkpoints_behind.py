"""``checkpoints``: BEHIND for a stream replay's checkpoint counts the stream's positions.

``replay --stream S --checkpoint N`` saves a *stream* position; BEHIND compares it with
the stream's last position, not the log's head (which other streams move).
"""

from __future__ import annotations

import asyncio
import json

from pepperpy.event import Event, EventReplay, EventStore
from tests.cli.conftest import Cli
from tests.cli.test_cli import ok


def fill(url: str, others: int, orders: int) -> None:
    async def work() -> None:
        async with EventStore(url) as store:
            for n in range(others):
                await store.append(f"other.{n}", Event("t.x", {}))
            for n in range(orders):
                await store.append("orders.1", Event("t.x", {"n": n}))

    asyncio.run(work())


def behind(cli: Cli, url: str) -> dict[str, tuple[int, int]]:
    lines = ok(cli("checkpoints", "--json", "--store", url)).lines
    objects = [json.loads(line) for line in lines]
    rows = {o["name"]: (o["position"], o["behind"]) for o in objects}
    text = {
        row.split(" ")[0]: (int(row.split(" ")[1]), int(row.split(" ")[2]))
        for row in ok(cli("checkpoints", "--store", url)).lines
    }
    assert text == rows
    return rows


def test_a_caught_up_stream_replay_is_not_behind(cli: Cli, store_url: str) -> None:
    fill(store_url, others=10, orders=2)
    ok(cli("replay", "--stream", "orders.1", "--checkpoint", "ord", "--store", store_url))
    assert behind(cli, store_url) == {"replay:ord": (1, 0)}


def test_a_stream_replay_is_behind_by_the_streams_new_events_only(cli: Cli, store_url: str) -> None:
    fill(store_url, others=3, orders=2)
    ok(cli("replay", "--stream", "orders.1", "--checkpoint", "ord", "--store", store_url))
    ok(cli("replay", "--checkpoint", "all", "--store", store_url))
    fill(store_url, others=5, orders=3)  # 3 more in orders.1, 8 more in the log
    assert behind(cli, store_url) == {"replay:all": (4, 8), "replay:ord": (1, 3)}


def test_the_whole_log_replay_and_a_stream_replay_side_by_side(store_url: str, cli: Cli) -> None:
    """The library's EventReplay.replay_stream saves the same scope as the command."""

    async def work() -> None:
        async with EventStore(store_url) as store:
            for n in range(4):
                await store.append("orders.2", Event("t.x", {"n": n}))
                await store.append("noise.1", Event("t.x", {"n": n}))
            replay = EventReplay(store)
            replay.handle("#")(lambda event: None)
            await replay.replay_stream("orders.2", checkpoint="o2")
            await replay.close()

    asyncio.run(work())
    assert behind(cli, store_url) == {"replay:o2": (3, 0)}
