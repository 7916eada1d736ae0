"""``replay --types`` reports the same counts with and without ``--stream``.

Without ``--stream`` the store filters by type and the events left out were in no count;
with it they were counted as skipped, so one store and one ``--types`` gave two
summaries. An event ``--types`` leaves out is not read, whichever way is used.
"""

from __future__ import annotations

import asyncio

from pepperpy.event import Event, EventStore

from .conftest import Cli


def test_replay_types_counts_the_same_with_and_without_stream(cli: Cli, store_url: str) -> None:
    async def write() -> None:
        async with EventStore(store_url) as store:
            await store.append(
                "a.1", [Event(kind) for kind in ("user.created", "order.placed", "order.paid")]
            )

    asyncio.run(write())
    every = cli("replay", "--types", "order.*", "--store", store_url)
    one = cli("replay", "--stream", "a.1", "--types", "order.*", "--store", store_url)
    for done in (every, one):
        assert done.code == 0, done.err
        assert [line.split(" ")[2] for line in done.lines] == ["order.placed", "order.paid"]
        assert "replayed 2, skipped 0, failed 0 in " in done.err
