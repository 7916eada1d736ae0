"""Projection.close() ends the projection's follow() under way, and waits for its run()
and rebuild() calls under way.

It used to close the state store and leave the follower (or the run) going: its next
commit opened the state store again, whose connections nothing closed, and it went on
applying events after ``async with Projection(...)`` had ended.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pepperpy.event import ClosedError, Event, EventStore, Projection, SQLiteCheckpointStore
from tests.helpers import eventually


def counter(store: EventStore) -> Projection:
    projection = Projection("counter", store, initial=lambda: {"n": 0})
    projection.on("tick.*", lambda state, event: {"n": state["n"] + 1})
    return projection


async def test_close_ends_a_live_follow_after_its_commit(any_store_url: str) -> None:
    async with EventStore(any_store_url) as store:
        await store.append("clock.1", [Event("tick.tock") for _ in range(5)])
        projection = counter(store)
        follower = asyncio.ensure_future(projection.follow())
        async with asyncio.timeout(30):
            assert await projection.wait_until(4) == 4  # live
            await projection.close()
            assert await follower is None  # it returned, as when the store is closed
        await store.append("clock.1", [Event("tick.tock") for _ in range(3)])
        await asyncio.sleep(0.3)
        assert (projection.state, projection.position) == ({"n": 5}, 4)  # nothing after
        async with counter(store) as saved:
            assert await saved.load() == {"n": 5}
            assert saved.position == 4
        # the object can be used again: a run resumes from the saved state
        report = await projection.run()
        assert (report.replayed, projection.state) == (3, {"n": 8})
        await projection.close()


async def test_close_as_a_context_manager_ends_the_follower_started_inside(
    any_store_url: str,
) -> None:
    async with EventStore(any_store_url) as store:
        await store.append("clock.1", [Event("tick.tock") for _ in range(700)])
        async with counter(store) as projection:
            follower = asyncio.ensure_future(projection.follow())
            await asyncio.sleep(0)  # it has begun: loading, or catching up
        async with asyncio.timeout(30):
            assert await follower is None
        async with counter(store) as saved:
            state = await saved.load()
            # what was committed is consistent: one tick per event up to the position
            assert state["n"] == (0 if saved.position is None else saved.position + 1)


async def test_close_ends_a_wait_until_under_way(any_store_url: str) -> None:
    """It used to poll on, opening the state store that close() had just closed."""
    async with EventStore(any_store_url) as store:
        await store.append("clock.1", Event("tick.tock"))
        projection = counter(store)
        waiting = asyncio.ensure_future(projection.wait_until(0))  # nobody runs it
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await projection.close()
        async with asyncio.timeout(30):
            with pytest.raises(ClosedError, match="global position 0: the projection was closed"):
                await waiting
        await projection.close()


def held_at(store: EventStore, at: int) -> tuple[Projection, asyncio.Event, asyncio.Event]:
    """A counter committing each event, whose handler waits at its ``at``-th event until
    ``release`` is set (``holding`` is set then)."""
    projection = Projection("counter", store, initial=lambda: {"n": 0}, batch_size=1)
    holding, release = asyncio.Event(), asyncio.Event()

    async def count(state: dict[str, int], event: Event) -> dict[str, int]:
        if state["n"] == at:
            holding.set()
            await release.wait()
        return {"n": state["n"] + 1}

    projection.on("tick.*", count)
    return projection, holding, release


@pytest.mark.parametrize("call", ["run", "rebuild"])
async def test_close_waits_for_a_run_under_way_which_ends_at_its_head(
    any_store_url: str, call: str
) -> None:
    """close() left a run() going: it committed on, opening the state store close() had
    closed (on PostgreSQL a connection nothing closed) after the block had ended. It now
    waits for the run, which ends at the head it began with, as a follow()'s catch-up
    does, then closes the state store."""
    async with EventStore(any_store_url) as store:
        await store.append("clock.1", [Event("tick.tock") for _ in range(6)])
        projection, holding, release = held_at(store, 2)
        running = asyncio.ensure_future(getattr(projection, call)())
        async with asyncio.timeout(30):
            await holding.wait()
            await store.append("clock.1", Event("tick.tock"))  # past its head: not applied
            closing = asyncio.ensure_future(projection.close())
            # bounded: close() must still be waiting for the held run (the old one was done)
            await asyncio.wait({closing}, timeout=0.5)
            assert not closing.done()
            release.set()
            await closing
            assert running.done()  # close() returned after the run
            report = running.result()
        assert (report.replayed, projection.state, projection.position) == (6, {"n": 6}, 5)
        assert projection._state_store is None  # closed, and not opened again since
        async with counter(store) as saved:
            assert await saved.load() == {"n": 6}
            assert saved.position == 5


async def test_close_from_a_runs_handler_does_not_wait_for_that_run(any_store_url: str) -> None:
    async with EventStore(any_store_url) as store:
        await store.append("clock.1", [Event("tick.tock") for _ in range(3)])
        projection = Projection("counter", store, initial=lambda: {"n": 0})
        closed: list[bool] = []

        async def count(state: dict[str, int], event: Event) -> dict[str, int]:
            if not closed:
                async with asyncio.timeout(30):
                    await projection.close()  # would wait for itself for ever
                closed.append(True)
            return {"n": state["n"] + 1}

        projection.on("tick.*", count)
        async with asyncio.timeout(30):
            report = await projection.run()
        assert (report.replayed, projection.state) == (3, {"n": 3})
        await projection.close()


async def test_close_waits_for_a_load_under_way(tmp_path: Path) -> None:
    """A load() under way went on after close(), opening the state store close() had
    just closed (a connection nothing closed). close() now waits for it too. The load
    is held where it reads the SQLite state store, behind the lock around its
    connection's use (held here: a read takes no lock of SQLite's another writer could
    hold, and makes no table to wait on)."""
    path = tmp_path / "events.db"
    async with EventStore(f"sqlite:///{path}") as store:
        await store.append("clock.1", Event("tick.tock"))
        projection = counter(store)
        state_store = projection.state_store
        assert isinstance(state_store, SQLiteCheckpointStore)
        state_store._lock.acquire()  # the load's read waits for it, in its worker thread
        try:
            loading = asyncio.ensure_future(projection.load())
            await eventually(lambda: len(projection._runs) == 1)
            shutting = asyncio.ensure_future(projection.close())
            # bounded: close() must still be waiting for the held load
            await asyncio.wait({shutting}, timeout=0.5)
            assert not shutting.done() and not loading.done()
        finally:
            state_store._lock.release()
        async with asyncio.timeout(30):
            await shutting
        assert loading.done() and loading.result() == {"n": 0}
        assert projection._state_store is None  # closed, and not opened again since
        assert state_store._db is None


async def test_close_from_a_followers_handler_with_two_followers_does_not_hang(
    sqlite_url: str,
) -> None:
    """close() called by a handler of one follow() waited for the other follow() of the
    projection, which waited for that handler's turn: neither ever went on. It now
    waits for neither; both followers return, and the one whose turn came after the
    close applies nothing."""
    async with EventStore(sqlite_url) as store:
        await store.append("clock.1", Event("tick.tock"))
        projection = Projection("counter", store, initial=lambda: {"n": 0})
        outcome: list[str] = []

        async def count(state: dict[str, int], event: Event) -> dict[str, int]:
            if state["n"] == 1 and not outcome:  # the live event
                try:
                    async with asyncio.timeout(5):  # bounded: the old close() never returned
                        await projection.close()
                    outcome.append("closed")
                except TimeoutError:
                    outcome.append("hung")
            return {"n": state["n"] + 1}

        projection.on("tick.*", count)
        followers = [asyncio.ensure_future(projection.follow()) for _ in range(2)]
        async with asyncio.timeout(30):
            await eventually(lambda: len(projection._live) == 2)  # both live
            await store.append("clock.1", Event("tick.tock"))
            results = await asyncio.gather(*followers, return_exceptions=True)
        assert outcome == ["closed"]
        assert results == [None, None]
        async with Projection("counter", store, initial=lambda: {"n": 0}) as saved:
            assert await saved.load() == {"n": 2}  # the live event applied once
            assert saved.position == 1
        await projection.close()
