"""The PostgreSQL checkpoint store's table: created on a loop's first connection, or an
older one brought up to date (``jsonb`` states converted to ``bytea``, revisions added),
taking turns with other stores under the event store's schema lock."""

from __future__ import annotations

from typing import Any

from ._checkpoint_base import TABLE
from .store.postgres import schema_change


async def _set_up(connection: Any, schema: str | None, *, create: bool = True) -> tuple[str, bool]:
    """Create the checkpoint table if it is missing, or bring an older one up to date;
    return its name qualified with the schema it is in (the connection's current schema,
    as the URL's ``?schema=`` or the server's search_path make it), and whether it is
    there now.

    With ``create`` False a missing table is left missing (False returned, nothing
    written): a connection's first use does not create it, so a role that may only read
    reads none; the first write creates it (``create`` True).

    The state is ``bytea`` holding the JSON text the library wrote, as event data is.
    Tables made before held it as ``jsonb``, which reorders an object's keys (by length,
    then bytes) and turns ``-0.0`` into ``0.0``: such a column is converted on first use,
    once, keeping jsonb's text of each state (the order a row was saved in is lost
    already). A table without the ``revision`` column (made before revisions were kept)
    gets it, each row a random revision; rows a version keeping none writes later have
    none, and saves over them compare the position alone. One round trip when the table
    is up to date; changes take turns with every other starter's under the schema lock
    (:func:`schema_change`), and are checked again once it is held, since another store
    may have made them meanwhile.
    """
    current, state_type, revisions = await connection.fetchrow(_STATE_TYPE, TABLE)
    # no current schema (a search_path naming none that exists): as the statements find it
    table = TABLE if current is None else f'"{current.replace(chr(34), chr(34) * 2)}".{TABLE}'
    if state_type == "bytea" and revisions:
        return table, True
    if state_type is None and not create:
        return table, False
    # other stores may be creating or converting it right now: take turns (schema_change)
    async with schema_change(connection, schema):
        await connection.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (name TEXT PRIMARY KEY, "
            "position BIGINT NOT NULL, state BYTEA, updated_at TIMESTAMPTZ NOT NULL, "
            "revision TEXT)"
        )
        _, state_type, revisions = await connection.fetchrow(_STATE_TYPE, table)
        if state_type != "bytea":
            await connection.execute(
                f"ALTER TABLE {table} ALTER COLUMN state TYPE BYTEA "
                "USING convert_to(state::text, 'UTF8')"
            )
        if not revisions:  # a table from before revisions were kept: each row gets one
            await connection.execute(f"ALTER TABLE {table} ADD COLUMN revision TEXT")
            await connection.execute(
                f"UPDATE {table} SET revision = md5(random()::text || clock_timestamp()::text "
                "|| name) WHERE revision IS NULL"
            )
    return table, True


#: the connection's current schema, the type of the checkpoint table's ``state`` column
#: as ``format_type`` names it (None if the table does not exist), and whether it has
#: the ``revision`` column, found as statements find the table (search_path) or by its
#: qualified name
_STATE_TYPE = (
    "SELECT current_schema(), (SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
    "WHERE attrelid = to_regclass($1) AND attname = 'state' AND NOT attisdropped), "
    "EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) "
    "AND attname = 'revision' AND NOT attisdropped)"
)
