"""Closing a store whose subscriptions wait on other event loops, or on closed ones.

A thread may stop its loop and close it without cancelling its tasks; a subscription it
left waiting will never run again. Closing the store must still end the subscriptions
it can, skip that one, and release the backend (SPEC: closing a store ends its open
subscriptions).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import warnings
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import Event, EventStore
from tests.helpers import LoopThread, database_store_urls


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_store_urls(request, tmp_path)


def _follow(store: EventStore, seen: threading.Event) -> Coroutine[Any, Any, None]:
    async def follow() -> None:
        async for _ in store.subscribe(from_position=0):
            seen.set()

    return follow()


def test_close_releases_the_backend_when_a_subscription_waits_on_a_closed_loop(
    store_url: str,
) -> None:
    store = EventStore(store_url)
    dead = LoopThread()
    dead.run(store.append("cl", Event("a.b", {})))
    seen = threading.Event()
    dead.submit(_follow(store, seen))
    assert seen.wait(10)
    time.sleep(0.2)  # it waits for live appends now
    dead.kill()

    async def later() -> None:
        try:
            await store.append("cl", Event("a.c", {}))  # the store itself still works
            await asyncio.wait_for(store.close(), 10)  # RuntimeError: Event loop is closed
            await asyncio.wait_for(store.close(), 10)
        finally:
            dead.bury()

    # PostgreSQL: the dead loop's connections are terminated, but a transport closes its
    # socket in a callback of its loop, which never runs: its socket warns when collected,
    # which may happen at any allocation from here on (the sockets' ResourceWarning is
    # the dead loop's business, not this test's); collect them here, not in a later test
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        asyncio.run(later())
        gc.collect()
    assert store.closed
    backend: Any = store._backend
    assert backend._closed  # released, not just marked closed
    writer = getattr(backend, "_writer", None)
    assert writer is None or not writer.is_alive()  # SQLite: its writer thread ended


def test_close_from_one_thread_ends_a_subscription_waiting_on_another(store_url: str) -> None:
    store = EventStore(store_url)
    other = LoopThread()
    try:
        other.run(store.append("cl", Event("a.b", {})))
        seen = threading.Event()
        following = other.submit(_follow(store, seen))
        assert seen.wait(10)
        time.sleep(0.2)  # it waits for live appends now

        async def main() -> None:
            await asyncio.wait_for(store.close(), 10)
            await asyncio.wait_for(asyncio.wrap_future(following), 2)  # it ended

        asyncio.run(main())
    finally:
        other.end()
