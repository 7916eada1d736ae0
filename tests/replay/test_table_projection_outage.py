"""A TableProjection's ``follow()`` rides out a COMMIT lost in flight, exactly once.

The batch's rows and its position go in one transaction; a connection lost as its
``COMMIT`` goes out (the server rolls back) or as the answer comes back (it committed)
leaves the outcome unknown to the projection. It loads the position from disk again and
catches up from there, so each event's row is written once: a second insert of one
would fail on the table's primary key, and one skipped would be missing.

PostgreSQL, the state store reached through the fault proxy (the events straight from
the server), so that each fault hits the projection's transaction.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from pepperpy.event import Event, EventStore, TableProjection
from tests.helpers import eventually
from tests.replay import faults
from tests.replay.faults import LoseNextCommit, append_until_fired, catches_up
from tests.store import conftest as store_fixtures
from tests.store.pgfaultproxy import PgFaultProxy, proxied

#: the store tests' PostgreSQL fixtures: a database for the module, a schema per test
#: (``direct``), the fault proxy, a plain connection
database, direct, proxy = store_fixtures.database, store_fixtures.direct, store_fixtures.proxy
admin = store_fixtures.admin
#: the followed store, five events in (tests/replay/faults.py)
store = faults.store


def ledger(store: EventStore, state_store: str) -> TableProjection:
    async def setup(db: Any) -> None:
        await db.execute("CREATE TABLE IF NOT EXISTS applied (position bigint PRIMARY KEY)")

    projection = TableProjection(
        "ledger", store, setup=setup, state_store=state_store, batch_size=3
    )

    @projection.on("acc.#")
    async def record(db: Any, event: Event) -> None:
        await db.execute("INSERT INTO applied VALUES ($1)", event.global_position)

    return projection


@pytest.mark.postgres
@pytest.mark.parametrize("at", ["sent", "answer"])
async def test_follow_rides_out_commits_lost_in_flight_and_writes_each_row_once(
    proxy: PgFaultProxy, direct: str, store: EventStore, admin: Any, at: str
) -> None:
    state_url = proxied(direct, proxy.port, command_timeout=3, connect_timeout=2)
    projection = ledger(store, state_url)
    cut = LoseNextCommit(proxy)
    follower = asyncio.ensure_future(projection.follow())
    try:
        await eventually(lambda: projection.position == 4, timeout=15)
        for fired in range(1, 4):
            cut.arm(at)
            await append_until_fired(store, cut, fired, follower)
        head = await catches_up(store, projection)
        assert not follower.done()
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await projection.close()
    schema = parse_qs(urlsplit(direct).query)["schema"][0]
    rows = [r[0] for r in await admin.fetch(f'SELECT position FROM "{schema}".applied ORDER BY 1')]
    assert rows == [event.global_position async for event in store.read_all()]
    async with ledger(store, direct) as fresh:
        assert await fresh.load() == head
