"""Ctrl-C and SIGTERM while ``import FILE`` reads the file through (before it writes
anything): the command stops at once, not after reading the rest of the file."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pepperpy.event import EventStore

from .conftest import start_command

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="needs /proc to see the file opened"
)

#: lines of the generated file: the read-through takes over 10 s for them (about 70,000
#: lines a second), the interrupted command well under BOUND
LINES = 800_000
BOUND = 5
_LINE = (
    '{"global_position":%d,"stream":"s.1","position":%d,"id":"e%d","type":"t.x",'
    '"version":1,"data":"e30=","metadata":null,"timestamp":0,"source":null,'
    '"subject":null,"recorded_at":0,"visible":true}\n'
)


@pytest.fixture(scope="module")
def big_export(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("import-interrupted") / "big.jsonl"
    with path.open("w", encoding="utf-8") as file:
        file.write('{"format":"pepperpy-event-export","version":1}\n')
        file.writelines(_LINE % (i, i, i) for i in range(LINES))
    yield path
    path.unlink()


def _wait_until_open(pid: int, path: Path, command: subprocess.Popen[str]) -> None:
    """Wait (bounded) until the process has ``path`` open: its read-through began."""
    wanted = str(path)
    for _ in range(3000):  # 30 s at most
        assert command.poll() is None, "the import ended before it was interrupted"
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            names = []
        for name in names:
            try:
                if os.readlink(f"/proc/{pid}/fd/{name}") == wanted:
                    return
            except OSError:
                continue
        time.sleep(0.01)
    raise AssertionError("the import never opened its file")


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_a_signal_during_the_read_through_stops_the_import_at_once(
    big_export: Path, tmp_path: Path, signum: int, code: int, said: str
) -> None:
    store_url = f"sqlite:///{tmp_path}/store.db"
    importing = start_command("import", str(big_export), "--store", store_url, cwd=tmp_path)
    try:
        _wait_until_open(importing.pid, big_export, importing)
        importing.send_signal(signum)
        try:
            _, err = importing.communicate(timeout=BOUND)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the import went on reading its file for over {BOUND} s after the signal"
            ) from None
    finally:
        if importing.poll() is None:
            importing.kill()
            importing.communicate()
    assert importing.returncode == code, err
    assert err.strip() == said

    async def stored() -> list[object]:
        async with EventStore(store_url) as store:
            return list(await store.read_all(0, limit=1))

    assert asyncio.run(stored()) == []  # nothing was written
