"""PostgreSQL reads a page of stream names through an index, not by scanning them all.

``stream_names_page`` orders names by code point (``COLLATE "C"``, as Python sorts and
as SQLite's ``BINARY`` does); the primary key of ``pepperpy_streams`` is in the
database's collation, which cannot serve that order, so before migration 5 every page
(the console's index, ``pepperpy-event streams``) was a scan of every stream and a sort:
paging through a million streams read the table once per page.
"""

from __future__ import annotations

import json

import pytest

from pepperpy.event import EventStore
from pepperpy.event.store import postgres
from pepperpy.event.store._names_page import prefix_bounds

asyncpg = pytest.importorskip("asyncpg")


def _plan_nodes(plan: dict[str, object]) -> list[tuple[str, str]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan: (node type, index name or '')."""
    nodes = [(str(plan["Node Type"]), str(plan.get("Index Name", "")))]
    for child in plan.get("Plans", []):  # type: ignore[attr-defined]
        nodes.extend(_plan_nodes(child))
    return nodes


@pytest.mark.parametrize(
    ("query", "arguments"),
    [
        (postgres._NAMES_AFTER, ("", 50)),
        (postgres._NAMES_AFTER, ("orders.500", 50)),
        (postgres._NAMES_UNDER, ("", 50, *prefix_bounds("orders"), "orders", "orders.")),
    ],
    ids=["first page", "after a name", "under a prefix"],
)
async def test_a_page_of_names_is_read_through_the_code_point_index(
    postgres_url: str, query: str, arguments: tuple[object, ...]
) -> None:
    async with EventStore(postgres_url) as store:
        await store.append("orders.0", {"type": "t"})  # creates and migrates the schema
    connection = await asyncpg.connect(postgres_url)
    try:
        # enough streams that a scan would cost more than the index, and fresh statistics
        await connection.execute(
            "INSERT INTO pepperpy_streams (name, next_position) "
            "SELECT 'orders.' || n, 1 FROM generate_series(1, 20000) AS n"
        )
        await connection.execute("ANALYZE pepperpy_streams")
        [row] = await connection.fetch(f"EXPLAIN (FORMAT JSON) {query}", *arguments)
        plan = json.loads(row[0])[0]["Plan"]
        nodes = _plan_nodes(plan)
        assert ("Index Scan", "pepperpy_streams_name_c") in nodes, nodes
        assert all(kind not in ("Seq Scan", "Sort") for kind, _ in nodes), nodes
    finally:
        await connection.close()
