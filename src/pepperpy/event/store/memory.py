"""The in-memory backend: first-class, used by tests and the default ``EventStore()``.

It keeps the same serialized rows as the durable backends (so events read back look
exactly alike on every backend) in a list indexed by global position; a position no event
holds (a gap a copy of another store brought, see ``write_stored``) holds None. Every method runs
without awaiting in the middle, which makes each append atomic on the event loop (and
an append whose caller is cancelled is either done or not started: there is no window).
"""

from __future__ import annotations

import bisect
import heapq
import time
from collections.abc import Mapping, Sequence

from .._errors import ClosedError
from ._names_page import in_prefix
from ._time_blocks import BLOCK, PositionRange, note_rows, ranges_of
from ._waiters import LoopWaiters
from .base import (
    AppendResult,
    ExpectedVersion,
    LogPage,
    MinuteCountRow,
    MultiAppend,
    NewRecord,
    PendingAppend,
    Row,
    SnapshotRow,
    StoreBackend,
    StoredRow,
    StreamState,
    check_ids,
    check_snapshot_version,
    check_stored,
    minute_counts,
    plan_append,
    plan_group,
    tally_minutes,
)

__all__ = ["MemoryBackend"]


class _Stream:
    __slots__ = ("ids", "rows", "state")

    def __init__(self) -> None:
        self.state = StreamState()
        self.rows: list[Row] = []  # index == stream position, deleted ones included
        self.ids: dict[str, int] = {}  # visible event id -> position


class MemoryBackend(StoreBackend):
    """Streams and the global log in process memory (lost when the process ends)."""

    def __init__(self) -> None:
        self._log: list[Row | None] = []  # index == global position (None: a gap)
        #: the global positions of each type's events, and of each category's (a stream
        #: name's first token), in order: filtered reads look them up
        self._by_type: dict[str, list[int]] = {}
        self._by_category: dict[str, list[int]] = {}
        self._streams: dict[str, _Stream] = {}
        self._snapshots: dict[str, SnapshotRow] = {}
        #: block -> [least, greatest] timestamp of the rows written in it (see _time_blocks)
        self._time_blocks: dict[int, list[int]] = {}
        self._waiters = LoopWaiters()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the event store is closed")

    async def append(
        self, stream: str, records: Sequence[NewRecord], expected_version: ExpectedVersion
    ) -> AppendResult:
        self._check_open()
        entry = self._streams.get(stream)
        state = entry.state if entry is not None else StreamState()
        ids = [record.id for record in records]
        existing: dict[str, tuple[int, int]] = {}
        if entry is not None:
            for event_id in ids:
                position = entry.ids.get(event_id)
                if position is not None:
                    existing[event_id] = (position, entry.rows[position][0])
        plan = plan_append(stream, state, expected_version, ids, existing)
        if isinstance(plan, AppendResult):
            return plan
        if entry is None:
            entry = self._streams[stream] = _Stream()
        recorded_at = time.time_ns() // 1000
        log = self._log
        position = entry.state.next_position
        by_category = self._by_category.setdefault(stream.split(".", 1)[0], [])
        for index in plan:
            record = records[index]
            row = (len(log), stream, position, *record, recorded_at)
            self._by_type.setdefault(record.type, []).append(len(log))
            by_category.append(len(log))
            log.append(row)
            entry.rows.append(row)
            entry.ids[record.id] = position
            position += 1
        note_rows(self._time_blocks, entry.rows[len(entry.rows) - len(plan) :])
        entry.state.next_position = position
        entry.state.deleted = False
        self._waiters.wake()
        return AppendResult(position - 1, len(log) - 1)

    async def append_streams(self, appends: Sequence[PendingAppend]) -> list[AppendResult]:
        """Decided whole by :func:`plan_group` (one :class:`MultiAppend`), then written
        without awaiting: atomic on the event loop, as ``append`` is."""
        self._check_open()
        states: dict[str, StreamState] = {}
        known: dict[tuple[str, str], tuple[int, int]] = {}
        for stream, records, _ in appends:
            entry = self._streams.get(stream)
            if entry is None:
                continue
            state = entry.state
            states[stream] = StreamState(state.next_position, state.first_visible, state.deleted)
            for record in records:
                position = entry.ids.get(record.id)
                if position is not None:
                    known[(stream, record.id)] = (position, entry.rows[position][0])
        plan = plan_group([MultiAppend.of(appends)], states, known)
        first = len(self._log)
        (outcome,) = plan.outcomes(first)
        if isinstance(outcome, BaseException):
            raise outcome
        recorded_at = time.time_ns() // 1000
        log = self._log
        for offset, stream, position, record in plan.rows:
            entry = self._streams.get(stream)
            if entry is None:
                entry = self._streams[stream] = _Stream()
            row = (first + offset, stream, position, *record, recorded_at)
            self._by_type.setdefault(record.type, []).append(len(log))
            self._by_category.setdefault(stream.split(".", 1)[0], []).append(len(log))
            log.append(row)
            entry.rows.append(row)
            entry.ids[record.id] = position
        note_rows(self._time_blocks, [row for row in log[first:] if row is not None])
        for stream, next_position in plan.next_positions.items():
            self._streams[stream].state.next_position = next_position
            self._streams[stream].state.deleted = False
        if plan.count:
            self._waiters.wake()
        results: list[AppendResult] = outcome
        return results

    async def read_stream(
        self, stream: str, start: int | None, backwards: bool, limit: int
    ) -> list[Row]:
        self._check_open()
        entry = self._streams.get(stream)
        if entry is None or limit <= 0:
            return []
        first = entry.state.first_visible
        rows = entry.rows
        if not backwards:
            begin = first if start is None else max(start, first)
            return rows[begin : begin + limit]
        last = len(rows) - 1 if start is None else min(start, len(rows) - 1)
        stop = max(first, last - limit + 1)
        if last < stop:
            return []
        return rows[stop : last + 1][::-1]

    async def read_all(self, from_position: int, limit: int) -> LogPage:
        self._check_open()
        scanned = self._log[from_position : from_position + limit]
        streams = self._streams
        rows = [
            row
            for row in scanned
            if row is not None and row[2] >= streams[row[1]].state.first_visible
        ]
        return LogPage(rows, from_position + len(scanned), len(scanned) == limit)

    async def read_all_matching(
        self,
        from_position: int,
        limit: int,
        column: str,
        prefixes: Sequence[str],
        backwards: bool = False,
    ) -> LogPage:
        """From the positions of each type (or category) with one of ``prefixes``: up to
        ``limit`` of each from ``from_position`` on (or down), the first ``limit`` of
        them all. A category holds every stream under its first token; the caller's
        patterns narrow a longer prefix."""
        self._check_open()
        if limit <= 0:
            return LogPage([], from_position, True)
        if column == "type":
            index = self._by_type
            wanted = [(prefix, prefix + ".") for prefix in prefixes]
            keys = [key for key in index if any(key == p or key.startswith(d) for p, d in wanted)]
        elif column == "stream":
            index = self._by_category
            keys = sorted({prefix.split(".", 1)[0] for prefix in prefixes})
        else:
            raise ValueError(f"column must be 'type' or 'stream', got {column!r}")
        found: list[int] = []
        for key in keys:
            positions = index.get(key, [])
            if backwards:
                end = bisect.bisect_right(positions, from_position)
                found += positions[max(0, end - limit) : end]
            else:
                begin = bisect.bisect_left(positions, from_position)
                found += positions[begin : begin + limit]
        page = sorted(found, reverse=backwards)[:limit]
        streams = self._streams
        log = self._log
        rows = [
            row
            for row in (log[position] for position in page)
            if row is not None and row[2] >= streams[row[1]].state.first_visible
        ]
        if len(page) == limit:
            if backwards:
                return LogPage(rows, page[-1] - 1, page[-1] > 0)
            return LogPage(rows, page[-1] + 1, True)
        return LogPage(rows, -1 if backwards else max(from_position, len(self._log)), False)

    async def read_all_backwards(self, from_position: int, limit: int) -> LogPage:
        self._check_open()
        top = min(from_position, len(self._log) - 1)
        if top < 0 or limit <= 0:
            return LogPage([], -1 if top < 0 else from_position, False)
        bottom = max(0, top - limit + 1)
        streams = self._streams
        rows = [
            row
            for row in reversed(self._log[bottom : top + 1])
            if row is not None and row[2] >= streams[row[1]].state.first_visible
        ]
        return LogPage(rows, bottom - 1, bottom > 0)

    async def head(self) -> int | None:
        self._check_open()
        return len(self._log) - 1 if self._log else None

    async def count_by_minute(self, since: int) -> list[MinuteCountRow]:
        """A pass over the whole log: memory holds no index on ``recorded_at``."""
        self._check_open()
        streams = self._streams
        counts: dict[tuple[int, str], int] = {}
        tally_minutes(
            (
                row
                for row in self._log
                if row is not None
                and row[11] >= since
                and row[2] >= streams[row[1]].state.first_visible
            ),
            since,
            counts,
        )
        return minute_counts(counts)

    async def time_ranges(
        self, start: int, end: int, from_position: int
    ) -> list[PositionRange] | None:
        self._check_open()
        blocks = self._time_blocks
        first = max(from_position, 0) // BLOCK
        matching = sorted(
            block
            for block, (low, high) in blocks.items()
            if block >= first and high >= start and low < end
        )
        return ranges_of(matching, max(blocks, default=None), from_position)

    async def read_stored(self, from_position: int, limit: int) -> list[StoredRow]:
        self._check_open()
        log, streams = self._log, self._streams
        found: list[StoredRow] = []
        position = max(from_position, 0)
        while len(found) < limit and position < len(log):
            row = log[position]
            if row is not None:
                found.append((*row, row[2] >= streams[row[1]].state.first_visible))
            position += 1
        return found

    async def write_stored(
        self, rows: Sequence[Row], after: int | None, visible_from: Mapping[str, int]
    ) -> None:
        """Checked whole first, then written without awaiting (atomic on the loop)."""
        self._check_open()

        def next_position(stream: str) -> int:
            entry = self._streams.get(stream)
            return 0 if entry is None else entry.state.next_position

        following = check_stored(rows, await self.head(), after, next_position)

        def first_visible(stream: str) -> int:
            entry = self._streams.get(stream)
            return 0 if entry is None else entry.state.first_visible

        known: dict[tuple[str, str], int] = {}
        for row in rows:
            entry = self._streams.get(row[1])
            held = None if entry is None else entry.ids.get(row[3])
            if held is not None:
                known[(row[1], row[3])] = held
        check_ids(rows, visible_from, first_visible, known)
        log = self._log
        for row in rows:
            row = tuple(row[:12])
            stream = row[1]
            entry = self._streams.get(stream)
            if entry is None:
                entry = self._streams[stream] = _Stream()
            log.extend([None] * (row[0] - len(log)))  # the source's gap, kept
            self._by_type.setdefault(row[4], []).append(row[0])
            self._by_category.setdefault(stream.split(".", 1)[0], []).append(row[0])
            log.append(row)
            entry.rows.append(row)
            if row[2] >= entry.state.first_visible:  # appends look up visible ids only
                entry.ids[row[3]] = row[2]
        note_rows(self._time_blocks, rows)
        for stream, position in following.items():
            self._streams[stream].state.next_position = position
        for stream in {*following, *visible_from}:
            entry = self._streams.get(stream)
            if entry is None:
                entry = self._streams[stream] = _Stream()
            state = entry.state
            if visible_from.get(stream, 0) > state.first_visible:
                state.first_visible = visible_from[stream]
                self._snapshots.pop(stream, None)
                # hidden events' ids are not looked up by appends (as after delete_stream)
                hidden = [key for key, at in entry.ids.items() if at < state.first_visible]
                for event_id in hidden:
                    del entry.ids[event_id]
            state.deleted = state.next_position <= state.first_visible > 0
        if rows:
            self._waiters.wake()

    async def stream_state(self, stream: str) -> StreamState | None:
        self._check_open()
        entry = self._streams.get(stream)
        if entry is None:
            return None
        state = entry.state
        return StreamState(state.next_position, state.first_visible, state.deleted)

    async def stream_states(self, streams: Sequence[str]) -> dict[str, StreamState]:
        self._check_open()
        found: dict[str, StreamState] = {}
        for stream in streams:
            entry = self._streams.get(stream)
            if entry is not None:
                state = entry.state
                found[stream] = StreamState(state.next_position, state.first_visible, state.deleted)
        return found

    async def stream_names(self) -> list[str]:
        self._check_open()
        return sorted(
            name for name, entry in self._streams.items() if entry.state.version is not None
        )

    async def stream_names_page(
        self, after: str | None, limit: int, prefix: str | None = None
    ) -> list[str]:
        """One pass over the streams keeping the ``limit`` smallest names that qualify
        (``heapq``): no sorted copy of every name per page."""
        self._check_open()
        if limit <= 0:
            return []
        wanted = (
            name
            for name, entry in self._streams.items()
            if (after is None or name > after)
            and in_prefix(name, prefix)
            and entry.state.version is not None
        )
        return heapq.nsmallest(limit, wanted)

    async def delete_stream(self, stream: str) -> bool:
        self._check_open()
        entry = self._streams.get(stream)
        self._snapshots.pop(stream, None)
        if entry is None or entry.state.version is None:
            return False
        entry.state.first_visible = entry.state.next_position
        entry.state.deleted = True
        entry.ids.clear()
        return True

    async def save_snapshot(self, stream: str, snapshot: SnapshotRow) -> None:
        self._check_open()
        entry = self._streams.get(stream)
        check_snapshot_version(stream, None if entry is None else entry.state, snapshot.version)
        self._snapshots[stream] = snapshot

    async def load_snapshot(self, stream: str) -> SnapshotRow | None:
        self._check_open()
        return self._snapshots.get(stream)

    async def wait(self, position: int) -> None:
        while True:
            woken = self._waiters.register()
            if len(self._log) > position or self._closed:
                return
            await woken.wait()

    async def close(self) -> None:
        self._closed = True
        self._waiters.wake()
