"""Opening the SQLite files the library keeps: the store, checkpoints, keys, the audit log."""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["open_wal"]


def open_wal(
    path: str | Path,
    *,
    synchronous: str = "FULL",
    timeout: float = 5.0,
    schema: str | None = None,
) -> sqlite3.Connection:
    """An autocommit connection to ``path`` in WAL mode, usable from any thread.

    ``synchronous=FULL`` (the default) makes every commit durable; ``timeout`` is how
    long a write waits for another connection's lock; ``schema`` is one statement run
    on opening (a ``CREATE TABLE IF NOT EXISTS``).
    """
    connection = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=timeout
    )
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    if schema is not None:
        connection.execute(schema)
    return connection
