"""Closing a PostgreSQL checkpoint store while its connection is still being opened.

A server that accepts TCP connections and never answers (the fault proxy's
``blackhole``) leaves a connection attempt waiting for its ``connect_timeout``.
``PostgresCheckpointStore.close()`` waited for it, behind the call opening it: its whole
close bound (10 s), then the calls went on waiting for what was left of
``connect_timeout``. It now abandons such openings as the event store does
(tests/store/test_pg_close_openings.py): ``close()`` returns within about a second,
the calls waiting for the connection fail with ``ClosedError`` (nothing was written),
and no connection outlives it. The store stays usable: its next call connects again.

The deadline below is a bound, not a measurement: the old code took 10 s.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pepperpy.event import ClosedError
from pepperpy.event._checkpoints import PostgresCheckpointStore
from tests.helpers import before_deadline, eventually
from tests.store.conftest import unread_errors
from tests.store.pgfaultproxy import PgFaultProxy, proxied

pytestmark = pytest.mark.postgres

#: well below the old 10 s, well above the ~1 s close now takes, on a loaded machine
DEADLINE = 6.0


def openings(store: PostgresCheckpointStore) -> set[asyncio.Future[Any]]:
    return {opening for on in store._loops.values() for opening in on.openings}


async def test_close_abandons_a_connection_still_being_opened(
    proxy: PgFaultProxy, direct: str, loop_errors: list[str]
) -> None:
    """A load opens the connection to a server that never answers, a save waits for its
    turn; close() ends both with ClosedError and returns long before connect_timeout."""
    store = PostgresCheckpointStore(proxied(direct, proxy.port, connect_timeout=30))
    proxy.blackhole()
    load = asyncio.ensure_future(store.load("c"))
    save = asyncio.ensure_future(store.save("c", 3, {"n": 1}, previous=None))
    try:
        await eventually(lambda: proxy.accepted >= 1 and bool(openings(store)))
        (on,) = store._loops.values()
        await before_deadline(store.close(), DEADLINE)
        for call in (load, save):
            with pytest.raises(ClosedError, match="checkpoint store was closed"):
                await before_deadline(call, DEADLINE)
        assert on.openings == set() and on.connection is None
        assert proxy.accepted == 1  # the save, refused, connected nowhere
    finally:
        proxy.heal()
        await store.close()
        for call in (load, save):
            call.cancel()
    await eventually(lambda: proxy.open_connections == 0)  # the attempt was cut off
    assert await unread_errors(loop_errors) == []
    try:  # still usable, and nothing was written
        assert await before_deadline(store.load("c"), DEADLINE) is None
        await store.save("c", 4, None, previous=None)
        saved = await store.load("c")
        assert saved is not None and saved.position == 4
    finally:
        await store.close()
    assert await unread_errors(loop_errors) == []


async def test_close_still_lets_a_save_queued_on_a_healthy_server_commit(
    direct: str, loop_errors: list[str]
) -> None:
    """A save made just before close() on a fresh store (no connection yet) is still
    written: a connection a healthy server opens at once is waited for."""
    store = PostgresCheckpointStore(direct)
    save = asyncio.ensure_future(store.save("c", 7, None, previous=None))
    await asyncio.sleep(0)  # under way, its connection not opened yet
    try:
        await before_deadline(store.close(), DEADLINE)
        await before_deadline(save, DEADLINE)
        saved = await store.load("c")
        assert saved is not None and saved.position == 7
    finally:
        await store.close()
    assert await unread_errors(loop_errors) == []


async def test_close_from_another_loop_ends_an_opening_there_with_closed_error(
    proxy: PgFaultProxy, direct: str
) -> None:
    """A call on another event loop (a thread's) waits for a connection being opened to
    a server that never answers; close() on this loop abandons that opening too. The
    call failed with CancelledError, though nothing had cancelled it; it now gets
    ClosedError, as on the closing loop."""
    store = PostgresCheckpointStore(proxied(direct, proxy.port, connect_timeout=30))
    proxy.blackhole()
    outcome: list[BaseException | None] = []

    def on_a_thread() -> None:
        async def load() -> None:
            await store.load("c")

        try:
            asyncio.run(load())
        except BaseException as exc:  # CancelledError too: what the call ended with
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = asyncio.ensure_future(asyncio.to_thread(on_a_thread))
    try:
        await eventually(lambda: proxy.accepted >= 1 and bool(openings(store)))
        await before_deadline(store.close(), DEADLINE)
        await before_deadline(thread, DEADLINE)
        (ended,) = outcome
        assert isinstance(ended, ClosedError), repr(ended)
        assert "checkpoint store was closed" in str(ended)
    finally:
        proxy.heal()
        await store.close()
        await asyncio.wait_for(thread, 40)
    await eventually(lambda: proxy.open_connections == 0)
