"""Closing the event store under a projection's ``follow()`` / ``serve()`` ends them,
whenever it comes.

``follow()`` runs "until cancelled (or the store is closed)" and ``serve()`` "until a
signal (or the store is closed)", logging "the store was closed". That held once the
projection was live; closed while it was still catching up (a service shut down
during its start-up catch-up), ``follow()`` raised ``ClosedError`` and ``serve()`` with
it: the service failed instead of stopping.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pepperpy.event import Event, EventStore, Projection

LOGGER = "pepperpy.event.replay"


def gated(store: EventStore, gate: asyncio.Event, started: asyncio.Event) -> Projection:
    """A projection whose handler holds the catch-up at its first event until ``gate``."""
    projection = Projection("gated", store, initial=dict, batch_size=2)

    @projection.on("n.#")
    async def add(state: dict[str, Any], event: Event) -> None:
        started.set()
        await gate.wait()
        state[str(event.global_position)] = 1

    return projection


async def close_mid_catch_up(
    store: EventStore, gate: asyncio.Event, started: asyncio.Event, task: asyncio.Future[None]
) -> None:
    await asyncio.wait_for(started.wait(), 30)
    await store.close()
    gate.set()
    await asyncio.wait_for(asyncio.wait((task,)), 30)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """An event store URL of each backend."""
    if request.param == "memory":
        return "memory://"
    value: str = request.getfixturevalue(f"{request.param}_url")
    return value


async def test_a_store_closed_during_the_catch_up_ends_follow(store_url: str) -> None:
    store = EventStore(store_url)
    await store.append("n.1", [Event("n.added") for _ in range(20)])
    gate, started = asyncio.Event(), asyncio.Event()
    projection = gated(store, gate, started)
    following = asyncio.ensure_future(projection.follow())
    try:
        await close_mid_catch_up(store, gate, started, following)
        assert following.result() is None
        # nothing half-applied is kept: the state is what was committed
        assert len(projection.state) == (projection.position or -1) + 1
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await projection.close()


async def test_a_store_closed_during_the_catch_up_ends_serve_and_it_logs_why(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    store = EventStore(store_url)
    await store.append("n.1", [Event("n.added") for _ in range(20)])
    gate, started = asyncio.Event(), asyncio.Event()
    projection = gated(store, gate, started)
    serving = asyncio.ensure_future(projection.serve(signals=()))
    try:
        await close_mid_catch_up(store, gate, started, serving)
        assert serving.result() is None
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
    last = [r.getMessage() for r in caplog.records if r.name == LOGGER][-1]
    assert "the store was closed" in last
