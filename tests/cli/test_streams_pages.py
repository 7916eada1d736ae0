"""``streams`` counts a page of names with one backend read and prints each page as it
is counted: not one query per stream, with nothing printed until every stream is
counted (20,000 streams took 10 s before the first line)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from pepperpy.event import NO_STREAM, Event, EventStore

from .conftest import command_env

#: names counted per backend read (``_counts.COUNTED_AT_ONCE``)
COUNTED_AT_ONCE = 1000
STREAMS = COUNTED_AT_ONCE * 2 + 500  # three pages

#: runs the command with SQLiteBackend's per-stream and per-page reads counted (on
#: stderr at exit), the page read failing on call FAIL_AT (0: never); the per-stream
#: read fails past the first page's worth of calls, as the store going away would
_COUNTED = """
import atexit, sys
from pepperpy.event.cli import main
from pepperpy.event.store.sqlite import SQLiteBackend

fail_at, page_size = int(sys.argv[1]), int(sys.argv[2])
calls = {"one": 0, "page": 0}
one, page = SQLiteBackend.stream_state, SQLiteBackend.stream_states

async def counted_one(self, stream):
    calls["one"] += 1
    if fail_at and calls["one"] > page_size:
        raise RuntimeError("the store went away")
    return await one(self, stream)

async def counted_page(self, streams):
    calls["page"] += 1
    if calls["page"] == fail_at:
        raise RuntimeError("the store went away")
    return await page(self, streams)

SQLiteBackend.stream_state = counted_one
SQLiteBackend.stream_states = counted_page
atexit.register(lambda: sys.stderr.write(f"calls {calls['one']} {calls['page']}\\n"))
main(sys.argv[3:])
"""


@pytest.fixture
def many_streams(store_url: str) -> list[str]:
    """STREAMS streams, s.00000 holding 3 events and s.00001 deleted and written again."""
    names = [f"s.{i:05d}" for i in range(STREAMS)]

    async def write() -> None:
        async with EventStore(store_url) as store:
            for start in range(0, STREAMS, 500):
                await store.append_streams(
                    {name: [Event("t.x", {})] for name in names[start : start + 500]}
                )
            await store.append("s.00000", [Event("t.x", {}), Event("t.x", {})])
            await store.append("s.00001", Event("t.x", {}))
            await store.delete_stream("s.00001")
            await store.append("s.00001", Event("t.x", {}), expected_version=NO_STREAM)

    asyncio.run(write())
    return names


def counted(tmp_path: Path, store_url: str, fail_at: int) -> tuple[int, list[str], int, int]:
    """Exit status, stdout's lines and the calls (per stream, per page) of ``streams``."""
    done = subprocess.run(
        [sys.executable, "-c", _COUNTED, str(fail_at), str(COUNTED_AT_ONCE)]
        + ["streams", "--store", store_url],
        cwd=tmp_path,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("calls "), done.stderr
    one, page = map(int, last.split()[1:])
    return done.returncode, done.stdout.splitlines(), one, page


def test_streams_counts_a_page_at_a_time(
    many_streams: list[str], tmp_path: Path, store_url: str
) -> None:
    code, lines, one, page = counted(tmp_path, store_url, 0)
    assert code == 0
    expected = [f"{name} 1" for name in many_streams]
    expected[0] = "s.00000 3"
    assert expected[1] == "s.00001 1"  # its events before the delete are hidden: not counted
    assert lines == expected
    assert (one, page) == (0, 3)  # one read per page, none per stream


def test_streams_prints_each_page_as_it_is_counted(
    many_streams: list[str], tmp_path: Path, store_url: str
) -> None:
    """The store failing while the second page is counted: the first page is out."""
    code, lines, _, _ = counted(tmp_path, store_url, 2)
    assert code == 1
    assert len(lines) == COUNTED_AT_ONCE
    assert lines[0] == "s.00000 3" and lines[-1] == f"{many_streams[COUNTED_AT_ONCE - 1]} 1"
