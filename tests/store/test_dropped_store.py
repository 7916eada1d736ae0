"""A store dropped without ``close()`` is collected, released, and says so.

Its background threads and tasks (SQLite's writer thread, PostgreSQL's committer and
listener) used to hold the backend through bound methods, so it was never collected:
the thread, the tasks and the connections lived as long as the process, silently. Now
they hold only what they need, and the backend's finalizer releases everything and
emits a ``ResourceWarning`` naming the store, as an unclosed socket or event loop does.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import threading
import warnings
import weakref
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pepperpy.event import AppendResult, ClosedError, EventStore
from pepperpy.event._loops import warn_dropped
from pepperpy.event.store._records import event_records
from pepperpy.event.store.base import ANY, redact_url
from pepperpy.event.store.postgres import PostgresBackend
from pepperpy.event.store.sqlite import SQLiteBackend
from tests.helpers import eventually


def _store_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("pepperpy-sqlite")}


async def _drop(
    holder: list[Any], name: str | None
) -> tuple[list[warnings.WarningMessage], list[weakref.ref[Any]]]:
    """Drop the only references to the objects in ``holder`` and collect; return the
    warnings emitted meanwhile and weak references to the objects.

    The last reference may go in another thread (a read thread lets go of its work item
    just after answering), which then runs the finalizer: so this waits until the
    objects are gone and, given the ``name`` of a store, until its warning came.
    """
    refs = [weakref.ref(thing) for thing in holder]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        holder.clear()
        gc.collect()
        await eventually(
            lambda: (
                all(ref() is None for ref in refs)
                and (name is None or bool(_unclosed(caught, name)))
            )
        )
    return caught, refs


def _unclosed(caught: list[warnings.WarningMessage], name: str) -> list[str]:
    """The messages of the ResourceWarnings about an unclosed store naming ``name``."""
    return [
        str(w.message)
        for w in caught
        if issubclass(w.category, ResourceWarning)
        and "unclosed EventStore" in str(w.message)
        and name in str(w.message)
    ]


# -- SQLite --------------------------------------------------------------------------


async def test_a_dropped_sqlite_store_is_collected_and_warns_and_its_threads_end(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dropped.db"
    before = _store_threads()
    store = EventStore(f"sqlite:///{path}")
    for n in range(5):
        await store.append("order.1", {"type": "order.placed", "data": {"n": n}})
    assert len(await store.read_all()) == 5  # the read threads run too
    backend = store.backend
    assert isinstance(backend, SQLiteBackend)

    def appending(to: SQLiteBackend, stream: str) -> list[Awaitable[AppendResult]]:
        return [
            to.append(stream, event_records({"type": "o.p", "data": {"n": n}}), ANY)
            for n in range(3)
        ]

    handed = appending(backend, "order.2")
    await asyncio.sleep(0)  # one loop pass: the batch is handed to the writer's queue
    batched = appending(backend, "order.3")  # these wait for the end of this pass
    threads = _store_threads() - before
    assert any(t.name == "pepperpy-sqlite-writer" for t in threads)

    holder: list[Any] = [store, backend]
    del store, backend
    caught, _ = await _drop(holder, str(path))  # collected, with a warning naming the file
    # in the words of every object dropped unclosed, saying what is released instead
    assert _unclosed(caught, str(path)) == [
        f"unclosed EventStore on SQLite file {str(path)!r} was dropped: await its close() "
        "when done with it (its writer thread and connections are being released now)"
    ]
    # the writer writes what it was handed before it ends, and answers
    results = await asyncio.wait_for(asyncio.gather(*handed), 30)
    assert [r.next_expected_version for r in results] == [0, 1, 2]
    # appends still batched on the loop go in if the store was collected on this loop;
    # collected in a read thread (the last to let go of it), they are refused unwritten
    outcomes = await asyncio.wait_for(asyncio.gather(*batched, return_exceptions=True), 30)
    assert all(isinstance(o, AppendResult | ClosedError) for o in outcomes), outcomes
    accepted = [n for n, outcome in enumerate(outcomes) if isinstance(outcome, AppendResult)]
    for thread in _store_threads() - before:  # the writer, readers and the release thread
        thread.join(30)
        assert not thread.is_alive(), f"{thread.name} still runs"

    reopened = EventStore(f"sqlite:///{path}")
    try:
        events = await reopened.read_all()
        assert [(e.stream, e.data["n"]) for e in events] == [
            *(("order.1", n) for n in range(5)),
            *(("order.2", n) for n in range(3)),
            *(("order.3", n) for n in accepted),
        ]
    finally:
        await reopened.close()


async def test_a_closed_sqlite_store_is_collected_without_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "closed.db"
    store = EventStore(f"sqlite:///{path}")
    await store.append("order.1", {"type": "order.placed"})
    assert len(await store.read_all()) == 1
    await store.close()
    holder: list[Any] = [store]
    del store
    caught, refs = await _drop(holder, None)
    assert refs[0]() is None
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [
        str(w.message) for w in caught
    ]


async def test_a_sqlite_store_never_used_holds_nothing_and_is_not_warned_about(
    tmp_path: Path,
) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'unused.db'}")
    holder: list[Any] = [store]
    del store
    caught, refs = await _drop(holder, None)
    assert refs[0]() is None
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not (tmp_path / "unused.db").exists()


_AT_EXIT = """
import asyncio, sys
from pepperpy.event import AppendResult, ClosedError, EventStore
from pepperpy.event._loops import warn_dropped

STORE = EventStore(sys.argv[1])  # never closed: still referenced when the process exits

async def main():
    for n in range(20):
        await STORE.append("exit.1", {"type": "a.b", "data": {"n": n}})
    await STORE.read_all()
    dropped = EventStore(sys.argv[2])  # dropped unclosed inside the loop
    await dropped.append("exit.2", {"type": "a.b"})
    del dropped

asyncio.run(main())
"""


@pytest.mark.slow
async def test_exit_with_sqlite_stores_left_unclosed_is_quiet_and_keeps_the_appends(
    tmp_path: Path,
) -> None:
    kept, dropped = tmp_path / "kept.db", tmp_path / "dropped.db"
    script = tmp_path / "at_exit.py"
    script.write_text(textwrap.dedent(_AT_EXIT))
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-X", "dev", str(script), f"sqlite:///{kept}", f"sqlite:///{dropped}"],
        capture_output=True,
        text=True,
        timeout=120,  # a hang fails here instead of stalling the run
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert "unclosed EventStore on SQLite file" in done.stderr  # the one dropped
    assert str(dropped) in done.stderr and str(kept) not in done.stderr
    for path, count in ((kept, 20), (dropped, 1)):
        store = EventStore(f"sqlite:///{path}")
        try:
            assert len(await store.read_all()) == count
        finally:
            await store.close()


# -- PostgreSQL ----------------------------------------------------------------------


async def _connections(admin: asyncpg.Connection, database: str) -> int:
    count: int = await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )
    return count


@pytest.mark.postgres
async def test_a_dropped_postgres_store_is_collected_and_warns_and_closes_its_connections(
    postgres_url: str,
) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    store = EventStore(postgres_url)
    for n in range(5):
        await store.append("order.1", {"type": "order.placed", "data": {"n": n}})
    # a live subscription starts the LISTEN connection, then is given up
    following = asyncio.ensure_future(anext(aiter(store.subscribe(from_position=5))))
    backend = store.backend
    assert isinstance(backend, PostgresBackend)
    (on,) = backend._loops.values()
    await eventually(lambda: on.connected)
    following.cancel()
    with pytest.raises(asyncio.CancelledError):
        await following
    committer, listening = on.committer, on.listening
    assert committer is not None and listening is not None
    del following
    admin = await asyncpg.connect(postgres_url)
    try:
        assert await _connections(admin, database) >= 2  # the pool's and the listener

        holder: list[Any] = [store, backend]
        del store, backend
        caught, _ = await _drop(holder, database)  # collected, with a warning naming it
        # in the words of every object dropped with connections open on event loops
        with warnings.catch_warnings(record=True) as shared:
            warnings.simplefilter("always")
            warn_dropped(f"EventStore on PostgreSQL {redact_url(postgres_url)}", "")
        assert _unclosed(caught, database) == [str(shared[0].message)]
        # its committer closes the connections, as close() has it do, and ends
        await asyncio.wait_for(asyncio.wait((committer, listening)), 30)
        assert not committer.cancelled() and committer.exception() is None
        assert listening.done() and on.listener is None

        async def gone() -> bool:
            return await _connections(admin, database) == 0

        for _ in range(1000):  # the server ends a session just after its goodbye
            if await gone():
                break
            await asyncio.sleep(0.01)
        assert await gone()
    finally:
        await admin.close()

    reopened = EventStore(postgres_url)
    try:
        assert [e.data["n"] for e in await reopened.read_all()] == list(range(5))
    finally:
        await reopened.close()


@pytest.mark.postgres
async def test_a_closed_postgres_store_is_collected_without_a_warning(postgres_url: str) -> None:
    store = EventStore(postgres_url)
    await store.append("order.1", {"type": "order.placed"})
    await store.close()
    holder: list[Any] = [store]
    del store
    caught, refs = await _drop(holder, None)
    assert refs[0]() is None
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [
        str(w.message) for w in caught
    ]
