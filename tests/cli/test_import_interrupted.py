"""Ctrl-C and SIGTERM while ``import FILE`` reads the file through (before it writes
anything): the command stops at once, not after reading the rest of the file.

"At once" is measured by what the command reads of the file after the signal (its
read offset, in ``/proc/PID/fdinfo``), not by the wall clock: a 5 s bound on the exit
once failed on a loaded CI runner, where the same stop takes a few milliseconds and
reads a few hundred lines. A command that went on reading reads the rest of the file,
whatever the machine's speed; one that stops leaves nearly all of it unread.
"""

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

#: lines of the generated file (about 160 MB): the read-through takes over 10 s for them
#: (about 70,000 lines a second)
LINES = 800_000
#: a liveness bound on the interrupted command's exit, seconds: generous, not the test
ALIVE = 60
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


def _descriptor(pid: int, path: Path, command: subprocess.Popen[str]) -> str:
    """Wait (bounded) until the process has ``path`` open (its read-through began), and
    return the descriptor's name in ``/proc/PID/fd``."""
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
                    return name
            except OSError:
                continue
        time.sleep(0.01)
    raise AssertionError("the import never opened its file")


def _offset(pid: int, descriptor: str) -> int | None:
    """The read offset of the process's open file ``descriptor`` (None: closed, or the
    process is gone)."""
    try:
        with open(f"/proc/{pid}/fdinfo/{descriptor}", encoding="ascii") as info:
            fields = dict(line.split(":", 1) for line in info if ":" in line)
        return int(fields["pos"])
    except (OSError, KeyError, ValueError):
        return None


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_a_signal_during_the_read_through_stops_the_import_at_once(
    big_export: Path, tmp_path: Path, signum: int, code: int, said: str
) -> None:
    size = big_export.stat().st_size
    store_url = f"sqlite:///{tmp_path}/store.db"
    importing = start_command("import", str(big_export), "--store", store_url, cwd=tmp_path)
    try:
        descriptor = _descriptor(importing.pid, big_export, importing)
        # stopped while the signal is sent: the offset read is the one the signal finds
        importing.send_signal(signal.SIGSTOP)
        at_signal = _offset(importing.pid, descriptor)
        importing.send_signal(signum)
        importing.send_signal(signal.SIGCONT)
        assert at_signal is not None, "the import closed its file before the signal"
        assert at_signal < size // 2, f"the signal came late: {at_signal} of {size} bytes read"
        furthest = at_signal
        deadline = time.monotonic() + ALIVE
        while importing.poll() is None and time.monotonic() < deadline:
            offset = _offset(importing.pid, descriptor)
            furthest = max(furthest, offset or 0)
            time.sleep(0.005)
        assert importing.poll() is not None, f"the import still ran {ALIVE} s after the signal"
        _, err = importing.communicate()
    finally:
        if importing.poll() is None:
            importing.kill()
            importing.communicate()
    read = furthest - at_signal
    assert read < (size - at_signal) // 2, (
        f"the import went on reading its file after the signal: {read} bytes of the "
        f"{size - at_signal} left (about {read * LINES // size} lines)"
    )
    assert importing.returncode == code, err
    assert err.strip() == said

    async def stored() -> list[object]:
        async with EventStore(store_url) as store:
            return list(await store.read_all(0, limit=1))

    assert asyncio.run(stored()) == []  # nothing was written
