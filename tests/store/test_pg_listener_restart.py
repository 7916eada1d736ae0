"""A LISTEN task that ends by a bug is reported and replaced, not silently lost.

The listener reconnects after every connection error on its own; only an exception
outside the driver's errors (a bug) or a cancellation from outside ends its task. Live
delivery would then fall back to re-reading every 0.5 s for the rest of the store's life
without a word: the store's next wait logs why it ended and starts a new one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
import pytest

from pepperpy.event import Event, EventStore
from pepperpy.event.store import _pg_listen
from tests.helpers import eventually

pytestmark = pytest.mark.postgres

LISTENER = "pepperpy-event-listener"


async def _listeners(database: str) -> int:
    admin = await asyncpg.connect(database)
    try:
        count: int = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = $1 AND datname = current_database()",
            LISTENER,
        )
    finally:
        await admin.close()
    return count


async def test_a_listen_task_that_failed_is_logged_and_started_again(
    database: str, direct: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tune = _pg_listen.tune_socket
    failures: list[int] = []

    def buggy_once(connection: Any, timeout: float) -> None:
        if not failures:
            failures.append(1)
            raise RuntimeError("a bug in the listener")
        tune(connection, timeout)

    monkeypatch.setattr(_pg_listen, "tune_socket", buggy_once)
    caplog.set_level(logging.WARNING, logger="pepperpy.event.store")
    async with EventStore(direct) as store, EventStore(direct) as writer:
        subscription = store.subscribe()
        for number in range(3):  # each live event is a wait of the store
            await writer.append("live.1", Event("tick", {"n": number}))
            event = await anext(subscription)
            assert event.data == {"n": number}
        assert failures == [1]
        listeners = await _listeners(database)
        for _ in range(100):  # the store's next waits start a new listener
            if listeners >= 1:
                break
            await writer.append("live.1", Event("tick", {"n": -1}))
            await anext(subscription)
            listeners = await _listeners(database)
        assert listeners >= 1, "no LISTEN connection after the task failed"
        await subscription.aclose()
    failed = [r for r in caplog.records if "the LISTEN task failed" in r.getMessage()]
    assert [(r.levelname, r.getMessage()) for r in failed] == [
        ("ERROR", "PostgreSQL: the LISTEN task failed; starting a new one")
    ]
    assert failed[0].exc_info is not None and "a bug in the listener" in str(failed[0].exc_info[1])


async def test_closing_a_store_whose_listen_task_failed_reports_it_and_closes(
    direct: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[int] = []

    def buggy(connection: Any, timeout: float) -> None:
        failures.append(1)
        raise RuntimeError("a bug in the listener")

    monkeypatch.setattr(_pg_listen, "tune_socket", buggy)
    caplog.set_level(logging.WARNING, logger="pepperpy.event.store")
    store = EventStore(direct)
    await store.append("live.1", Event("tick", {}))
    await store.backend.wait(10**9)  # starts the listener, which fails; no wait follows
    await eventually(lambda: bool(failures))
    await asyncio.wait_for(store.close(), 10)  # not raising the listener's error
    assert store.closed
    failed = [r for r in caplog.records if "the LISTEN task" in r.getMessage()]
    assert [(r.levelname, r.getMessage()) for r in failed] == [
        ("ERROR", "PostgreSQL: the LISTEN task failed")
    ]
