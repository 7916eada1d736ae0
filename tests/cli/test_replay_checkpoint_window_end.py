"""``replay --to T --checkpoint N`` leaves the events at or past T to a later run: the
next ``replay --checkpoint N`` (a later ``--to``, or none) prints them. The checkpoint
used to pass over them, so a nightly ``replay --to <midnight> --checkpoint nightly``
never printed the events appended between midnight and its run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from pepperpy.event import Event, EventStore
from tests.cli.conftest import Cli
from tests.cli.test_cli import ok

DAY1 = datetime(2024, 5, 1, tzinfo=UTC)


def test_a_later_run_prints_what_the_window_left(cli: Cli, store_url: str) -> None:
    async def fill() -> None:
        async with EventStore(store_url) as store:
            await store.append(
                "s.1",
                [Event("t.x", {"h": h}, timestamp=DAY1 + timedelta(hours=h)) for h in range(4)],
            )

    asyncio.run(fill())
    first = ok(
        cli(
            "replay",
            "--store",
            store_url,
            "--to",
            "2024-05-01T02:00:00Z",
            "--checkpoint",
            "nightly",
        )
    )
    assert [line.split(" ", 3)[3] for line in first.lines] == ['{"h":0}', '{"h":1}']
    second = ok(cli("replay", "--store", store_url, "--checkpoint", "nightly"))
    assert [line.split(" ", 3)[3] for line in second.lines] == ['{"h":2}', '{"h":3}']
    assert ok(cli("replay", "--store", store_url, "--checkpoint", "nightly")).lines == []
