"""``replay --checkpoint NAME --reset`` starts a checkpoint over, as ``replay.reset()``
does in Python. A replay refused because its checkpoint was saved for another stream or
other filters said "use another name or reset it", which the command had no way to do."""

from __future__ import annotations

import asyncio

from pepperpy.event import Event, EventStore
from tests.cli.conftest import Cli
from tests.cli.test_cli import ok, one_line_error


def fill(url: str) -> None:
    async def work() -> None:
        async with EventStore(url) as store:
            await store.append("o.1", [Event("t.x", {"n": n}) for n in range(3)])
            await store.append("o.2", Event("t.x", {"n": 3}))

    asyncio.run(work())


def test_reset_starts_a_refused_checkpoint_over(cli: Cli, store_url: str) -> None:
    fill(store_url)
    ok(cli("replay", "--store", store_url, "--stream", "o.1", "--checkpoint", "c"))
    refused = cli("replay", "--store", store_url, "--checkpoint", "c")
    one_line_error(refused, "use another name or reset it", "--checkpoint c --reset")
    again = ok(cli("replay", "--store", store_url, "--checkpoint", "c", "--reset"))
    assert len(again.lines) == 4  # the whole log, from the start
    assert ok(cli("replay", "--store", store_url, "--checkpoint", "c")).lines == []
    (line,) = ok(cli("checkpoints", "--store", store_url)).lines
    assert line.startswith("replay:c 3 0 ")


def test_reset_needs_a_checkpoint(cli: Cli, store_url: str) -> None:
    fill(store_url)
    refused = cli("replay", "--store", store_url, "--reset")
    assert refused.code == 2 and "give --checkpoint NAME too" in refused.err
