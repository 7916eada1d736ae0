"""An EventReplay (or PostgreSQL checkpoint store) dropped without close(): it is
collected, the checkpoint store's keeper task ends on its loop after dropping the
connection, and a ResourceWarning names what was left open. Closed ones warn nothing.

Before, the keeper task held the store and was held only by it: collecting a dropped
replay destroyed it while pending ("Task was destroyed but it is pending!") and left the
asyncpg connection to the garbage collector.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import weakref

import pytest

from pepperpy.event import Event, EventReplay, EventStore
from pepperpy.event._checkpoints import PostgresCheckpointStore
from tests.helpers import destroyed_pending, dropping, keeper_tasks

pytestmark = pytest.mark.postgres


async def _replayed(events: EventStore) -> EventReplay:
    replay = EventReplay(events)
    replay.handle("acct.#")(lambda event: None)
    assert (await replay.replay_all(checkpoint="c1")).replayed == 1
    return replay


async def test_a_dropped_replay_drops_its_checkpoint_connection_and_warns(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    events = EventStore(postgres_url)
    try:
        await events.append("acct.1", Event("acct.deposited", {"amount": 1}))
        replay = await _replayed(events)
        [keeper] = keeper_tasks()
        store = replay.checkpoints
        assert isinstance(store, PostgresCheckpointStore)
        [share] = store._loops.values()
        connection = share.connection
        assert connection is not None and not connection.is_closed()
        owner = weakref.ref(replay)
        held = weakref.ref(keeper)
        with dropping(owner) as messages:
            del replay, store, share, keeper
        [message] = messages
        assert re.search(r"^unclosed EventReplay .*PostgresCheckpointStore\(", message), message
        keeper = held()
        assert keeper is not None, "the keeper task was destroyed with its store"
        await asyncio.wait((keeper,))
        assert keeper.cancelled()
        assert connection.is_closed()
        del keeper
        gc.collect()
        assert destroyed_pending(caplog.records) == []
    finally:
        await events.close()


async def test_a_dropped_checkpoint_store_names_itself(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    store = PostgresCheckpointStore(postgres_url)
    await store.save("c", 1, previous=None)
    held = weakref.ref(keeper_tasks()[0])
    owner = weakref.ref(store)
    with dropping(owner) as messages:
        del store
    [message] = messages
    assert re.search(r"^unclosed PostgresCheckpointStore\(", message), message
    keeper = held()
    assert keeper is not None
    await asyncio.wait((keeper,))
    assert keeper.cancelled() and destroyed_pending(caplog.records) == []


async def test_a_closed_replay_warns_nothing_and_leaves_no_keeper(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    events = EventStore(postgres_url)
    try:
        await events.append("acct.1", Event("acct.deposited", {"amount": 1}))
        replay = await _replayed(events)
        [keeper] = keeper_tasks()
        await replay.close()
        await asyncio.wait((keeper,))
        owner = weakref.ref(replay)
        with dropping(owner) as messages:
            del replay
        assert messages == []
        assert keeper_tasks() == [] and destroyed_pending(caplog.records) == []
    finally:
        await events.close()
