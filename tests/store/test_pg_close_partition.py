"""Closing a PostgreSQL store, or its checkpoint store, while the network is silent.

asyncpg's graceful ``Connection.close()`` sends the Terminate message and then waits for
the server to close its end. Behind a partition that answer never comes, so ``close()``
waited its whole bound (``close_timeout``, 10 s by default) for connections that were
idle and held nothing, then cut them off. An idle connection is now closed as libpq
closes one: Terminate sent, socket closed, no wait for the server. Calls under way are
still waited for, within the same bound as before (tests/store/test_postgres_faults.py).

The tests keep the default timeouts, so the old code takes 10 s to close: each close must
end within 5 s (a deadline, not a measurement), and the proxy checks that every
connection still said goodbye (the Terminate message reached the server once the
partition healed).
"""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import Event, EventStore
from pepperpy.event._checkpoints import PostgresCheckpointStore
from tests.helpers import before_deadline, eventually
from tests.store.conftest import unread_errors
from tests.store.pgfaultproxy import LISTENER, Link, PgFaultProxy, mark_listening, proxied

pytestmark = pytest.mark.postgres

#: PostgreSQL's Terminate message: 'X' and its length, nothing else
TERMINATE = b"X\x00\x00\x00\x04"
#: how long a close may take here: the old code took close_timeout (10 s)
DEADLINE = 5.0


def goodbyes(proxy: PgFaultProxy) -> set[int]:
    """The numbers of the links whose client sends the Terminate message (recorded as the
    proxy forwards it: after a partition, once it heals)."""
    said: set[int] = set()

    def client(link: Link, data: bytes) -> None:
        if data.endswith(TERMINATE):
            said.add(link.number)

    proxy.on_client = client
    return said


async def test_closing_the_store_during_a_partition_does_not_wait_on_idle_connections(
    proxy: PgFaultProxy, direct: str, loop_errors: list[str]
) -> None:
    store = EventStore(proxied(direct, proxy.port))
    events = [Event("t.x") for _ in range(6)]
    seen: list[Event] = []
    # the partition must find the listener listening: one that still connects is an
    # open under way, which close() waits for (up to connect_timeout, 10 s)
    listening = mark_listening(proxy)

    async def follow() -> None:  # a live subscription: the LISTEN connection
        async for event in store.subscribe(0):
            seen.append(event)

    follower = asyncio.ensure_future(follow())
    try:
        await asyncio.gather(*(store.append(f"s.{n}", e) for n, e in enumerate(events)))
        # reads at once, so the pool opens several connections; idle once answered
        await asyncio.gather(*(store.get_stream(f"s.{n}") for n in range(len(events))))
        await eventually(lambda: len(seen) == len(events) and bool(listening()))
        pooled = [link for link in proxy.links() if link.application != LISTENER]
        assert len(pooled) > 1
        said = goodbyes(proxy)
        proxy.pause()
        await before_deadline(store.close(), DEADLINE)
        await before_deadline(follower, DEADLINE)  # closing the store ended the subscription
    finally:
        proxy.resume()
        await store.close()
    await eventually(lambda: proxy.open_connections == 0)
    assert {link.number for link in pooled} <= said  # each said goodbye, none was reset
    assert await unread_errors(loop_errors) == []
    async with EventStore(direct) as again:  # every append acknowledged is there
        assert {event.id for event in await again.read_all()} == {e.id for e in events}


async def test_closing_the_checkpoint_store_during_a_partition_does_not_wait_when_idle(
    proxy: PgFaultProxy, direct: str, loop_errors: list[str]
) -> None:
    checkpoints = PostgresCheckpointStore(proxied(direct, proxy.port))
    await checkpoints.save("c", 1, None, previous=None)
    (link,) = proxy.links()
    said = goodbyes(proxy)
    proxy.pause()
    try:
        await before_deadline(checkpoints.close(), DEADLINE)
    finally:
        proxy.resume()
    await eventually(lambda: proxy.open_connections == 0)
    assert link.number in said
    assert await unread_errors(loop_errors) == []
    try:  # still usable: it opens a new connection, and the save acknowledged is there
        saved = await checkpoints.load("c")
        assert saved is not None and saved.position == 1
    finally:
        await checkpoints.close()
