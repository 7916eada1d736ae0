"""Stopping a subscription wakes a read under way: it does not wait for the read to time out.

A subscription's ``aclose()`` (and the store's ``close()``) woke a wait for live appends
or a backoff, but not a ``read_all`` in flight. During a partition that read hangs until
``command_timeout`` (and is then made once more on a new connection), so a processor's
``attachment.stop()`` took 14 s in a soak and 28.5 s in a repro, with nothing being
handled. The read is now raced against the subscription's stop: abandoning it loses
nothing (nothing of it was handed out), its connection is cut off rather than kept, and
the store goes on working.

PostgreSQL through the fault proxy, ``command_timeout=20``: pool connections go silent
(the listener's does not, so the NOTIFY of an append made straight to the server starts
a read that cannot be answered). Each stop must return well within the 20 s the read
would wait; the bound is generous (5 s) and says nothing about speed.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pepperpy.event import Event, EventProcessor, EventStore
from tests.helpers import eventually
from tests.store.pgfaultproxy import Link, PgFaultProxy, proxied

LISTENER = "pepperpy-event-listener"
#: a stop must return well within the read's command_timeout (20 s)
STOP_BOUND = 5.0


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What the running loop's exception handler is given during the test (a task that
    failed with nobody to read its error, say)."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: seen.append(context))
    yield seen
    loop.set_exception_handler(previous)


def silence_reads(proxy: PgFaultProxy) -> list[Link]:
    """The next pool connection to send a statement with parameters (a read: Parse or
    Bind, not the simple query a release resets a connection with) goes silent; the
    listener's is left alone, so NOTIFY still arrives, and so are the others, whose
    graceful close at the store's close() is another matter. Returns [the link
    silenced] once it is."""
    silenced: list[Link] = []

    def client(link: Link, data: bytes) -> str | None:
        if silenced:
            return "pause" if link is silenced[0] else None
        if link.application == LISTENER or data[:1] not in (b"P", b"B"):
            return None
        silenced.append(link)
        return "pause"

    proxy.on_client = client  # type: ignore[assignment]
    return silenced


def stores(proxy: PgFaultProxy, direct: str) -> tuple[EventStore, EventStore]:
    """A store read through the proxy (reads wait up to 20 s), and one writing straight
    to the server, with one event in it."""
    return EventStore(proxied(direct, proxy.port, command_timeout=20)), EventStore(direct)


async def start_silent_read(
    proxy: PgFaultProxy, writer: EventStore, caught_up: Callable[[], bool]
) -> list[Link]:
    """Once the subscriber has caught up and listens, silence the pool and append: the
    subscriber's read of the new event is then under way, unanswered."""
    await eventually(lambda: caught_up() and bool(proxy.links(LISTENER)), timeout=15)
    silenced = silence_reads(proxy)
    await writer.append("s.1", Event("t.x"))
    await eventually(lambda: bool(silenced), timeout=15)  # the read went out
    await asyncio.sleep(0.3)  # and sits there
    return silenced


async def timed(stop: Callable[[], Any]) -> float:
    started = time.monotonic()
    async with asyncio.timeout(25):  # the old code waited for the read: 20 s, then more
        await stop()
    return time.monotonic() - started


async def after_stop(
    proxy: PgFaultProxy, reader: EventStore, writer: EventStore, silenced: list[Link]
) -> None:
    """The abandoned read's connection was cut off, not kept; once the partition is
    over the store still reads, and closing it leaves no connection open."""
    proxy.on_client = None
    for link in silenced:
        link.resume()
    await eventually(lambda: all(link.closed for link in silenced), timeout=10)
    if not reader.closed:
        async with asyncio.timeout(10):
            events = await reader.read_all(0)
        assert [event.global_position for event in events] == [0, 1]
    async with asyncio.timeout(15):
        await reader.close()
    await eventually(lambda: proxy.open_connections == 0, timeout=10)
    await writer.close()


async def test_aclose_wakes_a_read_under_way(
    proxy: PgFaultProxy, direct: str, loop_errors: list[dict[str, Any]]
) -> None:
    reader, writer = stores(proxy, direct)
    await writer.append("s.1", Event("t.x"))
    subscription = reader.subscribe(0)
    seen: list[int] = []

    async def follow() -> None:
        async for event in subscription:
            assert event.global_position is not None
            seen.append(event.global_position)

    follower = asyncio.ensure_future(follow())
    try:
        silenced = await start_silent_read(proxy, writer, lambda: seen == [0])
        assert not follower.done()
        took = await timed(subscription.aclose)
        async with asyncio.timeout(STOP_BOUND):
            await follower  # the async for ends, without an error
        assert took < STOP_BOUND, f"aclose() took {took:.1f} s"
        assert seen == [0]  # nothing of the abandoned read was handed out
        await after_stop(proxy, reader, writer, silenced)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await reader.close()
        await writer.close()
    gc.collect()  # a task nobody read the error of is reported as it is collected
    assert loop_errors == []


async def test_a_processor_stop_wakes_a_read_under_way(
    proxy: PgFaultProxy, direct: str, loop_errors: list[dict[str, Any]]
) -> None:
    """The soak's case: ``attachment.stop()`` with no event being handled."""
    reader, writer = stores(proxy, direct)
    await writer.append("s.1", Event("t.x"))
    seen: list[int] = []
    processor = EventProcessor()
    processor.handle("#", lambda event: seen.append(event.global_position))
    attachment = processor.attach(reader)
    try:
        silenced = await start_silent_read(proxy, writer, lambda: seen == [0])
        took = await timed(attachment.stop)
        assert took < STOP_BOUND, f"attachment.stop() took {took:.1f} s"
        assert not attachment.running and attachment.last_global_position == 0
        await after_stop(proxy, reader, writer, silenced)
    finally:
        await attachment.stop()
        await reader.close()
        await writer.close()
    gc.collect()  # a task nobody read the error of is reported as it is collected
    assert loop_errors == []


async def test_closing_the_store_wakes_a_read_under_way(
    proxy: PgFaultProxy, direct: str, loop_errors: list[dict[str, Any]]
) -> None:
    reader, writer = stores(proxy, direct)
    await writer.append("s.1", Event("t.x"))
    seen: list[int] = []

    async def follow() -> None:
        async for event in reader.subscribe(0):
            assert event.global_position is not None
            seen.append(event.global_position)

    follower = asyncio.ensure_future(follow())
    try:
        silenced = await start_silent_read(proxy, writer, lambda: seen == [0])
        took = await timed(reader.close)
        async with asyncio.timeout(STOP_BOUND):
            await follower  # ended by the close, without an error
        assert took < STOP_BOUND, f"close() took {took:.1f} s"
        assert seen == [0]
        await after_stop(proxy, reader, writer, silenced)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await reader.close()
        await writer.close()
    gc.collect()  # a task nobody read the error of is reported as it is collected
    assert loop_errors == []


async def test_aclose_from_another_loop_wakes_a_read_under_way() -> None:
    """The stop is the subscription's own waiter, woken on the loop that reads (here a
    memory backend whose read never returns until cancelled)."""
    from pepperpy.event.store.memory import MemoryBackend

    class StuckBackend(MemoryBackend):
        def __init__(self) -> None:
            super().__init__()
            self.stuck = False
            self.reading = False
            self.abandoned = 0

        async def read_all(self, from_position: int, limit: int) -> Any:
            if not self.stuck:
                return await super().read_all(from_position, limit)
            self.reading = True
            try:
                await asyncio.Event().wait()  # never set: a server that does not answer
            finally:
                self.abandoned += 1
            return await super().read_all(from_position, limit)

    backend = StuckBackend()
    store = EventStore(backend)
    await store.append("s.1", Event("t.x"))
    subscription = store.subscribe(0)
    assert (await anext(subscription)).global_position == 0
    pending = asyncio.ensure_future(anext(subscription))  # waits for live appends
    await asyncio.sleep(0.05)
    backend.stuck = True
    await store.append("s.1", Event("t.x"))  # ends the wait: the read then gets no answer
    await eventually(lambda: backend.reading)
    assert not pending.done()
    await asyncio.to_thread(asyncio.run, subscription.aclose())  # another thread's loop
    async with asyncio.timeout(STOP_BOUND):
        with pytest.raises(StopAsyncIteration):
            await pending
    assert backend.abandoned == 1  # the read was cancelled, not left running
    await store.close()
