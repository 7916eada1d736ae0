"""Filtered reads of the event store: an index against the scan it replaced, and what the
index costs appends.

A log of 200,000 events in 2,000 streams of 20 categories (``cat0.*`` to ``cat19.*``),
of 20 types (``kind0.happened`` to ``kind19.happened``) and ten events of a rare type
spread over it. Each read starts at position 0: one category (10,000 events), one type
(10,000), the rare type (10). "scan" is the same store with the backend's
``read_all_matching`` replaced by the contract's default (a scan through ``read_all``),
which is what every filtered read did before the index. Appends are ``bench_store``'s
cases, run with the index tables filled and with the previous schema's bulk fill
(SQLite: ``INDEX_TAIL`` without type_index and category_index) or without the two
indexes (PostgreSQL: dropped after migration).

Run: ``python -m benchmarks.bench_store_filtered`` (``--quick`` for a short run).
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks._harness import Runner, compare, machine, table
from benchmarks.bench_store import (
    TASKS,
    _drop_postgres_databases,
    _fresh_db,
    _pepperpy_batched,
    _pepperpy_concurrent,
    _postgres_up,
    _postgres_url,
    _sqlite_url,
    run_as_script,
)
from pepperpy.event import EventStore
from pepperpy.event.store import _sqlite_log
from pepperpy.event.store._sqlite_schema import INDEX_TAIL
from pepperpy.event.store.base import StoreBackend

EVENTS = 200_000
STREAMS = 2_000
CATEGORIES = 20
TYPES = 20
RARE = 10
#: events per append while the log is filled, and appending tasks
FILL_BATCH = 10
FILL_TASKS = 20

#: the previous schema's bulk fill: stream_index, id_index and time_index only
_PREVIOUS_INDEX_TAIL: tuple[str, ...] = INDEX_TAIL[:3]

READS: dict[str, dict[str, Any]] = {
    "one category (streams='cat7.*')": {"streams": "cat7.*"},
    "one type (types='kind3.happened')": {"types": "kind3.happened"},
    "a rare type (types='rare.happened')": {"types": "rare.happened"},
}


def _type_of(number: int, events: int) -> str:
    if number % (events // RARE) == events // RARE // 2:
        return "rare.happened"
    return f"kind{number % TYPES}.happened"


async def _fill(url: str, events: int) -> None:
    """The log: ``FILL_TASKS`` tasks appending ``FILL_BATCH`` events at a time; batch ``b``
    goes to stream ``b % STREAMS`` of category ``b % CATEGORIES``, so categories and
    types interleave along the log."""
    async with EventStore(url) as store:
        batches = events // FILL_BATCH

        async def task(number: int) -> None:
            for batch in range(number, batches, FILL_TASKS):
                stream = f"cat{batch % CATEGORIES}.{batch % STREAMS}"
                first = batch * FILL_BATCH
                records = [
                    {"type": _type_of(first + n, events), "data": {"n": first + n}}
                    for n in range(FILL_BATCH)
                ]
                await store.append(stream, records)

        await asyncio.gather(*(task(number) for number in range(FILL_TASKS)))


def _scanning(store: EventStore) -> EventStore:
    """``store`` with its backend's filtered reads done by the contract's scan."""
    backend: Any = store.backend
    backend.read_all_matching = functools.partial(StoreBackend.read_all_matching, backend)
    return store


async def _count(store: EventStore, filters: dict[str, Any], how: str) -> int:
    """How many events a read gives: from position 0 awaited whole ("await") or iterated
    in pages ("iterate"), or the last 10 backwards from the head ("tail")."""
    if how == "iterate":
        return len([event async for event in store.read_all(0, **filters)])
    if how == "tail":
        return len(await store.read_all(backwards=True, limit=10, **filters))
    return len(await store.read_all(0, **filters))


async def _reads(url: str, passes: int) -> list[tuple[str, float, float, int]]:
    """(read, median seconds through the index, median seconds by the scan, events)."""
    indexed = EventStore(url)
    scanned = _scanning(EventStore(url))
    cases = [(name, filters, "await") for name, filters in READS.items()]
    # a projection's catch-up iterates (pages of 500)
    category, filters = next(iter(READS.items()))
    cases.append((f"{category}, async for (pages of 500)", filters, "iterate"))
    # pepperpy-event tail -n 10 --types one.type: backwards from the head
    kind, filters = list(READS.items())[1]
    cases.append((f"the last 10 of {kind}, backwards from the head", filters, "tail"))
    rare, filters = list(READS.items())[2]
    cases.append((f"the last 10 of {rare}, backwards from the head", filters, "tail"))
    out: list[tuple[str, float, float, int]] = []
    try:
        for name, filters, how in cases:
            wanted = await _count(indexed, filters, how)
            samples: dict[str, list[float]] = {"index": [], "scan": []}
            for _ in range(passes):
                for kind, store in (("index", indexed), ("scan", scanned)):
                    start = time.perf_counter()
                    count = await _count(store, filters, how)
                    samples[kind].append(time.perf_counter() - start)
                    if count != wanted:
                        raise AssertionError(f"{name} ({kind}): {count} events, not {wanted}")
            index, scan = (statistics.median(samples[kind]) for kind in ("index", "scan"))
            out.append((name, index, scan, wanted))
    finally:
        await indexed.close()
        await scanned.close()
    return out


def _read_table(rows: list[tuple[str, float, float, int]]) -> str:
    lines = [
        "| read | events | index (ms, median) | scan (ms, median) | scan / index |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, index, scan, count in rows:
        lines.append(
            f"| {name} | {count:,} | {index * 1000:,.1f} | {scan * 1000:,.1f} "
            f"| {scan / index:.1f}x |"
        )
    return "\n".join(lines)


def _previous_fill(run: Runner) -> Runner:
    """``run`` with the SQLite writer filling the previous schema's index tables only."""

    async def previous(n: int) -> float:
        # the writer thread reads the statements from its module at each bulk fill
        log: Any = _sqlite_log
        current = log.INDEX_TAIL
        log.INDEX_TAIL = _PREVIOUS_INDEX_TAIL
        try:
            return await run(n)
        finally:
            log.INDEX_TAIL = current

    return previous


def _mixed_concurrent(url_factory: Callable[[], Awaitable[str]]) -> Runner:
    """``TASKS`` tasks appending one event each time, over 20 categories and 20 types (the
    filter indexes then get entries under many keys per bulk fill)."""

    async def run(n: int) -> float:
        async with EventStore(await url_factory()) as store:
            await store.append("warm.up", {"type": "warm"})
            per_task = n // TASKS

            async def task(number: int) -> None:
                for i in range(per_task):
                    k = i * TASKS + number
                    await store.append(
                        f"cat{k % CATEGORIES}.{k % STREAMS}",
                        {"type": f"kind{k % TYPES}.happened", "data": {"n": k}},
                    )

            start = time.perf_counter()
            await asyncio.gather(*(task(number) for number in range(TASKS)))
            return time.perf_counter() - start

    return run


def _without_pg_indexes(make: Callable[[Callable[[], Awaitable[str]]], Runner]) -> Runner:
    """The runner ``make`` gives for PostgreSQL databases whose filter indexes are dropped
    after migration (the previous schema's indexes)."""

    async def url() -> str:
        import asyncpg

        made = await _postgres_url()
        async with EventStore(made) as store:
            await store.head()  # migrated
        connection = await asyncpg.connect(made)
        try:
            await connection.execute(
                "DROP INDEX pepperpy_events_type; DROP INDEX pepperpy_events_category"
            )
        finally:
            await connection.close()
        return made

    return make(url)


async def main(quick: bool) -> str:
    passes = 3 if quick else 5
    events = 20_000 if quick else EVENTS
    sections = [
        f"## Event store: filtered reads\n\nMachine: {machine()}; SQLite "
        f"{sqlite3.sqlite_version}. {events:,} events in {STREAMS:,} streams of {CATEGORIES} "
        f"categories, {TYPES} types and {RARE} events of a rare one; each read from "
        "position 0, `await store.read_all(0, ...)`, unless said.\n"
    ]
    path = _fresh_db()
    started = time.perf_counter()
    await _fill(f"sqlite:///{path}?synchronous=NORMAL", events)
    filled = time.perf_counter() - started
    size = os.path.getsize(path)
    connection = sqlite3.connect(path)
    try:
        index_pages = (
            {
                name: pages
                for name, pages in connection.execute(
                    "SELECT name, count(*) FROM dbstat WHERE name IN ('type_index', "
                    "'category_index', 'events') GROUP BY name"
                )
            }
            if _has_dbstat(connection)
            else {}
        )
    finally:
        connection.close()
    rows = await _reads(f"sqlite:///{path}", passes)
    sections.append(
        f"### SQLite\n\nFilled in {filled:.1f} s (synchronous=NORMAL); file {size / 1e6:.1f} MB"
        + (
            f", of which events {index_pages.get('events', 0) * 4096 / 1e6:.1f} MB, "
            f"type_index {index_pages.get('type_index', 0) * 4096 / 1e6:.1f} MB, "
            f"category_index {index_pages.get('category_index', 0) * 4096 / 1e6:.1f} MB"
            if index_pages
            else ""
        )
        + ".\n\n"
        + _read_table(rows)
        + "\n"
    )

    appends = 2_000 if quick else 20_000
    with_index = "with type_index and category_index"
    previous = "previous schema's bulk fill"
    sqlite_appends = await compare(
        {
            f"{TASKS} tasks, single events (bench_store), {with_index}": _pepperpy_concurrent(
                _sqlite_url
            ),
            f"{TASKS} tasks, single events (bench_store), {previous}": _previous_fill(
                _pepperpy_concurrent(_sqlite_url)
            ),
            f"{TASKS} tasks, single events, 20 categories x 20 types, {with_index}": (
                _mixed_concurrent(_sqlite_url)
            ),
            f"{TASKS} tasks, single events, 20 categories x 20 types, {previous}": (
                _previous_fill(_mixed_concurrent(_sqlite_url))
            ),
            f"1000-event batches (bench_store), {with_index}": _pepperpy_batched(1000),
            f"1000-event batches (bench_store), {previous}": _previous_fill(
                _pepperpy_batched(1000)
            ),
        },
        operations=appends,
        passes=passes,
    )
    sections.append(
        "#### SQLite appends (events/s)\n\n"
        + table(
            sqlite_appends,
            baseline=f"{TASKS} tasks, single events (bench_store), {previous}",
        )
        + "\n"
    )

    if _postgres_up():
        try:
            url = await _postgres_url()
            started = time.perf_counter()
            await _fill(url, events)
            filled = time.perf_counter() - started
            rows = await _reads(url, passes)
            sections.append(
                f"### PostgreSQL (loopback)\n\nFilled in {filled:.1f} s.\n\n"
                + _read_table(rows)
                + "\n"
            )
            pg_appends = await compare(
                {
                    f"1 store, {TASKS} tasks (bench_store), with the indexes": (
                        _pepperpy_concurrent(_postgres_url)
                    ),
                    f"1 store, {TASKS} tasks (bench_store), without them": _without_pg_indexes(
                        _pepperpy_concurrent
                    ),
                    f"1 store, {TASKS} tasks, 20 categories x 20 types, with the indexes": (
                        _mixed_concurrent(_postgres_url)
                    ),
                    f"1 store, {TASKS} tasks, 20 categories x 20 types, without them": (
                        _without_pg_indexes(_mixed_concurrent)
                    ),
                },
                operations=800 if quick else 4_000,
                passes=passes,
            )
            sections.append(
                "#### PostgreSQL appends (events/s)\n\n"
                + table(pg_appends, baseline=f"1 store, {TASKS} tasks (bench_store), without them")
                + "\n"
            )
        finally:
            await _drop_postgres_databases()
    else:
        sections.append("### PostgreSQL\n\nSkipped: no server on 127.0.0.1:5432.\n")
    return "\n".join(sections)


def _has_dbstat(connection: sqlite3.Connection) -> bool:
    try:
        connection.execute("SELECT 1 FROM dbstat LIMIT 1")
    except sqlite3.OperationalError:
        return False
    return True


if __name__ == "__main__":
    run_as_script(main)
