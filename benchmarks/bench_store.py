"""The event store, side by side with eventsourcing and raw sqlite3 floors.

Every SQLite contender is durable: WAL with ``synchronous=FULL`` (SQLite's default, which
eventsourcing keeps). PostgreSQL runs only when a server answers on 127.0.0.1:5432.

Run: ``python -m benchmarks.bench_store`` (``--quick`` for a short run).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from benchmarks._harness import Result, Runner, compare, machine, table
from pepperpy.event import Event, EventStore
from pepperpy.event.store._sqlite_log import INDEX_EVERY
from pepperpy.event.store._sqlite_schema import INDEX_TAIL, READ_STREAM_FORWARD

STREAMS = 1000
TASKS = 20
BATCH = 100
PAYLOAD = {"user_id": "123", "name": "John", "email": "john@example.com", "age": 42}
POSTGRES = "postgresql://postgres@127.0.0.1:5432"

_SCRATCH = Path(tempfile.mkdtemp(prefix="pepperpy-bench-store-"))


def run_as_script(main: Callable[[bool], Coroutine[Any, Any, str]]) -> None:
    """Print the report of ``main`` (shortened by ``--quick`` on the command line), then
    remove the scratch files of this run: a store benchmark's ``__main__``."""
    try:
        print(asyncio.run(main("--quick" in sys.argv)))
    finally:
        for leftover in _SCRATCH.glob("*"):
            os.unlink(leftover)
        _SCRATCH.rmdir()


def _fresh_db() -> str:
    return str(_SCRATCH / f"{uuid.uuid4().hex}.db")


# -- appends: 20 concurrent tasks, one event per append -----------------------------------


def _pepperpy_concurrent(url_factory: Any, events: bool = False) -> Runner:
    """``TASKS`` tasks appending one event each time: a dict, or an ``Event`` built per call
    (its own id, so the store checks whether the stream holds it already)."""

    async def run(n: int) -> float:
        async with EventStore(await url_factory()) as store:
            await store.append("warm.up", {"type": "warm"})  # open files/connections first
            per_task = n // TASKS

            async def task(number: int) -> None:
                for i in range(per_task):  # each round, the tasks update 20 different streams
                    stream = f"user.{(i * TASKS + number) % STREAMS}"
                    if events:
                        await store.append(stream, Event("user.updated", PAYLOAD))
                    else:
                        await store.append(stream, {"type": "user.updated", "data": PAYLOAD})

            start = time.perf_counter()
            await asyncio.gather(*(task(number) for number in range(TASKS)))
            return time.perf_counter() - start

    return run


def _pepperpy_many_stores(url_factory: Any, stores: int) -> Runner:
    """``stores`` separate EventStore objects (own connections), one appending task each."""

    async def run(n: int) -> float:
        url = await url_factory()
        opened = [EventStore(url) for _ in range(stores)]
        try:
            for number, store in enumerate(opened):
                await store.append(f"warm.{number}", {"type": "warm"})
            per_store = n // stores

            async def task(number: int, store: EventStore) -> None:
                for i in range(per_store):
                    stream = f"user.{number}.{i % 100}"
                    await store.append(stream, {"type": "user.updated", "data": PAYLOAD})

            start = time.perf_counter()
            await asyncio.gather(*(task(number, s) for number, s in enumerate(opened)))
            return time.perf_counter() - start
        finally:
            for store in opened:
                await store.close()

    return run


def _asyncpg_unordered_inserts(connections: int) -> Runner:
    """The floor without ordering: autocommit INSERTs into a bigserial table, in parallel."""

    async def run(n: int) -> float:
        import asyncpg

        url = await _postgres_url()
        opened = [await asyncpg.connect(url) for _ in range(connections)]
        try:
            await opened[0].execute(
                "CREATE TABLE raw_events (global_position bigserial PRIMARY KEY, "
                "stream text, type text, data bytea)"
            )
            per_connection = n // connections
            payload = json.dumps(PAYLOAD).encode()

            async def task(number: int, connection: Any) -> None:
                for i in range(per_connection):
                    await connection.execute(
                        "INSERT INTO raw_events (stream, type, data) VALUES ($1, $2, $3)",
                        f"user.{number}.{i % 100}",
                        "user.updated",
                        payload,
                    )

            start = time.perf_counter()
            await asyncio.gather(*(task(number, c) for number, c in enumerate(opened)))
            return time.perf_counter() - start
        finally:
            for connection in opened:
                await connection.close()

    return run


async def _sqlite_url() -> str:
    return f"sqlite:///{_fresh_db()}"


@functools.cache
def _user_aggregate() -> Any:
    """An eventsourcing aggregate (defined once: eventsourcing registers class topics)."""
    from eventsourcing.domain import Aggregate, event

    class User(Aggregate):
        @event("Registered")
        def __init__(self, name: str) -> None:
            self.name = name

        @event("Updated")
        def update(self, name: str) -> None:
            self.name = name

    return User


def _eventsourcing_app() -> Any:
    """An eventsourcing Application on a new SQLite file, its connection opened."""
    from eventsourcing.application import Application

    app: Application[Any] = Application(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": _fresh_db()}
    )
    app.save(_user_aggregate()("warm"))
    return app


def _eventsourcing_save(events_per_save: int) -> Runner:
    User = _user_aggregate()

    async def run(n: int) -> float:
        app = _eventsourcing_app()
        saves = n // events_per_save
        users = []
        for _ in range(saves):
            user = User("John")
            for _ in range(events_per_save - 1):
                user.update("Jane")
            users.append(user)
        start = time.perf_counter()
        for user in users:
            app.save(user)
        elapsed = time.perf_counter() - start
        app.close()
        return elapsed

    return run


def _eventsourcing_save_threads(threads: int) -> Runner:
    """The same work as the store's concurrent appends: ``threads`` callers, one event each."""
    User = _user_aggregate()

    async def run(n: int) -> float:
        app = _eventsourcing_app()
        users = [User("John") for _ in range(n)]
        per_thread = n // threads

        def work(number: int) -> None:
            for user in users[number * per_thread : (number + 1) * per_thread]:
                app.save(user)

        workers = [threading.Thread(target=work, args=(number,)) for number in range(threads)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - start
        app.close()
        return elapsed

    return run


def _fsync_cost(count: int = 200) -> tuple[float, float]:
    """Median ``fdatasync`` after a 4 KiB write (us): overwriting in place, and appending."""
    fd, path = tempfile.mkstemp(dir=_SCRATCH)
    try:
        costs: dict[str, list[float]] = {"overwrite": [], "append": []}
        os.write(fd, bytes(4096 * 16))
        os.fdatasync(fd)
        for number in range(count):
            for kind in costs:
                offset = 4096 * (number % 16) if kind == "overwrite" else 4096 * (16 + number)
                os.pwrite(fd, b"x" * 4096, offset)
                start = time.perf_counter()
                os.fdatasync(fd)
                costs[kind].append(time.perf_counter() - start)
        return (
            statistics.median(costs["overwrite"]) * 1e6,
            statistics.median(costs["append"]) * 1e6,
        )
    finally:
        os.close(fd)
        os.unlink(path)


_RAW_SCHEMA = (
    "CREATE TABLE events (global_position INTEGER PRIMARY KEY, stream TEXT, "
    "position INTEGER, type TEXT, data BLOB, UNIQUE (stream, position))"
)


def _raw_connection() -> sqlite3.Connection:
    connection = sqlite3.connect(_fresh_db(), isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute(_RAW_SCHEMA)
    return connection


def _raw_one_transaction_per_event() -> Runner:
    async def run(n: int) -> float:
        connection = _raw_connection()
        start = time.perf_counter()
        for i in range(n):
            connection.execute("BEGIN")
            connection.execute(
                "INSERT INTO events (stream, position, type, data) VALUES (?, ?, ?, ?)",
                (f"user.{i % STREAMS}", i // STREAMS, "user.updated", json.dumps(PAYLOAD)),
            )
            connection.execute("COMMIT")
        elapsed = time.perf_counter() - start
        connection.close()
        return elapsed

    return run


def _raw_groups_on_store_schema(size: int) -> Runner:
    """The floor under any group commit: the store's own schema and rows, ``size`` events
    per durable transaction, written by one thread with no asyncio and no checks.

    With ``TASKS`` callers that each wait for their commit, no group can hold more than
    ``TASKS`` events, so this contender at ``size=TASKS`` bounds what any implementation
    of the single-event benchmark can reach on this disk.
    """

    async def run(n: int) -> float:
        url = await _sqlite_url()
        async with EventStore(url) as store:  # the real schema, migrated as the store does
            await store.append("warm.up", {"type": "warm"})
        connection = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        insert = (
            "INSERT INTO events (stream, position, id, type, version, data, metadata, "
            "timestamp, source, subject, recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
        )
        positions: dict[str, int] = {}
        counter = 0
        (indexed_before,) = connection.execute("SELECT indexed_before FROM index_state").fetchone()
        start = time.perf_counter()
        for first in range(0, n, size):
            rows, started = [], []
            now = time.time_ns()
            for i in range(first, min(first + size, n)):
                stream = f"user.{i % STREAMS}"
                position = positions.get(stream, 0)
                positions[stream] = position + 1
                if position == 0:
                    started.append((stream,))
                counter += 1
                event_id = str(uuid.UUID(int=(now << 64) | counter))  # time-ordered
                data = json.dumps(PAYLOAD).encode()
                rows.append(
                    (stream, position, event_id, "user.updated", 1, data, None, now // 1000)
                    + (None, None, now // 1000)
                )
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(insert, rows)
            connection.executemany("INSERT INTO streams (name) VALUES (?)", started)
            head = min(first + size, n) + 1  # the warm-up event holds global position 0
            if head - indexed_before >= INDEX_EVERY:  # the store's bulk indexing of the tail
                for statement in INDEX_TAIL:
                    connection.execute(statement, (indexed_before,))
                connection.execute("UPDATE index_state SET indexed_before = ?", (head,))
                indexed_before = head
            connection.execute("COMMIT")
        elapsed = time.perf_counter() - start
        connection.close()
        return elapsed

    return run


# -- appends: batches ---------------------------------------------------------------------


def _pepperpy_batched(size: int, tasks: int = 1) -> Runner:
    async def run(n: int) -> float:
        async with EventStore(await _sqlite_url()) as store:
            await store.append("warm.up", {"type": "warm"})
            batches = n // size // tasks

            async def task(number: int) -> None:
                for batch in range(batches):
                    events = [{"type": "user.updated", "data": PAYLOAD} for _ in range(size)]
                    await store.append(f"user.{(number * batches + batch) % STREAMS}", events)

            start = time.perf_counter()
            await asyncio.gather(*(task(number) for number in range(tasks)))
            return time.perf_counter() - start

    return run


def _raw_executemany() -> Runner:
    async def run(n: int) -> float:
        connection = _raw_connection()
        start = time.perf_counter()
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO events (stream, position, type, data) VALUES (?, ?, ?, ?)",
            (
                (f"user.{i % STREAMS}", i // STREAMS, "user.updated", json.dumps(PAYLOAD))
                for i in range(n)
            ),
        )
        connection.execute("COMMIT")
        elapsed = time.perf_counter() - start
        connection.close()
        return elapsed

    return run


def _raw_executemany_per_batch(size: int) -> Runner:
    """The same batches as the store's appends, each one durable transaction of its own."""

    async def run(n: int) -> float:
        connection = _raw_connection()
        start = time.perf_counter()
        for number in range(n // size):
            connection.execute("BEGIN")
            connection.executemany(
                "INSERT INTO events (stream, position, type, data) VALUES (?, ?, ?, ?)",
                ((f"s.{number}", i, "user.updated", json.dumps(PAYLOAD)) for i in range(size)),
            )
            connection.execute("COMMIT")
        elapsed = time.perf_counter() - start
        connection.close()
        return elapsed

    return run


# -- reading one long stream --------------------------------------------------------------


async def _long_stream(count: int) -> tuple[str, str]:
    path = _fresh_db()
    async with EventStore(f"sqlite:///{path}") as store:
        for _ in range(count // 1000):
            await store.append(
                "big.1", [{"type": "user.updated", "data": PAYLOAD} for _ in range(1000)]
            )
    return path, f"sqlite:///{path}"


def _pepperpy_read(url: str) -> Runner:
    async def run(n: int) -> float:
        async with EventStore(url) as store:
            await store.stream_version("big.1")  # open the reader connection first
            start = time.perf_counter()
            events = await store.get_stream("big.1")
            elapsed = time.perf_counter() - start
        assert len(events) == n
        return elapsed

    return run


def _raw_read(path: str, decode: bool) -> Runner:
    async def run(n: int) -> float:
        connection = sqlite3.connect(path)
        start = time.perf_counter()
        rows = connection.execute(  # the store's own query: indexed events, then the tail
            READ_STREAM_FORWARD, {"s": "big.1", "at": 0, "n": n}
        ).fetchall()
        if decode:
            rows = [(*row[:6], json.loads(row[6]), *row[7:]) for row in rows]
        elapsed = time.perf_counter() - start
        connection.close()
        assert len(rows) == n
        return elapsed

    return run


# -- PostgreSQL ---------------------------------------------------------------------------


def _postgres_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


async def _postgres_url() -> str:
    import asyncpg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(f"{POSTGRES}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    _POSTGRES_DATABASES.append(name)
    return f"{POSTGRES}/{name}"


_POSTGRES_DATABASES: list[str] = []


async def _drop_postgres_databases() -> None:
    import asyncpg

    admin = await asyncpg.connect(f"{POSTGRES}/postgres")
    try:
        for name in _POSTGRES_DATABASES:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    _POSTGRES_DATABASES.clear()


async def _postgres_subscription(count: int) -> tuple[float, float, float]:
    """(events/s delivered to a live subscriber, median and p99 append->delivery ms)."""
    url = await _postgres_url()
    async with EventStore(url) as writer, EventStore(url) as reader:
        await writer.append("warm.up", {"type": "warm"})
        subscription = reader.subscribe(1)
        latencies: list[float] = []
        done = asyncio.Event()

        async def follow() -> None:
            async for event in subscription:
                latencies.append(time.perf_counter() - event.data["sent"])
                if len(latencies) == count:
                    done.set()
                    return

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.2)
        start = time.perf_counter()
        per_task = count // 4

        async def task(number: int) -> None:
            for _ in range(per_task):
                await writer.append(
                    f"live.{number}", {"type": "tick", "data": {"sent": time.perf_counter()}}
                )

        await asyncio.gather(*(task(number) for number in range(4)))
        await asyncio.wait_for(done.wait(), 60)
        elapsed = time.perf_counter() - start
        await follower
    milliseconds = sorted(latency * 1000 for latency in latencies)
    p99 = milliseconds[int(len(milliseconds) * 0.99) - 1]
    return count / elapsed, statistics.median(milliseconds), p99


# -- the report ---------------------------------------------------------------------------


def _ratio(results: list[Result], name: str, baseline: str) -> float:
    rates = {r.name: r.ops_per_sec for r in results}
    return rates[name] / rates[baseline]


async def main(quick: bool) -> str:
    passes = 3 if quick else 5
    appends = 1_000 if quick else 20_000  # ANCHORS.md's size: past a new file's first WAL
    sections = [f"## Event store\n\nMachine: {machine()}; SQLite {sqlite3.sqlite_version}.\n"]

    overwrite, append = _fsync_cost()
    sections.append(
        f"fdatasync after a 4 KiB write on this disk (median): {overwrite:.0f} us in place, "
        f"{append:.0f} us when the file grows.\n"
    )

    ours, theirs, same_work = (
        f"pepperpy EventStore (SQLite), {TASKS} tasks",
        "eventsourcing Application.save, 1 event per save",
        f"eventsourcing Application.save, 1 event per save, {TASKS} threads",
    )
    floor_by_size = {
        size: f"raw sqlite3, the store's schema, {size} events per transaction, one thread"
        for size in (TASKS // 2, TASKS)
    }
    concurrent = await compare(
        {
            ours: _pepperpy_concurrent(_sqlite_url),
            f"{ours}, Event objects": _pepperpy_concurrent(_sqlite_url, events=True),
            theirs: _eventsourcing_save(1),
            same_work: _eventsourcing_save_threads(TASKS),
            "eventsourcing Application.save, 10 events per save": _eventsourcing_save(10),
            "raw sqlite3, one transaction per event": _raw_one_transaction_per_event(),
            floor_by_size[TASKS // 2]: _raw_groups_on_store_schema(TASKS // 2),
            floor_by_size[TASKS]: _raw_groups_on_store_schema(TASKS),
        },
        operations=appends,
        passes=passes,
    )
    sections.append(
        f"### Single-event appends, {TASKS} concurrent tasks, {STREAMS} streams (events/s)\n\n"
        + table(concurrent, baseline=theirs)
        + f"\n\nTarget >= 10x eventsourcing: {_ratio(concurrent, ours, theirs):.2f}x its "
        f"one-thread loop (its best case), {_ratio(concurrent, ours, same_work):.2f}x the same "
        f"work ({TASKS} concurrent callers). The floor under any group commit, raw "
        f"sqlite3 writing the store's rows {TASKS} to a transaction (the most {TASKS} "
        f"waiting callers can share), reaches "
        f"{_ratio(concurrent, floor_by_size[TASKS], theirs):.2f}x.\n"
    )

    sizes = (BATCH, 1000)
    ours_by_size = {size: f"pepperpy EventStore (SQLite), {size}-event batches" for size in sizes}
    raw_by_size = {
        size: f"raw executemany + json.dumps, one transaction per {size}" for size in sizes
    }
    everything = "raw executemany + json.dumps, all events in one transaction"
    batched = await compare(
        {
            ours_by_size[BATCH]: _pepperpy_batched(BATCH),
            f"pepperpy EventStore (SQLite), {BATCH}-event batches, 10 tasks": _pepperpy_batched(
                BATCH, tasks=10
            ),
            ours_by_size[1000]: _pepperpy_batched(1000),
            **{raw_by_size[size]: _raw_executemany_per_batch(size) for size in sizes},
            everything: _raw_executemany(),
            "eventsourcing Application.save, 10 events per save": _eventsourcing_save(10),
        },
        operations=appends,
        passes=passes,
    )
    same_batches = ", ".join(
        f"{_ratio(batched, ours_by_size[size], raw_by_size[size]):.2f}x ({size}-event batches)"
        for size in sizes
    )
    one_transaction = ", ".join(
        f"{_ratio(batched, ours_by_size[size], everything):.2f}x ({size})" for size in sizes
    )
    sections.append(
        "### Batched appends (events/s)\n\n"
        + table(batched, baseline=raw_by_size[BATCH])
        + f"\n\nTarget >= 0.5x raw executemany of the same batches (each batch one durable "
        f"transaction, as an append is): {same_batches}. Against one transaction for all "
        f"events (no batch durable before the end): {one_transaction}.\n"
    )

    length = 10_000
    path, url = await _long_stream(length)
    ours = "pepperpy get_stream -> Events"
    raw = "raw fetchall + json.loads per row, the store's query"
    reading = await compare(
        {
            ours: _pepperpy_read(url),
            "raw fetchall (tuples), the store's query": _raw_read(path, decode=False),
            raw: _raw_read(path, decode=True),
        },
        operations=length,
        passes=passes,
    )
    sections.append(
        f"### Reading one {length:,}-event stream (events/s)\n\n"
        + table(reading, baseline=raw)
        + f"\n\nTarget >= 1x raw fetchall + json.loads: {_ratio(reading, ours, raw):.2f}x.\n"
    )

    if _postgres_up():
        try:
            postgres = await compare(
                {
                    "pepperpy EventStore (PostgreSQL), 1 store, 20 tasks": _pepperpy_concurrent(
                        _postgres_url
                    ),
                    "pepperpy EventStore (PostgreSQL), 8 stores, 1 task each": (
                        _pepperpy_many_stores(_postgres_url, 8)
                    ),
                    "raw asyncpg, 8 connections, autocommit INSERT (no ordering)": (
                        _asyncpg_unordered_inserts(8)
                    ),
                },
                operations=800 if quick else 4_000,
                passes=passes,
            )
            rate, median, p99 = await _postgres_subscription(400 if quick else 2_000)
        finally:
            await _drop_postgres_databases()
        sections.append(
            "### PostgreSQL (loopback, synchronous_commit=on)\n\n"
            + table(
                postgres,
                baseline="raw asyncpg, 8 connections, autocommit INSERT (no ordering)",
            )
            + f"\n\nLive subscription (4 writer tasks, one subscriber on another store): "
            f"{rate:,.0f} events/s delivered; append -> delivery latency median "
            f"{median:.2f} ms, p99 {p99:.2f} ms.\n"
        )
    else:
        sections.append("### PostgreSQL\n\nSkipped: no server on 127.0.0.1:5432.\n")
    return "\n".join(sections)


if __name__ == "__main__":
    run_as_script(main)
