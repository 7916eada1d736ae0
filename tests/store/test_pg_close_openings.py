"""Closing a PostgreSQL store while connections are still being opened.

A server that accepts TCP connections and never answers (the fault proxy's
``blackhole``) leaves every connection attempt waiting for its ``connect_timeout``.
``close()`` waited for those attempts: for its own bound (10 s) and then for what was
left of the attempt, 11 s with ``connect_timeout=30``; the CLI needed a second Ctrl-C
to get out. It now abandons them: it returns within about a second, the calls waiting
for such a connection fail with ``ClosedError`` (nothing was written), and no
connection or task of the store outlives it.

The deadline below is a bound, not a measurement: the old code took 11 s.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg.connect_utils
import pytest

from pepperpy.event import ClosedError, Event, EventStore
from pepperpy.event.store.postgres import PostgresBackend
from tests.helpers import before_deadline, eventually
from tests.store.conftest import unread_errors
from tests.store.pgfaultproxy import PgFaultProxy, mark_listening, proxied

pytestmark = pytest.mark.postgres

#: well below the old 11 s, well above the ~1 s close now takes, on a loaded machine
DEADLINE = 6.0


def openings(store: EventStore) -> set[asyncio.Future[Any]]:
    backend = store.backend
    assert isinstance(backend, PostgresBackend)
    return {opening for on in backend._loops.values() for opening in on.openings}


async def test_close_abandons_connections_still_being_opened(
    proxy: PgFaultProxy, direct: str, loop_errors: list[str]
) -> None:
    """An append and a read wait for connections to a server that never answers;
    close() ends both with ClosedError and returns long before connect_timeout."""
    store = EventStore(proxied(direct, proxy.port, connect_timeout=30))
    proxy.blackhole()
    append = asyncio.ensure_future(store.append("s.1", {"type": "t.x"}))
    read = asyncio.ensure_future(store.get_stream("s.1"))
    try:
        await eventually(lambda: proxy.accepted >= 1 and bool(openings(store)))
        await before_deadline(store.close(), DEADLINE)
        for call in (append, read):
            with pytest.raises(ClosedError, match="closed"):
                await before_deadline(call, DEADLINE)
        assert openings(store) == set()
    finally:
        proxy.heal()
        await store.close()
        for call in (append, read):
            call.cancel()
    await eventually(lambda: proxy.open_connections == 0)  # every attempt was cut off
    assert await unread_errors(loop_errors) == []
    async with EventStore(direct) as again:  # nothing was written
        assert await again.get_stream("s.1") == []


async def test_close_abandons_the_listener_reconnecting_to_a_silent_server(
    proxy: PgFaultProxy, direct: str, loop_errors: list[str]
) -> None:
    """A live subscription's LISTEN connection drops and reconnects to a server that
    never answers; close() does not wait for that connection, and a call made once it
    was abandoned opens none."""
    store = EventStore(proxied(direct, proxy.port, connect_timeout=30))
    listening = mark_listening(proxy)
    seen: list[Event] = []

    async def follow() -> None:
        async for event in store.subscribe(0):
            seen.append(event)

    follower = asyncio.ensure_future(follow())
    try:
        await store.append("s.3", {"type": "t.x"})
        await eventually(lambda: len(seen) == 1 and bool(listening()))
        proxy.blackhole()
        (listener,) = listening()
        listener.drop()  # it reconnects, into the black hole
        await eventually(lambda: bool(openings(store)))
        accepted = proxy.accepted
        await before_deadline(store.close(), DEADLINE)
        await before_deadline(follower, DEADLINE)  # closing the store ended the subscription
        with pytest.raises(ClosedError):
            await store.get_stream("s.3")
        assert openings(store) == set()
        assert proxy.accepted == accepted  # nothing connected after close
    finally:
        proxy.heal()
        await store.close()
        follower.cancel()
    await eventually(lambda: proxy.open_connections == 0)
    assert await unread_errors(loop_errors) == []


async def test_close_still_commits_an_append_queued_on_a_healthy_server(
    direct: str, loop_errors: list[str]
) -> None:
    """An append queued just before close() on a fresh store (its pool not yet open)
    is still committed: connections a healthy server opens at once are waited for."""
    store = EventStore(direct)
    append = asyncio.ensure_future(store.append("s.2", {"type": "t.x"}))
    await asyncio.sleep(0)  # queued, its connection not opened yet
    await before_deadline(store.close(), DEADLINE)
    result = await append
    assert result.next_expected_version == 0
    async with EventStore(direct) as again:
        assert [event.type for event in await again.get_stream("s.2")] == ["t.x"]
    assert await unread_errors(loop_errors) == []


async def test_abandoning_an_opening_as_its_socket_opens_leaves_no_error_behind(
    direct: str, loop_errors: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled as asyncio hands the new socket to asyncpg's TLS probe (the default
    sslmode=prefer), asyncpg leaves that probe's future to fail unread; the abandonment
    lands just after that step instead, and the caller gets ClosedError."""
    store = EventStore(direct)
    try:
        await store.append("s.4", {"type": "t.x"})
        backend = store.backend
        assert isinstance(backend, PostgresBackend)
        (on,) = backend._loops.values()
        await on.pool.expire_connections()  # the next call opens a new connection
        upgrade = asyncpg.connect_utils.TLSUpgradeProto
        original = upgrade.__init__
        fired: list[bool] = []

        def made(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            if not fired:
                fired.append(True)
                # next iteration, the connect waiting on that handover, as a timer
                # (close()'s grace, its bound) or another task's close() would land
                asyncio.get_running_loop().call_soon(on.openings.abandon, "abandoned by the test")

        monkeypatch.setattr(upgrade, "__init__", made)
        with pytest.raises(ClosedError, match="abandoned by the test"):
            await before_deadline(store.get_stream("s.4"), DEADLINE)
        monkeypatch.undo()
        assert fired, "the abandonment did not land while connecting"
        assert openings(store) == set()
    finally:
        await store.close()
    assert await unread_errors(loop_errors) == []
