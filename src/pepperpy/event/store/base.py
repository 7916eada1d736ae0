"""The store backend contract: the whole of what a storage engine must implement.

A backend keeps streams of already-serialized records and a global log over them.
Everything else :class:`~pepperpy.event.EventStore` promises (accepting ``Event``/dict
input, validation, JSON encoding, upcasting, paging readers, pattern filters,
subscriptions' catch-up-then-live logic, snapshot values) is built once on top of these
methods, so the memory, SQLite and PostgreSQL backends look alike.

Contract, checked by the store conformance suite (``tests/store/conformance.py``):

* ``append(stream, records, expected_version)`` writes ``records`` atomically after
  :func:`plan_append` accepted them (inside the backend's own lock or transaction),
  gives them consecutive stream positions and increasing global positions, and returns
  only once the write is durable. Global positions become visible to readers in order:
  a reader that has seen position ``n`` never later sees a new event below ``n``.
* ``append_streams(appends)`` writes several streams' appends as one atomic unit
  (:meth:`StoreBackend.append_streams`); a backend without it refuses the call.
* ``read_stream`` / ``read_all`` return one page of :data:`Row` tuples, hiding events of
  deleted streams (positions below the stream's ``first_visible``). ``read_all`` scans
  ``limit`` rows of the log and says where the scan ended (:class:`LogPage`), so readers
  move past hidden events instead of reading them again; ``read_all_backwards`` scans
  down from a position, newest first, the same way.
* ``read_all_matching`` reads a page of the rows of some types or stream categories
  (:meth:`StoreBackend.read_all_matching`); its default scans with ``read_all``.
* ``head()`` is the global position of the newest event written (hidden ones included),
  None for an empty log: every event at or below it is committed, and none can appear
  below it later.
* ``wait(position)`` returns once an event at ``position`` or later may exist (it may
  return early; callers re-read), so live subscriptions need no busy polling.
* ``close()`` releases connections and makes pending ``wait`` calls return.
* ``count_by_minute(since)`` counts the visible events recorded since then by (minute,
  type), exactly, from columns and indexes (no event decoded). It has a default: a scan
  of the log through ``read_all``, so that a backend written before it existed keeps
  working (exact, if slow); the built-in backends answer it from an index. ``head`` and
  ``read_all_backwards`` came later and have defaults built on ``read_all`` for the same
  reason (a bisection, and windows read forwards); the built-in backends answer each
  with one query.
* ``time_ranges(start, end, from_position)`` says where in the log events with a
  timestamp in a window can be (:meth:`StoreBackend.time_ranges`), so that ``replay_all``
  with ``start_time``/``end_time`` reads those positions only. Its default, None, means
  "no summary kept": every position may hold one, and the replay reads the whole log from
  its start, as before the method existed. The built-in backends keep a per-block time
  summary (:mod:`._time_blocks`).
* ``read_stored(from_position, limit)`` and ``write_stored(rows, after, visible_from)``
  move stored records between stores as they are (``copy_store``, export and import:
  see :mod:`._store_copy`): every event, hidden ones included, at its own global
  position, its data untouched (ciphertext stays ciphertext, no upcaster runs). Their
  defaults refuse with :class:`~pepperpy.event.ConfigurationError`; the built-in
  backends implement them. ``write_stored`` takes the lock appends take and refuses,
  writing nothing, unless the log's head is still ``after``.

The decisions every backend takes under its write lock (:func:`check_snapshot_version`,
:func:`plan_append`, :func:`plan_group` for group commits) are in ``_plan``; they are
imported from here.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from .._errors import ConfigurationError
from .._redact import redact_url
from ._names_page import names_page
from ._time_blocks import PositionRange

__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "AppendResult",
    "ExpectedVersion",
    "FreshRecord",
    "GroupPlan",
    "LogPage",
    "MINUTE",
    "MinuteCount",
    "MinuteCountRow",
    "MultiAppend",
    "NewRecord",
    "PendingAppend",
    "PositionRange",
    "Row",
    "Snapshot",
    "SnapshotRow",
    "StoreBackend",
    "StreamExpectation",
    "StoredRow",
    "StreamState",
    "check_snapshot_version",
    "check_ids",
    "check_stored",
    "from_micros",
    "log_page",
    "log_page_backwards",
    "minute_counts",
    "plan_append",
    "plan_group",
    "redact_url",
    "settle",
    "tally_minutes",
    "to_micros",
]


class StreamExpectation(enum.Enum):
    """What ``append`` expects of a stream when no exact version is given."""

    ANY = "any"
    NO_STREAM = "no_stream"
    STREAM_EXISTS = "stream_exists"

    def __repr__(self) -> str:
        return self.name


#: append whatever the stream's state
ANY = StreamExpectation.ANY
#: the stream must not exist yet (or was deleted: appending restarts it)
NO_STREAM = StreamExpectation.NO_STREAM
#: the stream must exist and not be deleted
STREAM_EXISTS = StreamExpectation.STREAM_EXISTS

ExpectedVersion = int | StreamExpectation


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What ``append`` wrote: pass ``next_expected_version`` to the next append.

    ``next_expected_version`` is the position of the last event now in the stream;
    ``global_position`` that event's position in the global log.
    """

    next_expected_version: int
    global_position: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A saved aggregate state: ``state`` as of stream position ``version``."""

    stream: str
    version: int
    state: Any
    taken_at: datetime


class NewRecord(NamedTuple):
    """One event to write, already validated and JSON-encoded by the store."""

    id: str
    type: str
    version: int
    data: bytes
    metadata: bytes | None
    timestamp: int  # microseconds since the Unix epoch, UTC
    source: str | None
    subject: str | None


class FreshRecord(NewRecord):
    """A record whose id the store minted just now, so it cannot be stored already.

    Backends may skip the idempotency lookup for these (a plain :class:`NewRecord` is
    all they need to handle).
    """

    __slots__ = ()


#: one stored event as backends return it: (global_position, stream, position, id, type,
#: version, data, metadata, timestamp_us, source, subject, recorded_at_us)
Row = tuple[Any, ...]

#: a :data:`Row` as ``read_stored`` returns it: its twelve columns, then whether it is
#: visible (False: its stream was deleted past it)
StoredRow = tuple[Any, ...]


class LogPage(NamedTuple):
    """A page of the global log: the visible rows among the next ``limit`` scanned.

    ``next_position`` is where the scan stopped (one past the last row scanned, visible
    or not); ``more`` is False when the scan reached the end of the log. Scanning
    backwards (``read_all_backwards``), the rows come newest first, ``next_position`` is
    one below the last row scanned and ``more`` is False when the scan reached the
    log's first event.
    """

    rows: list[Row]
    next_position: int
    more: bool


#: a minute in microseconds: ``recorded_at // MINUTE`` is the minute an event was recorded in
MINUTE = 60_000_000


class MinuteCountRow(NamedTuple):
    """How many visible ``events`` of ``type`` were recorded in ``minute``, as backends
    count them.

    ``minute`` is ``recorded_at // MINUTE``: whole minutes since the Unix epoch, UTC.
    """

    minute: int
    type: str
    events: int


@dataclass(frozen=True, slots=True)
class MinuteCount:
    """How many ``events`` of ``type`` the store recorded in the minute from ``minute`` on.

    ``minute`` is an aware UTC datetime on a whole minute (seconds and microseconds 0);
    the events counted are those whose ``recorded_at`` falls in that minute.
    """

    minute: datetime
    type: str
    events: int


class SnapshotRow(NamedTuple):
    """A stored snapshot: ``state`` is JSON."""

    version: int
    state: bytes | str
    taken_at: int  # microseconds since the Unix epoch


@dataclass(slots=True)
class StreamState:
    """A stream's bookkeeping, as a backend reads it under its write lock.

    ``next_position`` counts every event ever written (deleted ones too: positions are
    never reused); events below ``first_visible`` belong to a deleted incarnation and are
    hidden from every read.
    """

    next_position: int = 0
    first_visible: int = 0
    deleted: bool = False

    @property
    def version(self) -> int | None:
        """The last visible position, or None when the stream is missing or deleted."""
        if self.deleted or self.next_position <= self.first_visible:
            return None
        return self.next_position - 1


def log_page(scanned: Sequence[Row], from_position: int, limit: int) -> LogPage:
    """A :class:`LogPage` from scanned rows whose 13th column is a visibility flag.

    The rows are kept as they are (readers use the first twelve columns only).
    """
    rows = list(scanned)
    next_position = rows[-1][0] + 1 if rows else from_position
    if not all(row[12] for row in rows):
        rows = [row for row in rows if row[12]]
    return LogPage(rows, next_position, len(scanned) == limit)


def log_page_backwards(scanned: Sequence[Row], from_position: int, limit: int) -> LogPage:
    """:func:`log_page` for rows scanned downwards (newest first) from ``from_position``."""
    rows = list(scanned)
    next_position = rows[-1][0] - 1 if rows else -1
    if not all(row[12] for row in rows):
        rows = [row for row in rows if row[12]]
    return LogPage(rows, next_position, len(scanned) == limit and next_position >= 0)


def tally_minutes(rows: Iterable[Row], since: int, counts: dict[tuple[int, str], int]) -> None:
    """Add the ``rows`` recorded at or after ``since`` to ``counts`` by (minute, type).

    For backends that count the rows they hold (memory) or read (the contract's fallback,
    page by page); the rows must be visible ones. :func:`minute_counts` gives the result.
    """
    for row in rows:
        recorded_at = row[11]
        if recorded_at >= since:
            key = (recorded_at // MINUTE, row[4])
            counts[key] = counts.get(key, 0) + 1


def minute_counts(counts: dict[tuple[int, str], int]) -> list[MinuteCountRow]:
    """The tally of :func:`tally_minutes` as ``count_by_minute`` returns it, sorted."""
    return [MinuteCountRow(minute, type, count) for (minute, type), count in sorted(counts.items())]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def to_micros(value: datetime) -> int:
    """An aware datetime as integer microseconds since the epoch (lossless)."""
    return (value - _EPOCH) // _MICRO


def from_micros(value: int) -> datetime:
    """The inverse of :func:`to_micros`: an aware UTC datetime.

    ``value / 1e6`` is within half a float ulp of the exact time, which stays far below
    half a microsecond until the year 2242, and ``fromtimestamp`` rounds to the nearest
    microsecond: exact, and three times faster than adding a ``timedelta``.
    """
    return _fromtimestamp(value / 1e6, UTC)


_fromtimestamp = datetime.fromtimestamp

#: rows a page of :meth:`StoreBackend.count_by_minute`'s fallback scan reads
_SCAN_PAGE = 1000
#: the greatest global position a store can hold (64-bit integers in SQL)
_LAST_POSITION = 2**63 - 1


class StoreBackend(abc.ABC):
    """Keeps serialized events for :class:`~pepperpy.event.EventStore`."""

    @abc.abstractmethod
    def append(
        self, stream: str, records: Sequence[NewRecord], expected_version: ExpectedVersion
    ) -> Awaitable[AppendResult]:
        """Write ``records`` to ``stream`` atomically and durably (see :func:`plan_append`).

        Usually an ``async def``; a backend may return any awaitable (a future, say).
        """

    async def append_streams(self, appends: Sequence[PendingAppend]) -> list[AppendResult]:
        """Write each of ``appends`` (to distinct streams) as ``append`` would, all in one
        atomic, durable write: every expectation is checked first, and one failing
        (``ConcurrencyError``, ``StreamDeletedError``) writes nothing of any. Returns one
        :class:`AppendResult` per append, in order; the records written get consecutive
        global positions, the appends' in order.

        A :class:`MultiAppend` is the unit :func:`plan_group` decides this way. This
        default refuses with :class:`~pepperpy.event.ConfigurationError`: a backend
        written before the method existed has no transaction over several streams, and
        appending them one by one would not be atomic. The built-in backends implement
        it.
        """
        raise ConfigurationError(
            f"{type(self).__name__} does not implement append_streams (atomic appends to "
            "several streams); append to each stream separately, or implement "
            "StoreBackend.append_streams"
        )

    @abc.abstractmethod
    async def read_stream(
        self, stream: str, start: int | None, backwards: bool, limit: int
    ) -> list[Row]:
        """Up to ``limit`` visible rows of ``stream`` from ``start`` (None: the first/last)."""

    @abc.abstractmethod
    async def read_all(self, from_position: int, limit: int) -> LogPage:
        """Scan ``limit`` rows from ``from_position`` on, keeping the visible ones, in order."""

    async def read_all_matching(
        self,
        from_position: int,
        limit: int,
        column: str,
        prefixes: Sequence[str],
        backwards: bool = False,
    ) -> LogPage:
        """A page of the log's rows whose ``column`` ("type" or "stream") has one of
        ``prefixes``, found through an index where the backend has one.

        A value has prefix ``p`` when it is ``p`` or starts with ``p + "."`` (a pattern's
        leading literal tokens: ``order.*`` has ``order``). The page holds, in order, every
        visible such row from ``from_position`` to ``next_position`` (exclusive), and may
        hold other rows too: the caller filters them with the patterns themselves. At
        most ``limit`` rows are returned; when fewer are, ``more`` is False and
        ``next_position`` is one past the newest event of the log as the read saw it, so
        a subscription waits from there (no event can commit below it later).
        ``backwards``: the rows at or below ``from_position``, newest first, as
        :meth:`read_all_backwards` pages them; a short page ends at -1 (``more`` False).

        This default scans, through :meth:`read_all` (:meth:`read_all_backwards`), as a
        backend written before it existed does: exact, at the cost of every row read.
        The built-in backends answer from an index on (type, global position) and on
        (the stream name's first token, global position) (the memory backend: a list of
        positions per type and per category), so the cost follows the rows found.
        """
        if backwards:
            return await self.read_all_backwards(from_position, limit)
        return await self.read_all(from_position, limit)

    async def read_all_backwards(self, from_position: int, limit: int) -> LogPage:
        """Scan ``limit`` rows at or below ``from_position`` downwards, keeping the visible
        ones, newest first (see :class:`LogPage`).

        The built-in backends answer with one query; this default, for backends written
        before it existed, reads the window of ``limit`` positions below ``from_position``
        forwards with :meth:`read_all` and turns it round. It is exact, and as cheap as a
        forward page while positions are dense; across a wide gap in the positions it
        reads one empty window per ``limit`` positions missing.
        """
        if limit <= 0:
            return LogPage([], from_position, False)
        low = max(0, from_position - limit + 1)
        page = await self.read_all(low, from_position - low + 1)
        if page.next_position == low and low > 0:  # nothing at or past low: from the head
            head = await self.head()
            if head is None:
                return LogPage([], -1, False)
            return await self.read_all_backwards(min(from_position, head), limit)
        rows = [row for row in reversed(page.rows) if row[0] <= from_position]
        return LogPage(rows, low - 1, low > 0)

    async def head(self) -> int | None:
        """The global position of the newest event written, hidden ones included (None:
        the log is empty).

        Every event at or below it is committed and readable (or hidden, if its stream was
        deleted), and no event can appear below it later: the positions above it are
        those of events appended after. The built-in backends answer with one query;
        this default, for backends written before it existed, gallops then bisects with
        one-row :meth:`read_all` scans (whose ``more`` says whether any event, visible or
        not, is at or past a position): O(log n) reads.
        """
        page = await self.read_all(0, 1)
        if not page.more:
            return None
        low, step = page.next_position - 1, 1  # an event is at low
        while True:  # gallop: find a position with nothing at or past it
            probe = min(low + step, _LAST_POSITION)
            if probe <= low:
                return low
            page = await self.read_all(probe, 1)
            if not page.more:
                high = probe
                break
            low, step = page.next_position - 1, step * 2
        while high - low > 1:  # an event is at low, none at or past high
            middle = (low + high) // 2
            page = await self.read_all(middle, 1)
            if page.more:
                low = page.next_position - 1
            else:
                high = middle
        return low

    @abc.abstractmethod
    async def stream_state(self, stream: str) -> StreamState | None:
        """The stream's bookkeeping, or None when it was never written."""

    async def stream_states(self, streams: Sequence[str]) -> dict[str, StreamState]:
        """The bookkeeping of each of ``streams`` that was ever written, in one read where
        the backend can (a copy compares its streams' states on both stores with it).

        This default, for backends written before it existed, looks each stream up with
        :meth:`stream_state`; the built-in backends answer with one query.
        """
        found: dict[str, StreamState] = {}
        for stream in streams:
            state = await self.stream_state(stream)
            if state is not None:
                found[stream] = state
        return found

    @abc.abstractmethod
    async def stream_names(self) -> list[str]:
        """Every stream with visible events, sorted."""

    async def stream_names_page(
        self, after: str | None, limit: int, prefix: str | None = None
    ) -> list[str]:
        """Up to ``limit`` of the names :meth:`stream_names` gives, in its order, that
        come strictly after ``after`` (None: from the first), keyset-paged: the last
        name of a page is the next page's ``after``, and a page shorter than ``limit``
        is the last. With ``prefix``, only the names equal to it or starting with
        ``prefix + "."`` (a pattern's leading literal tokens, as in
        :meth:`read_all_matching`).

        Names are in code-point order (Python's ``str`` order, which is UTF-8 byte
        order): SQLite's default ``BINARY`` collation, ``COLLATE "C"`` on PostgreSQL.
        This default, for backends written before it existed, reads every name with
        :meth:`stream_names` and slices it: exact, at the cost of the whole list per
        page. The built-in backends read one page through their index on the name (the
        memory backend: one pass over its streams, keeping ``limit`` names).
        """
        return names_page(await self.stream_names(), after, limit, prefix)

    @abc.abstractmethod
    async def delete_stream(self, stream: str) -> bool:
        """Hide the stream's events; False when there was nothing visible to delete."""

    @abc.abstractmethod
    async def save_snapshot(self, stream: str, snapshot: SnapshotRow) -> None:
        """Keep ``snapshot`` as the stream's latest (replacing any older one).

        First :func:`check_snapshot_version`, under the lock appends and deletes take.
        """

    @abc.abstractmethod
    async def load_snapshot(self, stream: str) -> SnapshotRow | None:
        """The stream's latest snapshot, if any."""

    async def count_by_minute(self, since: int) -> list[MinuteCountRow]:
        """Count the visible events recorded at or after ``since`` (microseconds since the
        epoch, ``>= 0``) by (minute, type), sorted by minute, then type (by code point).

        Exact: every such event counts, none of a deleted stream's hidden ones. Backends
        answer from columns and indexes (``recorded_at`` and ``type``), never decoding an
        event, in time that grows with the events counted, not with the log. This default,
        for backends that do not, reads the whole log with :meth:`read_all`: exact, but
        a scan of every event, so the memory, SQLite and PostgreSQL backends override it.
        """
        counts: dict[tuple[int, str], int] = {}
        position, more = 0, True
        while more:
            page = await self.read_all(position, _SCAN_PAGE)
            tally_minutes(page.rows, since, counts)
            position, more = page.next_position, page.more
        return minute_counts(counts)

    async def time_ranges(
        self, start: int, end: int, from_position: int
    ) -> list[PositionRange] | None:
        """Where, at or after global position ``from_position``, the events whose
        ``timestamp`` is at or after ``start`` and before ``end`` (microseconds since the
        epoch; an open bound is ``-2**63`` or ``2**63 - 1``) can be: global position
        ranges ``(low, high)``, ``high`` exclusive or None (to the end of the log, appends
        to come included), in order and disjoint. Every such event, hidden or not, is in
        one of them, whatever the order of the timestamps; other events may be too.

        None, this default: the backend keeps no summary of its timestamps, so any
        position may hold such an event (a reader reads the whole log from
        ``from_position``). The built-in backends answer from a summary of each block of
        positions (:mod:`._time_blocks`), kept as rows are written.
        """
        return None

    async def read_stored(self, from_position: int, limit: int) -> list[StoredRow]:
        """Up to ``limit`` stored events at or after global position ``from_position``,
        in order, hidden ones included: :data:`StoredRow` tuples (a row and whether it is
        visible), for copies of the store (``copy_store``, ``export_store``).

        This default refuses: a backend written before it existed cannot be copied from.
        """
        raise ConfigurationError(
            f"{type(self).__name__} does not implement read_stored, so it cannot be copied "
            "or exported from; implement StoreBackend.read_stored"
        )

    async def write_stored(
        self, rows: Sequence[Row], after: int | None, visible_from: Mapping[str, int]
    ) -> None:
        """Write stored events ``rows`` (twelve columns each, global positions increasing,
        all past ``after``) as they are, in one transaction, under the lock appends take:
        each row at its own global position, id, ``recorded_at`` and data (a copy keeps
        its checkpoints' positions, gaps included).

        Refused with :class:`~pepperpy.event.StoreError`, writing nothing, when the
        log's head is not ``after`` (the store changed since the caller looked), or a
        row does not continue its stream (``position`` is not the stream's next), or a
        row that stays visible has an id its stream holds visible already (see
        :func:`check_ids`). Then
        each stream of ``visible_from`` has its ``first_visible`` raised to the value
        given (a deletion the source made; its snapshot goes, as ``delete_stream``'s
        does), and each stream written or named there is deleted when no event of it is
        visible (``first_visible >= next_position``). Appends made afterwards get global
        positions past every row written. See :func:`check_stored`.

        This default refuses: a backend written before it existed cannot be copied into.
        """
        raise ConfigurationError(
            f"{type(self).__name__} does not implement write_stored, so it cannot be "
            "copied or imported into; implement StoreBackend.write_stored"
        )

    @abc.abstractmethod
    async def wait(self, position: int) -> None:
        """Return once an event at ``position`` or later may exist (or on close)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and threads; wake pending ``wait`` calls."""


# the decisions taken under a backend's write lock live in ``_plan``, which builds on the
# types above: imported last, so that they are defined when it imports them
from ._plan import (  # noqa: E402
    GroupPlan,
    MultiAppend,
    PendingAppend,
    check_snapshot_version,
    plan_append,
    plan_group,
    settle,
)

# not in __all__ (the SQLite backend's hot path imports it from here)
from ._plan import append_result as append_result  # noqa: E402
from ._plan import parts as parts  # noqa: E402
from ._stored import check_ids, check_stored  # noqa: E402
