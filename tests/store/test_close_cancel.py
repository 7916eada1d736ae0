"""EventStore.close() cancelled or called twice: the backend is released all the same.

The store used to mark itself closed before awaiting its backend's close(), so after a
cancelled close() every later call returned at once and the backend was never released
(with SQLite: its read threads and connections stayed open; cancellation audit).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pepperpy.event import ClosedError, EventStore
from pepperpy.event.store import MemoryBackend
from pepperpy.event.store.sqlite import SQLiteBackend


class SlowClose(MemoryBackend):
    """A backend whose close() waits at ``gate``: cancelled there, it has released nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.calls = 0
        self.released = 0

    async def close(self) -> None:
        self.calls += 1
        await self.gate.wait()
        await super().close()
        self.released += 1


async def test_a_close_cancelled_before_the_backend_was_released_is_finished_by_the_next() -> None:
    backend = SlowClose()
    store = EventStore(backend)
    first = asyncio.ensure_future(store.close())
    await asyncio.sleep(0)  # inside the backend's close()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert store.closed and backend.released == 0
    with pytest.raises(ClosedError):
        await store.append("x.1", {"type": "t"})  # closed from the first call on
    backend.gate.set()
    await asyncio.wait_for(store.close(), 10)
    assert backend.released == 1
    await store.close()  # released: the backend is not asked again
    assert backend.calls == 2


async def test_a_close_whose_backend_failed_is_tried_again_by_the_next() -> None:
    class FailsOnce(MemoryBackend):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        async def close(self) -> None:
            self.calls += 1
            if self.calls == 1:
                raise OSError("could not release")
            await super().close()

    backend = FailsOnce()
    store = EventStore(backend)
    with pytest.raises(OSError):
        await store.close()
    await store.close()
    await store.close()
    assert backend.calls == 2


async def test_concurrent_closes_of_a_sqlite_store_all_return_once_it_is_released(
    tmp_path: Path,
) -> None:
    store = EventStore(f"sqlite:///{tmp_path}/events.db")
    await store.append("x.1", {"type": "t"})
    await store.get_stream("x.1")
    backend = store.backend
    assert isinstance(backend, SQLiteBackend)
    [(_, gate)] = backend._connections
    gate.acquire()  # as a read under way does: the release waits for it
    try:
        closes = [asyncio.ensure_future(store.close()) for _ in range(3)]
        for _ in range(10):
            await asyncio.sleep(0)
        assert not any(close.done() for close in closes), "a close() returned before"
    finally:
        gate.release()
    await asyncio.wait_for(asyncio.gather(*closes), 10)
    assert backend._connections == []
