"""PostgreSQL calls cancelled at the two points where asyncpg goes on without its caller.

Giving a connection back to the pool runs its reset in a task asyncpg shields from the
caller's cancellation, and opening a connection negotiates TLS through a future only the
opening task reads. A cancellation landing there left errors nobody read ('Task exception
was never retrieved', 'Future exception was never retrieved' on the loop's exception
handler): a sweep of cancelled reads met them in a few calls of every hundred, also in
subscriptions, replays and projections (cancellation audit, repro_2). Each test lands its
cancellation at one of those points on purpose and records every call of the loop's
exception handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import asyncpg.connect_utils
import pytest

from pepperpy.event import EventStore
from pepperpy.event._checkpoints import PostgresCheckpointStore
from pepperpy.event.store.postgres import PostgresBackend
from tests.helpers import eventually
from tests.store.conftest import unread_errors
from tests.store.pgfaultproxy import Link, PgFaultProxy, proxied

pytestmark = pytest.mark.postgres

LISTENER = "pepperpy-event-listener"


def pool_of(store: EventStore) -> Any:
    backend = store.backend
    assert isinstance(backend, PostgresBackend)
    (on,) = backend._loops.values()
    return on.pool


def pause_the_reset(proxy: PgFaultProxy) -> list[Link]:
    """Silence the first pooled connection that sends asyncpg's reset (its release)."""
    paused: list[Link] = []

    def client(link: Link, data: bytes) -> str | None:
        if not paused and b"RESET ALL" in data and link.application != LISTENER:
            paused.append(link)
            return "pause"
        return None

    proxy.on_client = client  # type: ignore[assignment]
    return paused


async def test_a_read_cancelled_while_its_connection_is_released_lets_the_release_finish(
    proxy: PgFaultProxy, direct: str, loop_errors: list[str]
) -> None:
    """The cancellation used to cut the connection off under asyncpg's shielded reset,
    whose failure nobody read. The release that started now finishes in the background:
    the caller is cancelled at once, and the connection goes back to the pool."""
    store = EventStore(proxied(direct, proxy.port, command_timeout=5))
    try:
        async with asyncio.timeout(20):
            await store.append("s.1", {"type": "t.x"})
            paused = pause_the_reset(proxy)
            read = asyncio.ensure_future(store.get_stream("s.1"))
            await eventually(lambda: bool(paused))
            read.cancel()
            with pytest.raises(asyncio.CancelledError):
                await read  # at once: the reset is still held
            pool = pool_of(store)
            assert pool.get_idle_size() == 0
            opened = proxy.accepted
            paused[0].resume()
            await eventually(lambda: pool.get_idle_size() == 1)
            assert [event.type for event in await store.get_stream("s.1")] == ["t.x"]
            assert proxy.accepted == opened  # on the connection given back
            assert await unread_errors(loop_errors) == []
    finally:
        await store.close()


async def test_a_release_left_to_finish_is_still_cut_off_when_the_server_is_silent(
    proxy: PgFaultProxy, direct: str, loop_errors: list[str]
) -> None:
    """The release the cancelled caller left behind stays under the command_timeout
    watchdog: a reset nobody answers is cut off, and its error is read."""
    store = EventStore(proxied(direct, proxy.port, command_timeout=1))
    try:
        async with asyncio.timeout(20):
            await store.append("s.1", {"type": "t.x"})
            paused = pause_the_reset(proxy)
            read = asyncio.ensure_future(store.get_stream("s.1"))
            await eventually(lambda: bool(paused))
            read.cancel()
            with pytest.raises(asyncio.CancelledError):
                await read
            pool = pool_of(store)
            await eventually(lambda: pool.get_size() == 0)  # the watchdog cut it off
            assert await unread_errors(loop_errors) == []
            assert [event.type for event in await store.get_stream("s.1")] == ["t.x"]
    finally:
        await store.close()


async def cancelled_while_connecting(
    monkeypatch: pytest.MonkeyPatch, call: Callable[[], Awaitable[Any]]
) -> None:
    """Run ``call`` in a task of its own and cancel it as its connection's socket opens,
    where asyncpg asks the server for TLS (the default sslmode=prefer): right between the
    socket and the TLS answer. The task must end cancelled."""
    upgrade = asyncpg.connect_utils.TLSUpgradeProto
    original = upgrade.__init__
    fired: list[bool] = []
    gate = asyncio.Event()

    async def gated() -> Any:
        await gate.wait()
        return await call()

    caller = asyncio.ensure_future(gated())

    def made(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if not fired and not caller.done():
            fired.append(True)
            caller.cancel()

    monkeypatch.setattr(upgrade, "__init__", made)
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert fired, "the cancellation did not land while connecting"
    monkeypatch.undo()


async def test_a_call_cancelled_while_its_connection_is_opened_leaves_no_error_behind(
    direct: str, loop_errors: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancelled connect left asyncpg's TLS future to fail unread. The connect now goes
    on without its caller, and the connection it makes is closed."""
    store = EventStore(direct)
    try:
        async with asyncio.timeout(20):
            await store.append("s.1", {"type": "t.x"})
            pool = pool_of(store)
            await pool.expire_connections()  # the next call opens a new connection
            await cancelled_while_connecting(monkeypatch, lambda: store.get_stream("s.1"))
            await eventually(lambda: pool.get_size() == 0)
            assert [event.type for event in await store.get_stream("s.1")] == ["t.x"]
        assert await unread_errors(loop_errors) == []
    finally:
        await store.close()


async def test_a_checkpoint_call_cancelled_while_connecting_leaves_no_error_behind(
    direct: str, loop_errors: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoints = PostgresCheckpointStore(direct)
    try:
        async with asyncio.timeout(20):
            await cancelled_while_connecting(monkeypatch, lambda: checkpoints.load("c"))
            await checkpoints.save("c", 1, None, previous=None)
            saved = await checkpoints.load("c")
            assert saved is not None and saved.position == 1
        assert await unread_errors(loop_errors) == []
    finally:
        await checkpoints.close()


async def test_close_abandons_a_connection_a_cancelled_caller_left_opening(
    proxy: PgFaultProxy, direct: str, loop_errors: list[str]
) -> None:
    """close() closes every connection of its loop: one still being opened for a caller
    cancelled meanwhile is abandoned (it used to be waited for, up to connect_timeout),
    its socket closed, and no task of the store outlives it
    (tests/store/test_pg_close_openings.py)."""
    store = EventStore(proxied(direct, proxy.port))
    async with asyncio.timeout(20):
        await store.append("s.1", {"type": "t.x"})
        await pool_of(store).expire_connections()  # the next call opens a new connection
        held: list[Link] = []

        def hold_the_startup(link: Link, data: bytes) -> str | None:
            if not held and b"database\x00" in data:
                held.append(link)
                return "pause"
            return None

        proxy.on_client = hold_the_startup  # type: ignore[assignment]
        read = asyncio.ensure_future(store.get_stream("s.1"))
        await eventually(lambda: bool(held))
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await read  # at once, although the connection is still being opened
        backend = store.backend
        assert isinstance(backend, PostgresBackend)
        (on,) = backend._loops.values()
        (opening,) = on.openings
        await store.close()  # at once: it does not wait for the connection being opened
        assert opening.cancelled() and not on.openings
        held[0].resume()  # the proxy reads on, and finds the client gone
        await eventually(lambda: held[0].closed)
    assert await unread_errors(loop_errors) == []
