"""Projections are exactly-once on SQLite and PostgreSQL: crash, resume, never count twice.

State and checkpoint are committed in one transaction, so whatever was applied after the
last commit is lost *together with* its position and applied again on resume.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import (
    Event,
    EventReplay,
    EventStore,
    Projection,
    SQLiteCheckpointStore,
    StoreError,
)
from tests.helpers import Crash

EVENTS = 50


@pytest.fixture
async def store(url: str) -> AsyncIterator[EventStore]:
    async with EventStore(url) as events:
        await events.append(
            "account.1", [Event("account.credited", {"amount": n}) for n in range(EVENTS)]
        )
        yield events


def ledger(store: EventStore, crash_after: int | None = None, batch_size: int = 7) -> Projection:
    projection = Projection(
        "ledger", store, initial=lambda: {"applied": [], "balance": 0}, batch_size=batch_size
    )
    calls = 0

    @projection.on("account.credited")
    def credit(state: dict[str, Any], event: Event) -> None:
        nonlocal calls
        calls += 1
        if crash_after is not None and calls > crash_after:
            raise Crash
        state["applied"].append(event.global_position)
        state["balance"] += event.data["amount"]

    return projection


async def expect_exactly_once(store: EventStore) -> None:
    async with ledger(store) as fresh:
        await fresh.run()
        positions = [e.global_position async for e in store.read_all()]
        assert fresh.state["applied"] == positions  # each event once, in order
        assert fresh.state["balance"] == sum(range(EVENTS))
        assert fresh.position == positions[-1]


async def test_crash_mid_batch_then_resume(store: EventStore) -> None:
    crashing = ledger(store, crash_after=17)  # 2 batches of 7 committed, 3 applied in memory
    with pytest.raises(Crash):
        await crashing.run()
    await crashing.close()
    async with ledger(store) as probe:
        committed = await probe.load()
        assert len(committed["applied"]) == 14
    await expect_exactly_once(store)


async def test_repeated_crashes_never_double_count(store: EventStore) -> None:
    for crash_after in (3, 9, 1, 12):
        async with ledger(store, crash_after=crash_after, batch_size=4) as crashing:
            with pytest.raises(Crash):
                await crashing.run()
    await expect_exactly_once(store)


async def test_state_lives_in_the_event_store_database(store: EventStore, url: str) -> None:
    async with ledger(store) as projection:
        await projection.run()
    if url.startswith("sqlite"):
        import sqlite3
        from contextlib import closing

        path = url[len("sqlite:///") :]
        with closing(sqlite3.connect(path)) as raw, raw:
            row = raw.execute(
                "SELECT position FROM pepperpy_checkpoints WHERE name = 'projection:ledger'"
            ).fetchone()
        assert row == (EVENTS - 1,)
    else:
        import asyncpg

        connection = await asyncpg.connect(url)
        try:
            value = await connection.fetchval(
                "SELECT position FROM pepperpy_checkpoints WHERE name = 'projection:ledger'"
            )
        finally:
            await connection.close()
        assert value == EVENTS - 1


async def test_replay_checkpoint_survives_a_new_process_object(store: EventStore) -> None:
    seen: list[int] = []
    async with EventReplay(store) as first:
        first.handle("#", lambda e: seen.append(e.data["amount"]))
        await first.replay_all(checkpoint="mailer", checkpoint_every=10)
    await store.append("account.1", Event("account.credited", {"amount": 99}))
    async with EventReplay(store) as second:
        second.handle("#", lambda e: seen.append(e.data["amount"]))
        report = await second.replay_all(checkpoint="mailer")
    assert report.replayed == 1 and seen == [*range(EVENTS), 99]


async def fail_next_checkpoint_save(
    projection: Projection, url: str
) -> Callable[[], Awaitable[None]]:
    """Make the projection's next checkpoint save fail for real; returns how to undo it.

    SQLite: the checkpoint connection turns read-only. PostgreSQL: the save waits on a row
    table lock, and the server terminates its backend meanwhile (as in a failover).
    """
    checkpoints = projection.state_store
    if isinstance(checkpoints, SQLiteCheckpointStore):
        connection = checkpoints._connect()
        connection.execute("PRAGMA query_only = ON")

        async def writable_again() -> None:
            connection.execute("PRAGMA query_only = OFF")

        return writable_again
    import asyncpg

    admin = await asyncpg.connect(url)
    await admin.execute("BEGIN")
    await admin.execute("LOCK TABLE pepperpy_checkpoints IN EXCLUSIVE MODE")

    async def terminate_the_blocked_save() -> None:
        async with asyncio.timeout(20):
            while not (
                blocked := await admin.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            ):
                await asyncio.sleep(0.01)
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid",
            [row["pid"] for row in blocked],
        )
        await admin.execute("ROLLBACK")

    terminator = asyncio.create_task(terminate_the_blocked_save())

    async def done() -> None:
        try:
            await terminator
        finally:
            await admin.close()

    return done


async def test_a_failed_commit_leaves_memory_as_on_disk(store: EventStore, url: str) -> None:
    projection = ledger(store)
    await projection.run()  # the state in memory is now the one loaded or committed
    await store.append("account.2", [Event("account.credited", {"amount": 1000}) for _ in range(3)])
    undo: list[Callable[[], Awaitable[None]]] = []

    @projection.on("account.credited")
    async def break_the_commit(state: dict[str, Any], event: Event) -> None:
        if len(state["applied"]) == EVENTS + 3 and not undo:  # this run's one commit fails
            undo.append(await fail_next_checkpoint_save(projection, url))

    with pytest.raises(StoreError):
        await projection.run()
    await undo[0]()
    async with ledger(store) as probe:
        on_disk = await probe.load()
        assert (projection.state, projection.position) == (on_disk, probe.position)
    assert len(on_disk["applied"]) == EVENTS  # nothing of the failed run
    await projection.run()  # the 3 new events once, not twice
    positions = [e.global_position async for e in store.read_all()]
    assert projection.state["applied"] == positions
    assert projection.state["balance"] == sum(range(EVENTS)) + 3000
    await projection.close()


CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pepperpy.event import EventStore, Projection

    async def main(url, kill_after):
        async with EventStore(url) as store:
            projection = Projection(
                "ledger", store, initial=lambda: {"applied": [], "balance": 0}, batch_size=7
            )
            calls = 0

            @projection.on("account.credited")
            def credit(state, event):
                nonlocal calls
                calls += 1
                if calls > kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
                state["applied"].append(event.global_position)
                state["balance"] += event.data["amount"]

            await projection.run()

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


@pytest.mark.slow
async def test_killed_process_resumes_exactly_once(store: EventStore, url: str) -> None:
    env = dict(os.environ)
    for kill_after in (10, 23):
        done = subprocess.run(
            [sys.executable, "-c", CHILD, url, str(kill_after)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == -signal.SIGKILL, done.stderr
    async with ledger(store) as probe:
        committed = await probe.load()
    # run 1 committed one batch of 7 before dying at its 11th event; run 2 resumed there and
    # committed three more batches before dying at its 24th: 28 events, each exactly once
    assert committed["applied"] == list(range(28))
    await expect_exactly_once(store)


def test_sqlite_url_is_shared_with_the_store(tmp_path: Path) -> None:
    projection = Projection("x", EventStore(f"sqlite:///{tmp_path}/e.db"))
    assert str(getattr(projection.state_store, "path", "")) == f"{tmp_path}/e.db"


async def test_follow_commits_live_events(store: EventStore) -> None:

    from tests.helpers import eventually

    projection = ledger(store)
    task = asyncio.create_task(projection.follow())
    try:
        await eventually(lambda: len(projection.state["applied"]) == EVENTS, timeout=30)
        await store.append("account.2", Event("account.credited", {"amount": 1000}))
        await eventually(
            lambda: projection.state["balance"] == sum(range(EVENTS)) + 1000, timeout=30
        )
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await projection.close()
    async with ledger(store) as reloaded:
        state = await reloaded.load()
    assert state["balance"] == sum(range(EVENTS)) + 1000 and len(state["applied"]) == EVENTS + 1


async def test_projection_keeps_up_with_concurrent_writers(store: EventStore) -> None:

    from tests.helpers import eventually

    projection = ledger(store, batch_size=5)
    follower = asyncio.create_task(projection.follow())

    async def writer(number: int) -> None:
        for i in range(30):
            await store.append(f"account.w{number}", Event("account.credited", {"amount": 1}))
            if i % 10 == 0:
                await asyncio.sleep(0)

    try:
        await asyncio.gather(*(writer(n) for n in range(4)))
        total = sum(range(EVENTS)) + 4 * 30
        await eventually(lambda: projection.state["balance"] == total, timeout=30)
    finally:
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower
        await projection.close()
    await expect_exactly_once_after_writers(store, total)


async def expect_exactly_once_after_writers(store: EventStore, total: int) -> None:
    async with ledger(store) as reloaded:
        state = await reloaded.load()
    positions = [e.global_position async for e in store.read_all()]
    assert state["balance"] == total
    assert state["applied"] == positions
