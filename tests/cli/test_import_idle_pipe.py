"""Ctrl-C and SIGTERM stop ``import -`` (or ``import FIFO``) blocked reading an idle pipe.

``ssh host pepperpy-event export - | pepperpy-event import -``: while the writer sends
nothing, the import waits in a read, in a thread (``asyncio.to_thread``). ``asyncio.run``
and then the interpreter's exit waited for that thread, so a signal did nothing until
the writer wrote or closed; the command then failed on a cut-off file (status 1), or
said ``interrupted`` only after the writer was gone. A FIFO's import, stopped, also
waited for the read to end before it closed the file.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from .conftest import command_env, start_command, thread_waits_in

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")

_HEADER = '{"format":"pepperpy-event-export","version":2}\n'
_LINE = (
    '{"global_position":0,"stream":"s.1","position":0,"id":"e0","type":"t.x",'
    '"version":1,"data":"e30=","metadata":null,"timestamp":0,"source":null,'
    '"subject":null,"recorded_at":0,"visible":true}\n'
)


def _reading_a_pipe(pid: int) -> bool:
    """Whether a thread of ``pid`` waits in a read of a pipe."""
    return thread_waits_in(pid, lambda wchan: "pipe" in wchan)


def _stop(importing: subprocess.Popen[str], signum: int) -> tuple[int, str]:
    """Once ``importing`` waits in a read of its pipe, send it ``signum``: its status and
    stderr, or a failure if it goes on waiting."""
    try:
        for _ in range(1000):  # until it waits in the read (10 s at most)
            assert importing.poll() is None, importing.communicate()
            if _reading_a_pipe(importing.pid):
                break
            time.sleep(0.01)
        importing.send_signal(signum)
        try:
            importing.wait(timeout=20)  # a liveness bound: it waited for the writer
        except subprocess.TimeoutExpired:
            pytest.fail("the import went on waiting for its pipe after the signal")
        err = importing.stderr.read() if importing.stderr is not None else ""
    finally:
        if importing.poll() is None:
            importing.kill()
        importing.communicate()
    return importing.returncode, err


_SIGNALS = pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)


@_SIGNALS
def test_a_signal_stops_an_import_reading_an_idle_stdin(
    tmp_path: Path, signum: int, code: int, said: str
) -> None:
    importing = subprocess.Popen(
        [sys.executable, "-m", "pepperpy.event", "import", "-", "--store", "sqlite:///copy.db"],
        cwd=tmp_path,
        env=command_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert importing.stdin is not None
    importing.stdin.write(_HEADER + _LINE)  # a start, then nothing more for now
    importing.stdin.flush()
    status, err = _stop(importing, signum)
    assert status == code, err
    assert err.strip() == said
    assert not (tmp_path / "copy.db").exists() or _events(tmp_path / "copy.db") == 0


@_SIGNALS
def test_a_signal_stops_an_import_reading_an_idle_fifo(
    tmp_path: Path, signum: int, code: int, said: str
) -> None:
    fifo = tmp_path / "backup.fifo"
    os.mkfifo(fifo)
    importing = start_command("import", str(fifo), "--store", "sqlite:///copy.db", cwd=tmp_path)
    with open(fifo, "w", encoding="utf-8") as writer:  # waits for the import's open
        writer.write(_HEADER + _LINE)
        writer.flush()
        status, err = _stop(importing, signum)
    assert status == code, err
    assert err.strip() == said


def _events(path: Path) -> int:
    # closing(): a connection's own ``with`` only commits, and one left to the garbage
    # collector is a ResourceWarning on 3.13, raised in whichever test is running then
    with closing(sqlite3.connect(path)) as database:
        return int(database.execute("SELECT count(*) FROM events").fetchone()[0])
