"""Replay and projections: rebuilding state from a 10,000-event SQLite stream.

Every contender reads the same kind of history (one stream, 10,000 small JSON events in a
durable SQLite file) and folds it into a read model (a count per name), so the numbers
say what it costs to rebuild state from the log:

- raw sqlite3 + json.loads + fold: the floor, no event objects at all;
- pepperpy ``async for`` over ``get_stream``: the store's reader alone;
- pepperpy ``EventReplay.replay_stream``: the reader plus handler dispatch, counters and
  time-window checks;
- pepperpy ``Projection.rebuild``: the same fold, exactly-once (state and checkpoint
  committed together every 100 events, fsync'ed);
- pepperpy ``TableProjection.rebuild``: the same fold into a table of its own (an
  upsert per event), rows and checkpoint committed together every 100 events;
- eventsourcing ``repository.get``: rebuilding a 10,000-event aggregate (decode, mutate).

A second part measures what a *large* read model costs per live event (each committed
alone, as ``follow()`` commits live events): a ``Projection`` rewrites its whole JSON state
at every commit, a ``TableProjection`` writes one row.

A third replays the last hour of a 200,000-event log (one event a second): ``replay_all``
with ``start_time``/``end_time``, which reads only the blocks of the log whose timestamps
meet the window, against reading the whole log and keeping that hour in the handler.

Run: ``python -m benchmarks.bench_replay`` (``--quick`` for a short run).
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks._harness import Result, Runner, compare, machine, table
from pepperpy.event import Event, EventReplay, EventStore, Projection, TableProjection

LENGTH = 10_000
NAMES = ("John", "Jane", "Ann", "Bob")
_SCRATCH = Path(tempfile.mkdtemp(prefix="pepperpy-bench-replay-"))


def _fresh_db() -> str:
    return str(_SCRATCH / f"{uuid.uuid4().hex}.db")


async def _history(length: int) -> str:
    """An SQLite store holding one ``length``-event stream; returns its path."""
    path = _fresh_db()
    async with EventStore(f"sqlite:///{path}") as store:
        for start in range(0, length, 1000):
            await store.append(
                "user.1",
                [
                    Event("user.renamed", {"user_id": "1", "name": NAMES[i % len(NAMES)]})
                    for i in range(start, min(length, start + 1000))
                ],
            )
    return path


def _raw_fold(path: str) -> Runner:
    async def run(n: int) -> float:
        connection = sqlite3.connect(path)
        start = time.perf_counter()
        counts: Counter[str] = Counter()
        for (data,) in connection.execute(
            "SELECT data FROM events WHERE stream = ? ORDER BY position", ("user.1",)
        ):
            counts[json.loads(data)["name"]] += 1
        elapsed = time.perf_counter() - start
        connection.close()
        assert sum(counts.values()) == n
        return elapsed

    return run


def _reader_fold(url: str) -> Runner:
    async def run(n: int) -> float:
        async with EventStore(url) as store:
            await store.stream_version("user.1")  # open the connection first
            start = time.perf_counter()
            counts: Counter[str] = Counter()
            async for event in store.get_stream("user.1"):
                counts[event.data["name"]] += 1
            elapsed = time.perf_counter() - start
        assert sum(counts.values()) == n
        return elapsed

    return run


def _replay_fold(url: str) -> Runner:
    async def run(n: int) -> float:
        async with EventStore(url) as store:
            await store.stream_version("user.1")
            counts: Counter[str] = Counter()
            replay = EventReplay(store)

            @replay.handle("user.*")
            def fold(event: Event) -> None:
                counts[event.data["name"]] += 1

            start = time.perf_counter()
            report = await replay.replay_stream("user.1", start_time="2000-01-01T00:00:00Z")
            elapsed = time.perf_counter() - start
        assert report.replayed == n and sum(counts.values()) == n
        return elapsed

    return run


def _projection_fold(url: str) -> Runner:
    async def run(n: int) -> float:
        async with EventStore(url) as store:
            await store.stream_version("user.1")
            projection = Projection("names", store, streams="user.1", batch_size=100)

            @projection.on("user.renamed")
            def fold(state: dict[str, int], event: Event) -> None:
                name = event.data["name"]
                state[name] = state.get(name, 0) + 1

            await projection.load()  # open the state store's connection first
            start = time.perf_counter()
            report = await projection.rebuild()
            elapsed = time.perf_counter() - start
            await projection.close()
        assert report.replayed == n and sum(projection.state.values()) == n
        return elapsed

    return run


def _count_names(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS names (name TEXT PRIMARY KEY, n INTEGER NOT NULL)")


def _forget_names(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM names")


def _count(db: sqlite3.Connection, event: Event) -> None:
    db.execute(
        "INSERT INTO names VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET n = n + 1",
        (event.data["name"],),
    )


def _table_projection(store: EventStore, name: str, **options: Any) -> TableProjection:
    projection = TableProjection(
        name, store, setup=_count_names, reset=_forget_names, streams="user.*", **options
    )
    projection.on("user.renamed", _count)
    return projection


def _table_fold(url: str) -> Runner:
    async def run(n: int) -> float:
        async with EventStore(url) as store:
            await store.stream_version("user.1")
            projection = _table_projection(store, "names-table", batch_size=100)
            await projection.load()  # open the state store's connection first
            start = time.perf_counter()
            report = await projection.rebuild()
            elapsed = time.perf_counter() - start
            await projection.close()
        assert report.replayed == n
        return elapsed

    return run


#: the large read model: this many keys (one per user), then live events on top
KEYS = 20_000
LIVE = 100


async def _many_users(keys: int) -> str:
    """An SQLite store of ``keys`` users' first events; returns its URL."""
    url = f"sqlite:///{_fresh_db()}"
    async with EventStore(url) as store:
        for start in range(0, keys, 1000):
            await store.append(
                f"user.{start}",
                [Event("user.renamed", {"name": f"user{i}"}) for i in range(start, start + 1000)],
            )
    return url


def _live_events(url: str, tables: bool) -> Runner:
    """Per live event: append ``n`` events (untimed), then time a run that commits each
    alone (``batch_size=1``, as ``follow()`` does live), on a read model of KEYS keys."""

    def model(store: EventStore, batch_size: int) -> Projection:
        if tables:
            return _table_projection(store, "users-table", batch_size=batch_size)
        projection = Projection("users-json", store, streams="user.*", batch_size=batch_size)

        @projection.on("user.renamed")
        def fold(state: dict[str, int], event: Event) -> None:
            name = event.data["name"]
            state[name] = state.get(name, 0) + 1

        return projection

    async def run(n: int) -> float:
        async with EventStore(url) as store:
            async with model(store, batch_size=10_000) as catching_up:
                await catching_up.run()  # the model as it stands (built in the first pass)
            await store.append(
                "user.live", [Event("user.renamed", {"name": f"user{i}"}) for i in range(n)]
            )
            async with model(store, batch_size=1) as live:
                await live.load()
                start = time.perf_counter()
                report = await live.run()
                elapsed = time.perf_counter() - start
        assert report.replayed == n
        return elapsed

    return run


@functools.cache
def _user_aggregate() -> Any:
    from eventsourcing.domain import Aggregate, event

    class ReplayedUser(Aggregate):
        @event("Registered")
        def __init__(self, name: str) -> None:
            self.name = name
            self.counts: dict[str, int] = {}

        @event("Renamed")
        def rename(self, name: str) -> None:
            self.name = name
            self.counts[name] = self.counts.get(name, 0) + 1

    return ReplayedUser


def _eventsourcing_get(length: int) -> Runner:
    from eventsourcing.application import Application

    user_class = _user_aggregate()
    app: Application[Any] = Application(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": _fresh_db()}
    )
    user = user_class("John")
    for i in range(length - 1):
        user.rename(NAMES[i % len(NAMES)])
    app.save(user)

    async def run(n: int) -> float:
        start = time.perf_counter()
        rebuilt = app.repository.get(user.id)
        elapsed = time.perf_counter() - start
        assert rebuilt.version == n
        return elapsed

    return run


WINDOW_LOG = 200_000  # events, one a second
WINDOW = 3_600  # the last hour of them
_T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def _timed_log(length: int) -> str:
    """An SQLite store of ``length`` events, the n-th stamped ``_T0 + n`` seconds."""
    url = f"sqlite:///{_fresh_db()}"
    async with EventStore(url) as store:
        for start in range(0, length, 2000):
            await store.append(
                f"sensor.{start // 2000}",
                [
                    Event("sensor.read", {"n": n}, timestamp=_T0 + timedelta(seconds=n))
                    for n in range(start, min(length, start + 2000))
                ],
            )
    return url


def _window_replay(url: str, length: int, *, seek: bool) -> Runner:
    start, end = _T0 + timedelta(seconds=length - WINDOW), _T0 + timedelta(seconds=length)

    async def run(n: int) -> float:
        async with EventStore(url) as store:
            await store.stream_version("sensor.0")  # open the connection first
            seen = 0
            replay = EventReplay(store)

            @replay.handle("sensor.*")
            def count(event: Event) -> None:
                nonlocal seen
                if seek or start <= event.timestamp < end:
                    seen += 1

            began = time.perf_counter()
            if seek:
                await replay.replay_all(start_time=start, end_time=end)
            else:
                await replay.replay_all()
            elapsed = time.perf_counter() - began
        assert seen == n, (seen, n)
        return elapsed

    return run


def _rate(results: list[Result], name: str) -> float:
    return next(r.ops_per_sec for r in results if r.name == name)


async def main(quick: bool) -> str:
    passes = 3 if quick else 5
    path = await _history(LENGTH)
    url = f"sqlite:///{path}"
    floor = "raw sqlite3 iterate + json.loads + fold"
    reader = "pepperpy get_stream (async for) + fold"
    replay = "pepperpy EventReplay.replay_stream"
    projection = "pepperpy Projection.rebuild (exactly-once)"
    tables = "pepperpy TableProjection.rebuild (exactly-once, a row upsert per event)"
    theirs = "eventsourcing repository.get (10k-event aggregate)"
    results = await compare(
        {
            floor: _raw_fold(path),
            reader: _reader_fold(url),
            replay: _replay_fold(url),
            projection: _projection_fold(url),
            tables: _table_fold(url),
            theirs: _eventsourcing_get(LENGTH),
        },
        operations=LENGTH,
        passes=passes,
    )
    overhead = _rate(results, reader) / _rate(results, replay)
    users = await _many_users(KEYS)
    json_state = f"Projection, one {KEYS:,}-key JSON state"
    own_table = f"TableProjection, a {KEYS:,}-row table"
    live = await compare(
        {
            json_state: _live_events(users, tables=False),
            own_table: _live_events(users, tables=True),
        },
        operations=LIVE,
        passes=passes,
    )
    log_length = WINDOW_LOG // 4 if quick else WINDOW_LOG
    timed = await _timed_log(log_length)
    seeking = "replay_all(start_time=, end_time=): seeks to the window's blocks"
    filtering = "replay_all() over the whole log, the hour kept by the handler"
    window = await compare(
        {
            seeking: _window_replay(timed, log_length, seek=True),
            filtering: _window_replay(timed, log_length, seek=False),
        },
        operations=WINDOW,
        passes=passes,
    )
    return (
        f"## Replay and projections\n\nMachine: {machine()}; SQLite {sqlite3.sqlite_version}.\n\n"
        f"### Rebuilding state from one {LENGTH:,}-event stream (events/s)\n\n"
        + table(results, baseline=theirs)
        + f"\n\nEventReplay vs eventsourcing repository.get: "
        f"{_rate(results, replay) / _rate(results, theirs):.2f}x; "
        f"replay machinery on top of the plain reader: {overhead:.2f}x the reader's time; "
        f"exactly-once projection vs plain replay: "
        f"{_rate(results, projection) / _rate(results, replay):.2f}x.\n\n"
        f"### A large read model, live events committed one by one (events/s)\n\n"
        + table(live, baseline=json_state)
        + f"\n\nPer live event: {1000 / _rate(live, json_state):.1f} ms with the JSON state, "
        f"{1000 / _rate(live, own_table):.2f} ms with the table.\n\n"
        f"### The last hour of a {log_length:,}-event log (window events/s)\n\n"
        + table(window, baseline=filtering, unit="window events/s")
        + f"\n\nOne replay of the hour: {WINDOW / _rate(window, seeking) * 1000:.0f} ms seeking, "
        f"{WINDOW / _rate(window, filtering) * 1000:.0f} ms reading the whole log.\n"
    )


if __name__ == "__main__":
    print(asyncio.run(main("--quick" in sys.argv)))
