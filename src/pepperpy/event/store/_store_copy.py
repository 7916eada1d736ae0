"""Copies of a store's log to another store, as stored (:func:`copy_store`).

A copy moves stored records between backends (``read_stored`` and ``write_stored`` of
the backend contract), never through ``Event`` objects: every event keeps its global
position (gaps included: checkpoints are global positions), stream, stream position, id,
type, version, data, metadata, timestamp, source, subject and ``recorded_at``; data
encrypted at rest stays ciphertext (the destination reads it with the same keys) and no
upcaster runs. Events of deleted streams are copied too, hidden as they are in the
source, so the destination's streams have the source's positions and deletions.

The destination must be empty or hold a copy of the start of the source (its first and
newest events are the source's, at the same positions): the copy then goes on after its
newest event, so it resumes after an interruption and brings a copy up to date. Each
batch is one transaction of the destination, refused whole if anything else wrote to it
meanwhile. Snapshots are not copied (they are a cache: aggregates save new ones), nor
checkpoints (they live beside the store, and keep their meaning on the copy).
See ``docs/store.md``, "Moving a store".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from .._errors import ConfigurationError, StoreError
from ._store import EventStore
from ._store_security import refuse_plain, sealed_destination
from .base import Row, StoreBackend, StoredRow

__all__ = [
    "DEFAULT_BATCH",
    "CopyProgress",
    "CopyReport",
    "check_batch",
    "check_progress",
    "copy_store",
    "hidden_from",
    "opened_backend",
]

#: events a batch of a copy reads and writes (one transaction of the destination)
DEFAULT_BATCH = 1000
#: the largest batch_size taken
MAX_BATCH = 100_000
#: stream states read at once (one query each store) when deletions are carried over
_LOOKUPS = 1000


@dataclass(frozen=True, slots=True)
class CopyProgress:
    """Where a running copy, export or import stands; passed to its ``progress`` callback
    after each batch.

    ``copied``: events written so far by this run; ``position``: the global position of
    the last of them (None: none yet); ``head``: the source's newest event, where the
    copy stops (None for an import, whose file's end is not known in advance);
    ``elapsed``: seconds since the run started.
    """

    copied: int
    position: int | None
    head: int | None
    elapsed: float


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What a finished copy, export or import did.

    ``copied``: events written by this run; ``resumed_after``: the global position of
    the newest event the destination held before (its copy of the start of the source,
    checked and left as it is; None: it was empty); ``last_position``: the global
    position of the newest event the destination holds now (None: it is empty);
    ``deletions``: streams whose deletion on the source was carried over to events the
    destination held already; ``duration`` in seconds.
    """

    copied: int
    resumed_after: int | None
    last_position: int | None
    deletions: int
    duration: float


def check_batch(batch_size: object) -> int:
    """``batch_size``, an int from 1 to :data:`MAX_BATCH`."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
    if not 1 <= batch_size <= MAX_BATCH:
        raise ConfigurationError(f"batch_size must be from 1 to {MAX_BATCH}, got {batch_size}")
    return batch_size


def check_progress(progress: object) -> Callable[[CopyProgress], object] | None:
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable or None, got {type(progress).__name__}")
    return progress


@contextlib.asynccontextmanager
async def opened_backend(
    store: EventStore | str, what: str, *, reading: bool = False
) -> AsyncIterator[StoreBackend]:
    """The backend of ``store`` (an :class:`EventStore` or a store URL, opened here and
    closed after); ``what`` names it in errors.

    A store with ``access`` or ``audit`` is refused: a copy moves stored records around
    the store's access checks and writes no audit entries. A URL opened for ``reading``
    never makes an SQLite file: it must be an event store already.
    """
    if isinstance(store, EventStore):
        if store.access is not None or store.audit is not None:
            raise ConfigurationError(
                f"the {what} store has access= or audit= set: a copy reads and writes "
                "stored records directly, without access checks or audit entries; pass "
                "its URL, or a store opened without them, to copy it as its administrator"
            )
        if store.closed:
            raise ConfigurationError(f"the {what} store is closed")
        yield store.backend
        return
    if not isinstance(store, str):
        raise TypeError(f"{what} must be an EventStore or a store URL, got {type(store).__name__}")
    opened = EventStore(store)
    try:
        backend = opened.backend
        if reading:
            from .sqlite import SQLiteBackend

            if isinstance(backend, SQLiteBackend):
                backend.create = False
        yield backend
    finally:
        await opened.close()


def hidden_from(rows: Sequence[StoredRow]) -> dict[str, int]:
    """For ``write_stored``'s ``visible_from``: each stream with hidden events among
    ``rows``, and the position past the last of them."""
    found: dict[str, int] = {}
    for row in rows:
        if not row[12] and row[2] + 1 > found.get(row[1], 0):
            found[row[1]] = row[2] + 1
    return found


async def copy_store(
    source: EventStore | str,
    destination: EventStore | str,
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[CopyProgress], object] | None = None,
) -> CopyReport:
    """Copy the events of ``source`` that ``destination`` lacks, as stored.

    Both are :class:`EventStore` objects (left open) or store URLs (opened and closed
    here). The destination must be empty, or hold a copy of the start of the source:
    its first and newest events are the source's, at the same global positions;
    otherwise :class:`~pepperpy.event.StoreError` is raised before anything is written.
    The copy goes on after the destination's newest event up to the source's newest
    event as it was when the copy started, ``batch_size`` events at a time, each batch
    one transaction of the destination, refused whole (StoreError) if anything else
    wrote to the destination meanwhile. Running it again resumes an interrupted copy,
    or brings a copy up to date. ``progress`` is called with a :class:`CopyProgress`
    after each batch.

    Every event keeps its global position, gaps included, so checkpoints taken on the
    source hold on the copy; appends to the destination afterwards get positions past
    them. Events are copied as stored: encrypted data stays encrypted (open the copy
    with the same keys), no upcaster runs, deleted streams stay deleted. Snapshots and
    checkpoints are not copied. Streams the source deleted after their events were
    copied are deleted on the destination too (the states of the streams visible
    there are read on both stores, a thousand streams a query).
    """
    size = check_batch(batch_size)
    report = check_progress(progress)
    started = time.monotonic()
    async with (
        opened_backend(source, "source", reading=True) as reading,
        opened_backend(destination, "destination") as writing,
    ):
        if reading is writing:
            raise ConfigurationError("the source and the destination are the same store")
        sealed = sealed_destination(destination)
        head = await writing.head()
        await _check_prefix(reading, writing, head)
        target = await reading.head()
        after, copied, deletions = head, 0, 0
        while target is not None and (after is None or after < target):
            page = await reading.read_stored(0 if after is None else after + 1, size)
            page = [row for row in page if row[0] <= target]
            if not page:
                break
            rows: list[Row] = [tuple(row[:12]) for row in page]
            if sealed:
                refuse_plain(rows)
            visible_from, carried = await _deletions(reading, writing, page)
            await writing.write_stored(rows, after, visible_from)
            deletions += carried
            copied += len(rows)
            after = rows[-1][0]
            if report is not None:
                report(CopyProgress(copied, after, target, time.monotonic() - started))
        if head is not None:
            deletions += await _carry_deletions(reading, writing, after)
    return CopyReport(copied, head, after, deletions, time.monotonic() - started)


async def _deletions(
    source: StoreBackend, destination: StoreBackend, page: Sequence[StoredRow]
) -> tuple[dict[str, int], int]:
    """``write_stored``'s ``visible_from`` for a page: its hidden events, and the
    deletions the source made of its streams since (their first visible position now);
    with how many streams whose events the destination holds already that deletes.

    A stream deleted and started again past the rows the destination holds gets its
    deletion with the page's rows, not after the copy: the destination never shows
    its old events beside the new ones (an id in both, say), even when the copy is
    interrupted.
    """
    found = hidden_from(page)
    names = sorted({row[1] for row in page})
    for start in range(0, len(names), _LOOKUPS):
        states = await source.stream_states(names[start : start + _LOOKUPS])
        for name, state in states.items():
            if state.first_visible > found.get(name, 0):
                found[name] = state.first_visible
    # counted over every stream the page hides events of: one whose hidden rows are in
    # the page, deleted after the rows the destination shows, is deleted there too (only
    # those the source's states moved on were counted, so such a copy reported none)
    carried, hiding = 0, sorted(found)
    for start in range(0, len(hiding), _LOOKUPS):
        ours = await destination.stream_states(hiding[start : start + _LOOKUPS])
        carried += sum(
            1
            for name, state in ours.items()
            if state.next_position > state.first_visible < found[name]
        )
    return found, carried


async def _check_prefix(source: StoreBackend, destination: StoreBackend, head: int | None) -> None:
    """Refuse a destination that does not hold a copy of the start of ``source``: its
    first and newest events must be the source's."""
    if head is None:
        return
    first = await destination.read_stored(0, 1)
    newest = await destination.read_stored(head, 1)
    for ours in first[:1] + newest[:1]:
        theirs = await source.read_stored(ours[0], 1)
        if not theirs or theirs[0][0] != ours[0] or theirs[0][3] != ours[3]:
            found = (
                f"the source has {theirs[0][3]!r} of stream {theirs[0][1]!r} there"
                if theirs and theirs[0][0] == ours[0]
                else "the source has no event there"
            )
            raise StoreError(
                f"the destination is not a copy of the start of the source: its event at "
                f"global position {ours[0]} is {ours[3]!r} of stream {ours[1]!r}, and {found}; "
                "nothing was written (copy into an empty store)"
            )


async def _carry_deletions(
    source: StoreBackend, destination: StoreBackend, after: int | None
) -> int:
    """Delete on ``destination`` what the source deleted since those events were copied:
    each stream visible on the destination whose first visible position is further on
    in the source. Returns how many streams changed."""
    names = await destination.stream_names()
    changed = 0
    for start in range(0, len(names), _LOOKUPS):
        chunk = names[start : start + _LOOKUPS]
        theirs, ours = await asyncio.gather(
            source.stream_states(chunk), destination.stream_states(chunk)
        )
        raised = {
            name: state.first_visible
            for name, state in theirs.items()
            if name in ours and state.first_visible > ours[name].first_visible
        }
        if raised:
            await destination.write_stored([], after, raised)
            changed += len(raised)
    return changed
