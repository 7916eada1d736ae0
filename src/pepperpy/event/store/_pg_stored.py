"""The PostgreSQL side of copies (``read_stored`` and ``write_stored``): stored events
written as they are, at their own global positions.

The write takes the ``pepperpy_head`` row lock appends take (held until commit), so it
and appends take turns: positions stay visible in commit order, and appends made after
it get positions past the rows it wrote (the counter is moved past them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._pg_schema import CHANNEL_OF_TABLES, COLUMNS, HEAD, READ_ALL
from .base import Row, StoredRow, check_ids, check_stored

__all__ = ["read_stored", "write_stored"]

_LOCK_HEAD = "SELECT next_position FROM pepperpy_head FOR UPDATE"

_LOCK_STREAMS = """
SELECT name, next_position, first_visible FROM pepperpy_streams
WHERE name = any($1::text[]) ORDER BY name FOR UPDATE
"""

#: which (stream, id) pairs are stored visible, and at which position
_KNOWN_IDS = """
SELECT e.stream, e.id, e.position
FROM unnest($1::text[], $2::text[]) AS k(stream, id)
JOIN pepperpy_events e ON e.stream = k.stream AND e.id = k.id
JOIN pepperpy_streams s ON s.name = e.stream
WHERE e.position >= s.first_visible
"""

_INSERT = f"""
INSERT INTO pepperpy_events ({COLUMNS})
SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                     $6::int[], $7::bytea[], $8::bytea[], $9::bigint[], $10::text[],
                     $11::text[], $12::bigint[])
"""

_MOVE_STREAMS = """
UPDATE pepperpy_streams AS s SET next_position = m.next_position
FROM unnest($1::text[], $2::bigint[]) AS m(name, next_position) WHERE s.name = m.name
"""

_RAISE_VISIBLE = """
WITH raised AS (
    UPDATE pepperpy_streams AS s SET first_visible = m.first_visible
    FROM unnest($1::text[], $2::bigint[]) AS m(name, first_visible)
    WHERE s.name = m.name AND s.first_visible < m.first_visible
    RETURNING s.name
)
DELETE FROM pepperpy_snapshots WHERE stream IN (SELECT name FROM raised)
"""

_SET_DELETED = """
UPDATE pepperpy_streams SET deleted = (next_position <= first_visible AND first_visible > 0)
WHERE name = any($1::text[])
"""

_MOVE_HEAD = f"""
WITH moved AS (
    UPDATE pepperpy_head SET next_position = greatest(next_position, $1) RETURNING 1
)
SELECT pg_notify({CHANNEL_OF_TABLES}, $1::text), pg_notify($2, $1::text) FROM moved
"""


async def read_stored(connection: Any, from_position: int, limit: int) -> list[StoredRow]:
    """The log's rows from ``from_position`` on, hidden ones too, with their visibility."""
    return [tuple(row) for row in await connection.fetch(READ_ALL, from_position, limit)]


async def write_stored(
    channel: str,
    rows: Sequence[Row],
    after: int | None,
    visible_from: Mapping[str, int],
    connection: Any,
) -> None:
    """Write ``rows`` in ``connection``'s transaction (see ``StoreBackend.write_stored``)."""
    await connection.execute(_LOCK_HEAD)  # appends wait from here until the commit
    head = await connection.fetchval(HEAD)
    names = sorted({row[1] for row in rows} | visible_from.keys())
    await connection.execute(
        "INSERT INTO pepperpy_streams (name, next_position) "
        "SELECT unnest($1::text[]), 0 ON CONFLICT DO NOTHING",
        names,
    )
    locked = await connection.fetch(_LOCK_STREAMS, names)
    states = {row[0]: row[1] for row in locked}
    following = check_stored(rows, head, after, states.__getitem__)
    if rows:
        found = await connection.fetch(
            _KNOWN_IDS, [row[1] for row in rows], [row[3] for row in rows]
        )
        visible = {row[0]: row[2] for row in locked}
        known = {(row[0], row[1]): row[2] for row in found}
        check_ids(rows, visible_from, visible.__getitem__, known)
    if rows:
        await connection.execute(_INSERT, *[list(column) for column in zip(*rows, strict=True)])
        await connection.execute(_MOVE_STREAMS, list(following), list(following.values()))
    if visible_from:
        await connection.execute(_RAISE_VISIBLE, list(visible_from), list(visible_from.values()))
    await connection.execute(_SET_DELETED, names)
    if rows:
        await connection.fetchval(_MOVE_HEAD, rows[-1][0] + 1, channel)
