"""The SQLite side of ``write_stored``: stored events written as they are, at their own
global positions, inside a job of the single writer (appends go through it too, so the
two take turns). The writer reads its head and the streams' states again afterwards
(``changes=True``: see ``_sqlite_writer``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence

from ._sqlite_log import insert_rows
from ._sqlite_schema import HEAD, KNOWN_IDS, NEXT_POSITION, SUMMARIZE, json_text
from .base import Row, StreamState, check_ids, check_stored

__all__ = ["write_stored"]


def write_stored(
    connection: sqlite3.Connection,
    rows: Sequence[Row],
    after: int | None,
    visible_from: Mapping[str, int],
    stream_state: Callable[[sqlite3.Connection, str], StreamState | None],
) -> None:
    """Write ``rows`` in the writer's transaction (see ``StoreBackend.write_stored``)."""
    (head,) = connection.execute(HEAD).fetchone()

    def next_position(stream: str) -> int:
        state = stream_state(connection, stream)
        return 0 if state is None else state.next_position

    following = check_stored(rows, head, after, next_position)

    def first_visible(stream: str) -> int:
        state = stream_state(connection, stream)
        return 0 if state is None else state.first_visible

    known: dict[tuple[str, str], int] = {}
    if rows:
        pairs = json_text([(row[1], row[3]) for row in rows])
        for stream, event_id, position, _ in connection.execute(KNOWN_IDS, (pairs,)):
            known[(stream, event_id)] = position
    check_ids(rows, visible_from, first_visible, known)
    insert_rows(connection, list(rows))
    if rows:  # the copy's time summary, as appends keep it (see _time_blocks)
        connection.execute(SUMMARIZE, (rows[0][0],))
    for stream in sorted({*following, *visible_from}):
        connection.execute(
            "INSERT INTO streams (name) VALUES (?) ON CONFLICT (name) DO NOTHING", (stream,)
        )
        if stream in visible_from:
            cursor = connection.execute(
                "UPDATE streams SET first_visible = ? WHERE name = ? AND first_visible < ?",
                (visible_from[stream], stream, visible_from[stream]),
            )
            if cursor.rowcount:
                connection.execute("DELETE FROM snapshots WHERE stream = ?", (stream,))
        connection.execute(
            f"UPDATE streams AS s SET deleted = ({NEXT_POSITION} <= s.first_visible "
            "AND s.first_visible > 0) WHERE s.name = ?",
            (stream,),
        )
