"""Ctrl-C while a command's cleanup waits for long.

A replay stopped by Ctrl-C saves its checkpoint; when another process holds the store's
write lock, that save waits up to the store's ``busy_timeout``, and pressing Ctrl-C again
did nothing. After a second, the command now says it is still stopping, and a second
Ctrl-C then quits at once (status 130), without the save. (Closing a PostgreSQL store
connecting to a server that does not answer was the first such wait; it no longer waits.)
"""

from __future__ import annotations

import contextlib
import queue
import signal
import sqlite3
import threading
from pathlib import Path

from tests.cli.conftest import Cli, start_command
from tests.cli.test_cli import ok
from tests.cli.test_pipes_and_signals import paced

_WAIT = 60.0


def test_a_second_ctrl_c_quits_a_slow_stop_at_once(
    cli: Cli, store_url: str, tmp_path: Path
) -> None:
    paced(store_url, 30, 1.0)
    # the save would wait 300 s for the lock: far past every wait below
    url = f"{store_url}?busy_timeout=300"
    process = start_command(
        "replay", "--checkpoint", "nightly", "--speed", "1", "--store", url, cwd=tmp_path
    )
    lines: queue.Queue[str] = queue.Queue()
    with contextlib.closing(sqlite3.connect(tmp_path / "store.db", isolation_level=None)) as db:
        try:
            assert process.stdout is not None
            assert process.stdout.readline().startswith("0 tick.1:0")
            db.execute("BEGIN IMMEDIATE")  # another writer: the checkpoint's save must wait
            process.send_signal(signal.SIGINT)

            def read() -> None:
                assert process.stderr is not None
                for line in process.stderr:
                    lines.put(line)

            threading.Thread(target=read, daemon=True).start()
            still = lines.get(timeout=_WAIT)
            assert still.startswith("pepperpy-event: still stopping: "), still
            assert "press Ctrl-C again to quit at once" in still
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=_WAIT) == 130
            assert lines.get(timeout=_WAIT) == "interrupted again: quitting without the cleanup\n"
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if process.poll() is None:
                process.kill()
            process.wait(timeout=_WAIT)
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
    # the save was skipped: no checkpoint (a stop that saves leaves one: test_sigterm)
    assert "replay:nightly" not in ok(cli("checkpoints", "--store", store_url)).out
