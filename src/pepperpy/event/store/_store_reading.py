"""The :class:`~pepperpy.event.store.EventStore`'s reads, as a mixin.

Stream and global-log readers (:meth:`StoreReading.get_stream`,
:meth:`StoreReading.read_all`), live subscriptions, the head, stream names and versions,
counts by minute, and the timestamp ranges ``replay_all`` narrows a read to. Each read is
checked against the access rules and decrypted through :mod:`._store_security`, and its
rows decoded through :mod:`._store_decoding`.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from .._errors import ConfigurationError
from .._patterns import parse_name
from .._seconds import check_seconds
from ._reader import RETRY_FOR, EventReader, RowFilter, StoreSubscription
from ._store_checks import _FROM_NOW_ON, MAX_POSITION, STREAM_NAME, _check_position, _refused
from ._store_decoding import StoreDecoding
from ._store_security import StoreSecurity
from ._time_blocks import EARLIEST, LATEST, PositionRange
from .base import MINUTE, MinuteCount, Row, StoreBackend, from_micros, to_micros

#: stream names ``streams()`` matches against its pattern between two turns of the loop
_NAMES_AT_ONCE = 4096


#: the largest ``iter_streams`` page: names are up to 1 KiB each
_MAX_PAGE_SIZE = 100_000


def _name_prefix(accept: RowFilter) -> str | None:
    """The literal tokens every matching stream name starts with (``order.*``:
    ``order``), or None when the pattern has none (``*.placed``, ``#``)."""
    keys = accept.index_keys
    if keys is not None and len(keys[1]) == 1:
        return keys[1][0]
    return None


async def _matching(accept: RowFilter, names: list[str]) -> list[str]:
    """The ``names`` that match ``accept``'s pattern, matched a slice at a time, the loop
    serving others between (200,000 names under a leading wildcard took the loop for
    0.6 s in one go)."""
    matching: list[str] = []
    matches = accept.stored_stream_matches
    for start in range(0, len(names), _NAMES_AT_ONCE):
        if start:
            await asyncio.sleep(0)
        matching.extend(name for name in names[start : start + _NAMES_AT_ONCE] if matches(name))
    return matching


class StoreReading(StoreSecurity, StoreDecoding):
    """Readers, subscriptions and queries for :class:`~pepperpy.event.store.EventStore`."""

    _backend: StoreBackend
    _closed: bool
    _subscriptions: weakref.WeakSet[StoreSubscription]

    if TYPE_CHECKING:

        def _check_open(self) -> None: ...  # EventStore's

    def get_stream(
        self,
        stream: str,
        start_pos: int | None = None,
        *,
        backwards: bool = False,
        limit: int | None = None,
    ) -> EventReader:
        """The events of ``stream``: ``await`` for a list or ``async for`` in pages.

        Forwards from ``start_pos`` (default: the first event); backwards from
        ``start_pos`` (default: the last event) down, newest first. A missing stream
        reads as empty.
        """
        self._check_open()
        parse_name(stream, STREAM_NAME)
        if start_pos is not None and (
            start_pos.__class__ is not int or not 0 <= start_pos <= MAX_POSITION
        ):
            raise _refused(
                start_pos,
                f"start_pos must be an int from 0 to {MAX_POSITION} or None, got {start_pos!r}",
            )
        self._check_read(stream)
        backend = self._backend
        prepare = self._prepare if self.encryption is not None else None
        guard = self._read_guard(stream)
        held: list[object] = [None]  # the page's data keys, held until the next page

        async def fetch(cursor: int | None, size: int) -> tuple[list[Row], int | None]:
            self._check_open()
            if guard is not None:
                await guard()
            rows = await backend.read_stream(stream, cursor, backwards, size)
            if prepare is not None:
                held[0] = await prepare(rows)
            if len(rows) < size or not rows:
                return rows, None
            position: int = rows[-1][2]
            if backwards:
                return rows, (position - 1 if position > 0 else None)
            return rows, position + 1

        return EventReader(fetch, self._decode, start=start_pos, limit=limit)

    def read_all(
        self,
        from_position: int | None = None,
        *,
        backwards: bool = False,
        streams: str | Sequence[str] | None = None,
        types: str | Sequence[str] | None = None,
        limit: int | None = None,
    ) -> EventReader:
        """The global log from ``from_position`` (inclusive), optionally filtered.

        Forwards from ``from_position`` (default: the first event); backwards from
        ``from_position`` (default: the newest event) down, newest first, as
        ``get_stream`` reads a stream: ``read_all(backwards=True, limit=5)`` is the last
        five events (one query, unless deleted streams' events are in the way).
        ``streams`` and ``types`` take one pattern or a list of patterns; ``limit``
        counts the events that pass them. Either way the log is read in pages, so memory
        stays bounded and events of deleted streams are skipped.
        """
        self._check_open()
        if from_position is not None:
            _check_position(from_position)
        self._check_read(streams)
        backend = self._backend
        prepare = self._prepare if self.encryption is not None else None
        guard = self._read_guard(streams)
        accept = RowFilter(streams, types)
        held: list[object] = [None]  # the page's data keys, held until the next page
        keys = accept.index_keys  # the rows of some types or categories: by an index

        async def fetch(cursor: int | None, size: int) -> tuple[list[Row], int | None]:
            self._check_open()
            if guard is not None:
                await guard()
            if backwards:
                at = MAX_POSITION if cursor is None else cursor
                if keys is not None:
                    page = await backend.read_all_matching(at, size, *keys, backwards=True)
                else:
                    page = await backend.read_all_backwards(at, size)
            elif keys is not None:
                page = await backend.read_all_matching(cursor or 0, size, *keys)
            else:
                page = await backend.read_all(cursor or 0, size)
            if prepare is not None:
                held[0] = await prepare(page.rows)
            return page.rows, (page.next_position if page.more else None)

        return EventReader(
            fetch,
            self._decode,
            start=from_position,
            limit=limit,
            accept=accept,
        )

    def subscribe(
        self,
        from_position: int = 0,
        *,
        streams: str | Sequence[str] | None = None,
        types: str | Sequence[str] | None = None,
        retry_for: float | None = RETRY_FOR,
    ) -> StoreSubscription:
        """Follow the global log: catch up from ``from_position``, then live appends.

        Never skips an event that commits late and never yields one twice; resume after
        a checkpoint with ``from_position=last.global_position + 1``. To follow only the
        events appended from now on, start past the head::

            head = await store.head()
            subscription = store.subscribe(0 if head is None else head + 1)

        Every event appended after ``head()`` returned is delivered. Closing the store
        ends the subscription.

        An outage of the store (a lost connection, a server restarting) is ridden out: a
        read that fails with :class:`~pepperpy.event.StoreError` is tried again, with
        backoff, for up to ``retry_for`` seconds (60 by default; 0 raises the first
        failure; None tries until the store is closed), then raised, saying where to
        resume (``subscription.position``; iterating it again resumes there too).
        """
        self._check_open()
        _check_position(from_position, _FROM_NOW_ON)
        if retry_for is not None:
            retry_for = check_seconds(retry_for, "retry_for", zero=True, error=ValueError)
        self._check_read(streams)
        guard = self._read_guard(streams)
        decrypt = self._prepare if self.encryption is not None else None
        prepare = decrypt
        if guard is not None:

            async def prepare(rows: list[Row]) -> object:  # each page, before it is delivered
                await guard()
                return None if decrypt is None else await decrypt(rows)

        subscription = StoreSubscription(
            self._backend,
            self._decode,
            from_position,
            RowFilter(streams, types),
            lambda: self._closed,
            prepare=prepare,
            retry_for=retry_for,
        )
        self._subscriptions.add(subscription)
        return subscription

    async def _time_ranges(
        self, start: datetime | None, end: datetime | None, from_position: int
    ) -> list[PositionRange] | None:
        """Where events with a timestamp in [``start``, ``end``) can be, from
        ``from_position`` on: the backend's :meth:`~.base.StoreBackend.time_ranges`
        (None: anywhere). For ``replay_all``, which checked ``read`` first."""
        self._check_open()
        low = EARLIEST if start is None else to_micros(start)
        high = LATEST if end is None else to_micros(end)
        if low >= high:  # an empty window: nothing to read
            return []
        return await self._backend.time_ranges(low, high, from_position)

    async def head(self) -> int | None:
        """The global position of the newest event in the log, or None while it is empty.

        One query on the built-in backends. Every event at or below it can be read now (unless
        its stream was deleted: the head counts hidden events too, so it never moves
        back), and none can appear below it later, on PostgreSQL too while other
        transactions are in flight. So ``subscribe(head + 1)`` follows exactly the
        events appended after this call, and ``read_all(head, backwards=True)`` reads
        back from a fixed point. Needs ``read`` on the whole log (``#``), as
        ``read_all()`` does: the head tells how busy every stream is.
        """
        self._check_open()
        await self._acheck_read(None)
        return await self._backend.head()

    async def streams(self, pattern: str = "#") -> list[str]:
        """Names of the streams (with visible events) matching ``pattern``, sorted.

        Every name is read at once: :meth:`iter_streams` gives the same names a page at
        a time, in bounded memory."""
        self._check_open()
        await self._acheck_read(pattern)
        accept = RowFilter(pattern, None)
        names = await self._backend.stream_names()
        if accept.passes_everything:
            return names
        prefix = _name_prefix(accept)
        if prefix is not None:  # a match starts with its literal tokens
            below = prefix + "."
            names = [name for name in names if name.startswith(below) or name == prefix]
        return await _matching(accept, names)

    def iter_streams(
        self, pattern: str = "#", *, page_size: int = 1000, after: str | None = None
    ) -> AsyncIterator[str]:
        """The names :meth:`streams` gives (same check, order and names), read from the
        backend ``page_size`` at a time (``StoreBackend.stream_names_page``), so memory
        stays bounded however many streams there are: ``async for name in
        store.iter_streams("order.#")``. A pattern with leading literal tokens
        (``order.*``) reads only the names under them. ``after``: only the names after
        it, in that order (the last name of a page resumes there).

        ``read`` on ``pattern`` is checked at once (:class:`~pepperpy.event.AccessDenied`
        raised here, as for a reader) and again before each page if the rules changed.
        """
        self._check_open()
        if isinstance(page_size, bool) or not isinstance(page_size, int):
            raise TypeError(f"page_size must be an int, got {type(page_size).__name__}")
        if not 1 <= page_size <= _MAX_PAGE_SIZE:
            raise ConfigurationError(
                f"page_size must be from 1 to {_MAX_PAGE_SIZE}, got {page_size}"
            )
        if after is not None and not isinstance(after, str):
            raise TypeError(f"after must be a str or None, got {type(after).__name__}")
        self._check_read(pattern)
        accept = RowFilter(pattern, None)
        return self._names_pages(accept, page_size, after, self._read_guard(pattern))

    async def _names_pages(
        self,
        accept: RowFilter,
        page_size: int,
        after: str | None,
        guard: Callable[[], Awaitable[None]] | None,
    ) -> AsyncIterator[str]:
        prefix = _name_prefix(accept)
        while True:
            self._check_open()
            if guard is not None:
                await guard()
            page = await self._backend.stream_names_page(after, page_size, prefix)
            for name in page if accept.passes_everything else await _matching(accept, page):
                yield name
            if len(page) < page_size:
                return
            after = page[-1]

    async def stream_version(self, stream: str) -> int | None:
        """The stream's last position (what ``expected_version`` compares to), or None."""
        self._check_open()
        parse_name(stream, STREAM_NAME)
        await self._acheck_read(stream)
        state = await self._backend.stream_state(stream)
        return None if state is None else state.version

    async def count_by_minute(self, since: datetime) -> list[MinuteCount]:
        """How many events of each type were recorded in each minute from ``since`` on.

        ``since`` is an aware datetime (any time zone); an event counts when its
        ``recorded_at`` is at or after it. One :class:`MinuteCount` per (minute, type)
        with events, by minute (UTC, whole minutes since the epoch), then type. Exact, and
        cheap: the backend counts from its columns and an index on ``recorded_at``,
        decoding no event, so the cost grows with the events counted, not the log; events
        of deleted streams are not counted, as reads do not show them. Needs ``read`` on
        the whole log (``#``), as ``read_all()`` does: counts by type over every stream
        would otherwise tell about streams the principal may not read.
        """
        self._check_open()
        if not isinstance(since, datetime):
            raise TypeError(f"since must be a datetime, got {type(since).__name__}")
        if since.utcoffset() is None:
            raise ValueError(
                f"since must be timezone-aware (a naive datetime is ambiguous), got {since!r}"
            )
        await self._acheck_read(None)
        # nothing is recorded before 1970: a later start counts the same events
        rows = await self._backend.count_by_minute(max(0, to_micros(since)))
        return [MinuteCount(from_micros(row.minute * MINUTE), row.type, row.events) for row in rows]
