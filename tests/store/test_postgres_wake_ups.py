"""PostgreSQL live reads never sleep past a commit they were notified of.

``PostgresBackend.wait`` is woken by NOTIFY. A notification that arrives while a caller is
not waiting must not be lost for it: neither while the caller reads (another
subscription on the same loop was waiting, took the wake-up, and the caller then slept
until the next append), nor while ``wait`` itself reads the head after earlier news (it
then slept with the newer event committed). Both stalled a live subscription, a
projection's ``follow()`` or an attachment behind the head until some later append; a
projection racing four writers stopped four events short for as long as nothing more
was written.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pepperpy.event import Event, EventStore

pytest.importorskip("asyncpg")


async def _listening(store: EventStore, position: int) -> tuple[Any, Any, asyncio.Future[None]]:
    """A ``wait(position)`` of ``store``'s backend, once its listener is connected."""
    backend = store.backend
    waiting = asyncio.ensure_future(backend.wait(position))
    for _ in range(500):  # bounded: until LISTEN is in place (the first wait returns then)
        on = backend._here()
        if on.connected and waiting.done():
            break
        await asyncio.sleep(0.01)
    await waiting
    on = backend._here()
    assert on.connected, "the listener never connected"
    return backend, on, asyncio.ensure_future(backend.wait(position))


async def test_news_taken_by_another_waiter_is_not_lost_for_a_reading_caller(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with EventStore(postgres_url) as store, EventStore(postgres_url) as other:
        await store.append("s.1", Event("n.added"))  # position 0
        backend, on, first = await _listening(store, 1)
        for _ in range(100):  # until the first caller sleeps on the loop's wake-up
            if on.changed is not None:
                break
            await asyncio.sleep(0.01)
        # the commit notifies two channels (see _pg_schema.CHANNEL_OF_TABLES); let one
        # notification through, as from a writer of a version that notifies one, or as
        # when the waiting caller is back asleep before the second arrives
        calls: list[None] = []
        real_notified = type(on).notified

        def once(self: Any) -> None:
            if self is not on or not calls:
                real_notified(self)
            if self is on:
                calls.append(None)

        monkeypatch.setattr(type(on), "notified", once)
        try:
            await other.append("s.1", Event("n.added"))  # position 1: NOTIFY
            async with asyncio.timeout(10):
                await first  # the waiting caller took the wake-up
            for _ in range(200):  # bounded: until the second notification was dropped too
                if len(calls) >= 2:
                    break
                await asyncio.sleep(0.01)
        finally:
            monkeypatch.setattr(type(on), "notified", real_notified)
        # a second caller was reading meanwhile (saw nothing new) and waits only now
        async with asyncio.timeout(10):
            await backend.wait(1)  # the old code slept here until the next append
        assert backend._status.head == 2


async def test_news_during_the_head_read_of_wait_is_not_lost(postgres_url: str) -> None:
    async with EventStore(postgres_url) as store, EventStore(postgres_url) as other:
        await store.append("s.1", Event("n.added"))  # position 0
        backend, on, first = await _listening(store, 1)
        await other.append("s.1", Event("n.added"))  # position 1
        async with asyncio.timeout(10):
            await first
        on.missed = True  # news came while nobody waited: wait() reads the head first
        real_head = backend.head

        async def head_then_a_commit() -> Any:
            last = await real_head()
            await other.append("s.1", Event("n.added"))  # position 2, notified meanwhile
            for _ in range(500):  # bounded: until its notification is here
                if on.missed:
                    break
                await asyncio.sleep(0.01)
            assert on.missed, "the notification never came"
            return last

        backend.head = head_then_a_commit
        try:
            async with asyncio.timeout(10):
                await backend.wait(2)  # the old code slept with position 2 committed
        finally:
            backend.head = real_head
        assert backend._status.head == 3
