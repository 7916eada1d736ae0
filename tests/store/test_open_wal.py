"""Opening a new SQLite file from several connections at once (the store's writer, its
checkpoint and key stores, other processes): the switch to WAL mode must wait its turn.

SQLite answers "database is locked" at once, busy timeout or not, to connections that
switch a new file to WAL mode together (each holds the read lock the others wait for).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import _sqlite
from pepperpy.event._sqlite import open_wal


class Locked:
    """A connection whose first ``times`` switches to WAL mode find the file locked."""

    def __init__(self, real: sqlite3.Connection, times: int) -> None:
        self.real = real
        self.times = times
        self.closed = False

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "PRAGMA journal_mode=WAL" and self.times:
            self.times -= 1
            raise sqlite3.OperationalError("database is locked")
        return self.real.execute(sql, *args)

    def close(self) -> None:
        self.closed = True
        self.real.close()


def locked_connect(monkeypatch: pytest.MonkeyPatch, times: int) -> list[Locked]:
    made: list[Locked] = []
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> Locked:
        made.append(Locked(real_connect(*args, **kwargs), times))
        return made[-1]

    monkeypatch.setattr(_sqlite.sqlite3, "connect", connect)
    return made


def test_a_switch_that_finds_the_file_locked_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = locked_connect(monkeypatch, times=3)
    connection = open_wal(tmp_path / "x.db", timeout=5, schema="CREATE TABLE t (x)")
    try:
        assert made[0].times == 0  # all three refusals were met, then it switched
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        connection.close()


def test_a_file_locked_beyond_the_timeout_is_an_error_and_the_connection_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = locked_connect(monkeypatch, times=10**9)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        open_wal(tmp_path / "x.db", timeout=0.05)
    assert made[0].closed


def test_connections_opening_a_new_file_together_all_succeed(tmp_path: Path) -> None:
    failures: list[str] = []
    for round_ in range(60):  # a round failed about once in 15 before
        path = tmp_path / f"r{round_}.db"
        barrier = threading.Barrier(6)

        def open_one(path: Path = path, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                open_wal(path, timeout=10, schema="CREATE TABLE IF NOT EXISTS t (x)").close()
            except sqlite3.OperationalError as exc:
                failures.append(str(exc))

        threads = [threading.Thread(target=open_one) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert failures == []
