"""PostgreSQL store calls made in the cleanup of a cancelled task work as in any other.

A task keeps counting a cancellation it was told of (``Task.cancelling()`` stays 1) while
it cleans up after it: in ``finally:`` or ``except CancelledError:``. A call waiting for
the store's first connection when ``close()`` gives up on it (``abort`` cancels the open)
fails with ``ClosedError``; the check for "was the caller itself cancelled?" took that
count for a cancellation of the call, so made there it raised ``CancelledError`` instead.
Now only a cancellation that comes during the call counts; one that does still
propagates. Each test works in a schema of its own.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from pepperpy.event import ClosedError, EventStore
from pepperpy.event.store.postgres import PostgresBackend
from tests.helpers import eventually, in_cleanup
from tests.store.pgfaultproxy import Link, PgFaultProxy, proxied

pytestmark = pytest.mark.postgres


def hold_the_startup(proxy: PgFaultProxy, *, at: bytes = b"database\x00") -> list[Link]:
    """Silence the first connection at its startup packet (or at the first message
    holding ``at``): the store's open waits."""
    held: list[Link] = []

    def client(link: Link, data: bytes) -> str | None:
        if not held and at in data:
            held.append(link)
            return "pause"
        return None

    proxy.on_client = client  # type: ignore[assignment]
    return held


async def read_in_cleanup_while_close_gives_up(
    store: EventStore, held: list[Link], where: str, *, cancel_again: bool = False
) -> Any:
    """In the cleanup of a cancelled task, read while the store's first connection is
    being opened; cancel ``close()`` meanwhile (it then cuts everything off at once);
    return what the read returned or raised."""
    backend = store.backend
    assert isinstance(backend, PostgresBackend)

    async def meanwhile(task: asyncio.Task[None]) -> None:
        await eventually(lambda: bool(held))  # the read waits for the open
        if cancel_again:
            task.cancel()
            return
        closing = asyncio.ensure_future(store.close())
        await eventually(lambda: backend._closed)  # close() waits for its committer
        closing.cancel()  # gives up at once: the open is cancelled
        with pytest.raises(asyncio.CancelledError):
            await closing

    return await in_cleanup(where, lambda: store.get_stream("s.1"), meanwhile=meanwhile)


@pytest.mark.parametrize("where", ["finally", "except"])
async def test_a_read_in_cleanup_whose_open_close_gave_up_on_fails_with_closed_error(
    proxy: PgFaultProxy, direct: str, where: str
) -> None:
    store = EventStore(proxied(direct, proxy.port))
    # at the schema setup's first statement: close() waits for work on a connection
    # open (it abandons one still being opened at once, tests/store/test_pg_close_openings.py)
    held = hold_the_startup(proxy, at=b"to_regclass")
    try:
        async with asyncio.timeout(20):
            result = await read_in_cleanup_while_close_gives_up(store, held, where)
        assert isinstance(result, ClosedError), repr(result)
        assert "before it had connected" in str(result)
    finally:
        for link in held:
            link.drop()  # the connect under way fails at once
        async with asyncio.timeout(20):
            await store.close()


async def test_a_read_in_cleanup_cancelled_again_while_connecting_is_cancelled(
    proxy: PgFaultProxy, direct: str
) -> None:
    store = EventStore(proxied(direct, proxy.port))
    held = hold_the_startup(proxy)
    try:
        async with asyncio.timeout(20):
            result = await read_in_cleanup_while_close_gives_up(
                store, held, "finally", cancel_again=True
            )
        assert isinstance(result, asyncio.CancelledError), repr(result)
    finally:
        for link in held:
            link.resume()  # the open nobody waits for any more goes on, and succeeds
        async with asyncio.timeout(20):
            await store.close()


async def test_an_open_its_only_caller_gave_up_on_leaves_no_unread_failure(
    proxy: PgFaultProxy, direct: str
) -> None:
    """A caller cancelled while the store's first connection is opened stops waiting at
    once (``asyncio.shield`` then stops watching the open); if the open then failed and
    nobody called again, its failure was never read: 'Task exception was never
    retrieved' on the loop's exception handler."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []

    def record(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        seen.append(f"{context.get('message')}: {context.get('exception')!r}")

    previous = loop.get_exception_handler()
    loop.set_exception_handler(record)
    store = EventStore(proxied(direct, proxy.port))
    held = hold_the_startup(proxy)
    try:
        async with asyncio.timeout(20):
            read = asyncio.ensure_future(store.get_stream("s.1"))
            await eventually(lambda: bool(held))
            read.cancel()
            with pytest.raises(asyncio.CancelledError):
                await read
            backend = store.backend
            assert isinstance(backend, PostgresBackend)
            (on,) = backend._loops.values()
            opening = on.ready
            assert opening is not None and not opening.done()
            held[0].drop()  # the open fails
            await asyncio.wait([opening])  # (reading its outcome here would hide it)
            await store.close()
            del read, opening, on
            for _ in range(3):
                gc.collect()
                await asyncio.sleep(0.01)  # the loop reports what was collected
        assert seen == []
    finally:
        loop.set_exception_handler(previous)
        async with asyncio.timeout(20):
            await store.close()
