"""``tail -n N`` with a large N prints the events as it reads them, a page at a time.

The last N events were read into one list (in reads of up to 10,000 rows) before the
first was printed: ``tail -n 1000000`` held a million events in memory. Past 1,000
lines the command now finds where the last N begin, reading newest first and keeping
none, then prints them as it reads them forwards.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pepperpy.event import Event, EventStore
from pepperpy.event.cli._app import app
from pepperpy.event.store.sqlite import SQLiteBackend

EVENTS = 5_000
PAGE = 500  # what an ``async for`` over a reader reads at a time


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/events.db"

    async def fill() -> None:
        async with EventStore(url) as store:
            for start in range(0, EVENTS, 500):
                await store.append_streams(
                    {f"s{k}.{start}": Event(f"t{k}.x", {"n": start + k}) for k in range(2)}
                )
                await store.append(
                    f"bulk.{start}", [Event("b.x", {"n": n}) for n in range(start, start + 498)]
                )

    asyncio.run(fill())
    return url


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows each read of the log returned, whichever way."""
    counted: list[int] = []
    for method in ("read_all", "read_all_backwards", "read_all_matching"):
        original = getattr(SQLiteBackend, method)

        async def counting(self: Any, *args: Any, _original: Any = original, **kw: Any) -> Any:
            page = await _original(self, *args, **kw)
            counted.append(len(page.rows))
            return page

        monkeypatch.setattr(SQLiteBackend, method, counting)
    return counted


def _tail(*args: str) -> list[str]:
    result = CliRunner().invoke(app, ["tail", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_many_lines_are_read_a_page_at_a_time(store_url: str, reads: list[int]) -> None:
    got = _tail("--store", store_url, "-n", "3000")
    assert [int(line.split()[0]) for line in got] == list(range(EVENTS - 3000, EVENTS))
    assert max(reads) <= PAGE
    reads.clear()
    everything = _tail("--store", store_url, "-n", "1000000")
    assert [int(line.split()[0]) for line in everything] == list(range(EVENTS))
    assert max(reads) <= PAGE
    # filtered: by an index (streams), and by a scan (a type pattern without a prefix)
    mine = _tail("--store", store_url, "-n", "1001", "--streams", "bulk.#")
    assert len(mine) == 1001 and all(" bulk." in line for line in mine)
    assert mine[-1].split()[0] == str(EVENTS - 1)
    few = _tail("--store", store_url, "-n", "2000", "--types", "*.x", "--streams", "s1.*")
    assert [line.split()[1] for line in few] == [f"s1.{start}:0" for start in range(0, EVENTS, 500)]
    assert max(reads) <= PAGE
    # the small path prints the same lines
    assert _tail("--store", store_url, "-n", "1000") == got[-1000:]
