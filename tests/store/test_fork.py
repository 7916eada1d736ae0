"""SQLite objects used in a parent, then in a child made by ``os.fork()``.

SQLite connections must not cross a fork, and the store's writer and reader threads do
not exist in the child: without care, its first append or read waited for ever. Each
test forks (plainly or through multiprocessing's fork start method), lets the child use
what the parent opened, and bounds the wait: the child reports through a pipe or its
exit code and is killed if it hangs. The child never returns into pytest.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import select
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import ClosedError, Event, EventStore, _sqlite
from pepperpy.event._checkpoints import SQLiteCheckpointStore
from pepperpy.event._sqlite import abandon
from pepperpy.event.security import AuditLog, SQLiteKeyStore
from pepperpy.event.store import _sqlite_writer
from pepperpy.event.store.sqlite import SQLiteBackend

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only"),
    # Python 3.12+ warns about forking a process with threads (ours included): the
    # point of these tests is that it works
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

#: seconds a child may take before it counts as hung (and is killed)
CHILD_TIMEOUT = 30.0
#: seconds any single store call may take in a child (a hang fails well before the kill)
CALL_TIMEOUT = 10.0


def in_child(body: Callable[[], Any], *, timeout: float = CHILD_TIMEOUT) -> Any:
    """Fork; run ``body`` in the child and return what it returned, or raise what it raised.

    The child sends its outcome through a pipe and leaves with ``os._exit``; a child
    still running after ``timeout`` seconds is killed and the test fails.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            os.close(read_end)
            try:
                outcome: tuple[str, Any] = ("ok", body())
                code = 0
            except BaseException as exc:
                outcome = ("error", f"{type(exc).__name__}: {exc}")
            os.write(write_end, pickle.dumps(outcome))
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        data = _read_all(read_end, pid, timeout)
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert data, f"the child sent nothing (wait status {status})"
    kind, value = pickle.loads(data)
    if kind == "error":
        raise AssertionError(f"in the child: {value}")
    assert os.waitstatus_to_exitcode(status) == 0
    return value


def _read_all(read_end: int, pid: int, timeout: float) -> bytes:
    """Everything the child writes to ``read_end`` until it closes it (it exits)."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([read_end], [], [], max(remaining, 0))
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the child hung (no answer in {timeout} s)")
        chunk = os.read(read_end, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def bounded(awaitable: Any) -> Any:
    """``asyncio.run`` of ``awaitable`` that fails instead of hanging."""

    async def run() -> Any:
        return await asyncio.wait_for(awaitable, CALL_TIMEOUT)

    return asyncio.run(run())


def integrity(path: Path) -> str:
    with closing(sqlite3.connect(path)) as connection, connection:
        (result,) = connection.execute("PRAGMA integrity_check").fetchone()
    connection.close()
    return str(result)


@pytest.fixture
def store_path(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "events.db"


def test_a_forked_child_appends_and_reads_through_the_parents_store(store_path: Path) -> None:
    store = EventStore(f"sqlite:///{store_path}")
    bounded(store.append("s", Event("parent.before", {"n": 1})))
    assert [e.type for e in bounded(store.get_stream("s"))] == ["parent.before"]
    backend = store.backend
    assert isinstance(backend, SQLiteBackend)
    writer_connection = backend._writer.connection if backend._writer else None

    async def child() -> list[Any]:
        appended = await store.append("s", Event("child", {"n": 2}))
        events = await store.get_stream("s")
        everything = await store.read_all()
        return [
            appended.next_expected_version,
            [e.type for e in events],
            len(everything),
            await store.stream_version("s"),
        ]

    assert in_child(lambda: bounded(child())) == [1, ["parent.before", "child"], 2, 1]

    # the parent is unaffected: same connections, same writer, and it sees the child's event
    assert backend._writer is not None and backend._writer.connection is writer_connection
    bounded(store.append("s", Event("parent.after", {"n": 3})))
    assert [e.type for e in bounded(store.get_stream("s"))] == [
        "parent.before",
        "child",
        "parent.after",
    ]
    bounded(store.close())
    assert integrity(store_path) == "ok"


def test_a_forked_child_closes_the_parents_store_without_touching_the_parents_file(
    store_path: Path,
) -> None:
    store = EventStore(f"sqlite:///{store_path}")
    bounded(store.append("s", Event("parent", {})))
    bounded(store.get_stream("s"))  # a read connection too

    def child() -> str:
        bounded(store.close())
        try:
            bounded(store.append("s", Event("late", {})))
        except ClosedError:
            return "closed"
        return "appended after close"

    assert in_child(child) == "closed"
    # the child's close left the parent's connections alone: the parent goes on
    bounded(store.append("s", Event("parent.after", {})))
    assert len(bounded(store.get_stream("s"))) == 2
    bounded(store.close())
    assert integrity(store_path) == "ok"


def test_a_store_closed_before_the_fork_stays_closed_in_the_child(store_path: Path) -> None:
    store = EventStore(f"sqlite:///{store_path}")
    bounded(store.append("s", Event("parent", {})))
    bounded(store.close())

    def child() -> str:
        try:
            bounded(store.append("s", Event("child", {})))
        except ClosedError:
            return "closed"
        return "appended"

    assert in_child(child) == "closed"


def test_a_store_first_used_in_the_child_works(store_path: Path) -> None:
    store = EventStore(f"sqlite:///{store_path}")

    def child() -> int:
        result = bounded(store.append("s", Event("child", {})))
        bounded(store.close())
        return int(result.global_position)

    assert in_child(child) == 0
    assert [e.type for e in bounded(store.get_stream("s"))] == ["child"]
    bounded(store.close())


def test_the_parents_appends_still_batched_at_the_fork_are_written_by_the_parent_only(
    store_path: Path,
) -> None:
    """Appends the parent made just before forking are its own: the child never writes them."""
    store = EventStore(f"sqlite:///{store_path}")
    pending = [Event("pending", {"n": n}) for n in range(3)]

    def unwritten_in_file() -> int:
        with closing(sqlite3.connect(store_path)) as connection, connection:
            (count,) = connection.execute(
                "SELECT count(*) FROM events WHERE type = 'pending'"
            ).fetchone()
        connection.close()
        return int(count)

    async def parent() -> None:
        await store.append("warm", Event("warm", {}))
        futures = [asyncio.ensure_future(store.append("pending", e)) for e in pending]
        await asyncio.sleep(0)  # each reaches the writer's batch, not yet handed over
        backend = store.backend
        assert isinstance(backend, SQLiteBackend) and backend._writer is not None
        assert len(backend._writer._batch or ()) == 3

        def child() -> list[int]:
            result = bounded(store.append("child", Event("child", {})))
            seen = bounded(store.get_stream("pending"))
            return [len(seen), int(result.global_position)]

        # fork from the loop itself, before it hands the batch over: the child runs a
        # loop of its own; the parent does not yield until the child has finished
        assert in_child(child) == [0, 1]
        assert unwritten_in_file() == 0  # the child wrote none of them
        results = await asyncio.wait_for(asyncio.gather(*futures), CALL_TIMEOUT)
        assert [r.next_expected_version for r in results] == [0, 1, 2]

    asyncio.run(parent())
    assert unwritten_in_file() == 3
    events = bounded(store.read_all())
    assert [e.type for e in events] == ["warm", "child", "pending", "pending", "pending"]
    assert len({e.id for e in events}) == 5
    bounded(store.close())


def test_a_fork_waits_for_the_transaction_under_way(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child forked mid-transaction would find the file locked for ever; fork waits."""
    inside = threading.Event()
    original_commit = _sqlite_writer.Writer._before_commit

    def slow_commit(writer: _sqlite_writer.Writer) -> None:
        inside.set()
        time.sleep(0.3)  # the write lock is held: the fork arrives now
        original_commit(writer)

    # a short busy timeout: without the wait, the child's append fails after 1 s
    store = EventStore(f"sqlite:///{store_path}?busy_timeout=1")

    async def parent() -> None:
        await store.append("warm", Event("warm", {}))
        monkeypatch.setattr(_sqlite_writer.Writer, "_before_commit", slow_commit)
        inside.clear()
        appending = asyncio.ensure_future(store.append("parent", Event("parent", {})))
        assert await asyncio.to_thread(inside.wait, CALL_TIMEOUT)

        def child() -> int:
            monkeypatch.setattr(_sqlite_writer.Writer, "_before_commit", original_commit)
            return int(bounded(store.append("child", Event("child", {}))).global_position)

        assert in_child(child) == 2  # after the parent's commit, which the fork waited for
        assert (await asyncio.wait_for(appending, CALL_TIMEOUT)).global_position == 1

    asyncio.run(parent())
    monkeypatch.setattr(_sqlite_writer.Writer, "_before_commit", original_commit)
    assert [e.type for e in bounded(store.read_all())] == ["warm", "parent", "child"]
    bounded(store.close())
    assert integrity(store_path) == "ok"


def _worker(store: EventStore, number: int, count: int) -> None:
    """A multiprocessing worker: appends through the store object it inherited."""

    async def work() -> None:
        for i in range(count):
            await store.append(f"worker.{number}", Event("worked", {"i": i}))
        assert len(await store.get_stream(f"worker.{number}")) == count

    bounded(work())


def _join(processes: list[Any]) -> None:
    deadline = time.monotonic() + CHILD_TIMEOUT
    for process in processes:
        process.join(max(deadline - time.monotonic(), 0))
    hung = [process for process in processes if process.is_alive()]
    for process in hung:
        process.kill()
        process.join()
    assert not hung, f"{len(hung)} worker(s) hung"
    assert [process.exitcode for process in processes] == [0] * len(processes)


def test_multiprocessing_fork_workers_share_the_parents_store_while_it_appends(
    store_path: Path,
) -> None:
    """Workers forked while the parent appends without pause: every event lands once."""
    context = multiprocessing.get_context("fork")
    store = EventStore(f"sqlite:///{store_path}")
    workers, per_worker = 3, 20

    async def parent() -> int:
        await store.append("parent", Event("start", {}))
        stop = asyncio.Event()

        async def keep_appending() -> int:
            done = 0
            while not stop.is_set():
                await store.append("parent", [Event("tick", {}), Event("tock", {})])
                await store.get_stream("parent", limit=5)
                done += 2
            return done

        appender = asyncio.ensure_future(keep_appending())
        processes = []
        for number in range(workers):  # each start forks mid-stream of the parent's writes
            await asyncio.sleep(0.02)
            process = context.Process(target=_worker, args=(store, number, per_worker))
            process.start()
            processes.append(process)
        await asyncio.to_thread(_join, processes)
        stop.set()
        return await asyncio.wait_for(appender, CALL_TIMEOUT) + 1

    by_parent = asyncio.run(parent())
    events = bounded(store.read_all())
    assert len(events) == by_parent + workers * per_worker
    assert [e.global_position for e in events] == list(range(len(events)))
    for number in range(workers):
        stream = bounded(store.get_stream(f"worker.{number}"))
        assert [e.data["i"] for e in stream] == list(range(per_worker))
    bounded(store.close())
    assert integrity(store_path) == "ok"


def test_a_worker_started_from_a_running_loop_uses_the_store(store_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    store = EventStore(f"sqlite:///{store_path}")

    async def parent() -> None:
        await store.append("parent", Event("start", {}))
        process = context.Process(target=_worker, args=(store, 0, 5))
        process.start()  # forks inside this coroutine: the child runs a loop of its own
        await asyncio.to_thread(_join, [process])
        assert len(await store.get_stream("worker.0")) == 5
        await store.close()

    asyncio.run(parent())


def test_a_forked_child_uses_the_parents_checkpoint_store(tmp_path: Path) -> None:
    checkpoints = SQLiteCheckpointStore(tmp_path / "events.db")
    bounded(checkpoints.save("projection", 1, {"seen": 1}, previous=None))
    parents = checkpoints._db

    async def child() -> list[Any]:
        loaded = await checkpoints.load("projection")
        assert loaded is not None
        await checkpoints.save("projection", 2, {"seen": 2}, previous=1)
        again = await checkpoints.load("projection")
        assert again is not None
        assert checkpoints._db is not parents  # its own, opened in the child
        await checkpoints.close()
        return [loaded.position, again.position, again.state]

    assert in_child(lambda: bounded(child())) == [1, 2, {"seen": 2}]
    loaded = bounded(checkpoints.load("projection"))  # the parent's own connection
    assert loaded is not None and loaded.position == 2
    bounded(checkpoints.save("projection", 3, None, previous=2))
    bounded(checkpoints.close())
    assert integrity(tmp_path / "events.db") == "ok"


def test_a_forked_child_uses_the_parents_key_store(tmp_path: Path) -> None:
    keys = SQLiteKeyStore(str(tmp_path / "keys.db"))
    assert bounded(keys.save("s", 1, "master", b"wrapped-1"))
    parents = keys._db

    async def child() -> list[Any]:
        before = await keys.load("s")
        assert await keys.save("s", 2, "master", b"wrapped-2")
        after = await keys.load("s")
        assert keys._db is not parents  # its own, opened in the child
        await keys.close()
        return [sorted(before), sorted(after)]

    assert in_child(lambda: bounded(child())) == [[1], [1, 2]]
    assert sorted(bounded(keys.load("s"))) == [1, 2]
    bounded(keys.close())
    assert integrity(tmp_path / "keys.db") == "ok"


@pytest.mark.parametrize("file_backed", [True, False], ids=["file", "memory"])
def test_a_fork_waits_for_an_audit_record_under_way_and_the_child_records_too(
    tmp_path: Path, file_backed: bool
) -> None:
    # a short busy timeout: a child forked mid-transaction fails after 1 s
    log = AuditLog(str(tmp_path / "audit.db") if file_backed else None, busy_timeout=1)
    log.record("parent.before", "x")
    holding, release = threading.Event(), threading.Event()

    def hold_the_log() -> None:
        with log._lock:  # as record() does on this thread, write lock included
            if log._db is not None:
                log._db.execute("BEGIN IMMEDIATE")
            holding.set()
            release.wait(CALL_TIMEOUT)
            if log._db is not None:
                log._db.execute("COMMIT")

    holder = threading.Thread(target=hold_the_log)
    holder.start()
    assert holding.wait(CALL_TIMEOUT)
    threading.Timer(0.2, release.set).start()  # the fork below waits until then

    def child() -> list[Any]:
        log.record("child", "x")
        verified = log.verify()
        actions = [entry.action for entry in log.entries()]
        log.close()
        return [verified.ok, actions]

    assert in_child(child) == [True, ["parent.before", "child"]]
    holder.join(CALL_TIMEOUT)
    log.record("parent.after", "x")
    actions = [entry.action for entry in log.entries()]
    # the file is shared with the child; a memory log is each process's own
    assert actions == (
        ["parent.before", "child", "parent.after"]
        if file_backed
        else ["parent.before", "parent.after"]
    )
    assert log.verify().ok
    log.close()


def test_a_forked_child_reads_a_read_only_audit_log(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.db")
    with AuditLog(path) as writer:
        writer.record("a", "x")
    reader = AuditLog(path, read_only=True)
    assert reader.verify().checked == 1

    def child() -> int:
        checked = reader.verify().checked
        reader.close()
        return checked

    assert in_child(child) == 1
    assert reader.verify().ok
    reader.close()


def test_abandoned_connections_are_never_freed() -> None:
    """``sqlite3`` closes a connection it frees: an abandoned one gets a reference for good."""
    _sqlite._prepare_keep()  # what the first fork does
    connection = sqlite3.connect(":memory:")
    before = sys.getrefcount(connection)
    abandon(connection)
    assert sys.getrefcount(connection) == before + 1
