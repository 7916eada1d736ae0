"""Whether an SQLite file given for a security file of its own (an audit log, a key
store) already holds another application's tables, read before anything writes to it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["other_tables", "shown_tables"]


def other_tables(path: str, own: str) -> set[str]:
    """The tables of the database at ``path`` when it holds some and not ``own``: a file
    of something else (an event store's, another application's). Empty for a missing or
    empty file, one already holding ``own``, and one that cannot be read here (left to
    the opening that follows, which names what is wrong with it)."""
    file = Path(path)
    try:
        if file.stat().st_size == 0:
            return set()
        connection = sqlite3.connect(f"{file.absolute().as_uri()}?mode=ro", uri=True)
    except (OSError, sqlite3.Error):
        return set()
    try:
        tables = {
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
            )
        }
    except sqlite3.Error:
        return set()
    finally:
        connection.close()
    return set() if own in tables else tables


def shown_tables(tables: set[str]) -> str:
    """``tables`` for a message: what they are, when known, and the first four names."""
    names = ", ".join(sorted(tables)[:4]) + (", ..." if len(tables) > 4 else "")
    if {"events", "streams"} <= tables:
        return f" (an event store): {names}"
    if "audit_log" in tables:
        return f" (an audit log): {names}"
    return f": {names}"
