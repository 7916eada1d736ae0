"""``import <(zcat backup.jsonl.gz)`` and ``import FIFO``: a FILE that is no regular file
is read once, as stdin is. The command refused it ('no export file at /dev/fd/63'), though
``export`` writes to one, and ``import_store`` consumed it in its read-through."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pepperpy.event import Event

from .conftest import Cli, command_env, start_command, thread_waits_in
from .test_cli import ok, seed

pytestmark = pytest.mark.skipif(not Path("/dev/fd").is_dir(), reason="needs /dev/fd")


def test_import_reads_a_process_substitution(cli: Cli, store_url: str, tmp_path: Path) -> None:
    seed(store_url, [("a.1", Event("t.x", {"k": i})) for i in range(3)])
    ok(cli("export", "backup.jsonl", "--store", store_url))
    text = (tmp_path / "backup.jsonl").read_bytes()
    reading, writing = os.pipe()

    def feed() -> None:
        with open(writing, "wb") as pipe:
            pipe.write(text)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pepperpy.event", "import", f"/dev/fd/{reading}"]
            + ["--store", "sqlite:///copy.db"],
            cwd=tmp_path,
            env=command_env(),
            pass_fds=(reading,),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(reading)
        feeder.join(30)
    assert done.returncode == 0, done.stderr
    assert "imported 3 events into" in done.stderr
    assert ok(cli("read", "a.1", "--store", "sqlite:///copy.db")).lines == [
        '0 t.x {"k":0}',
        '1 t.x {"k":1}',
        '2 t.x {"k":2}',
    ]


def test_import_refuses_a_directory(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "backups").mkdir()
    done = cli("import", "backups", "--store", "sqlite:///copy.db")
    assert done.code == 1
    assert done.err.splitlines() == [
        "pepperpy-event: error: FILE 'backups' is a directory: give the path of an export file"
    ]


def _waiting_for_a_writer(pid: int) -> bool:
    """Whether a thread of ``pid`` waits in a FIFO's open for a writer."""
    return thread_waits_in(pid, lambda wchan: wchan.strip() == "wait_for_partner")


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_a_signal_stops_an_import_waiting_for_a_fifo_writer(
    tmp_path: Path, signum: int, code: int, said: str
) -> None:
    """A FIFO's open waits for a writer, which may never come: the import waited in a
    thread asyncio.run waits for, so Ctrl-C and SIGTERM did not end it."""
    fifo = tmp_path / "backup.fifo"
    os.mkfifo(fifo)
    importing = start_command("import", str(fifo), "--store", "sqlite:///copy.db", cwd=tmp_path)
    try:
        # until it waits in the open (a kernel that does not say, in 5 s: it does by then)
        for _ in range(500):
            assert importing.poll() is None, importing.communicate()
            if _waiting_for_a_writer(importing.pid):
                break
            time.sleep(0.01)
        importing.send_signal(signum)
        _, err = importing.communicate(timeout=60)  # a liveness bound: it used to hang
    finally:
        if importing.poll() is None:
            importing.kill()
            importing.communicate()
    assert importing.returncode == code, err
    assert err.strip() == said
