"""Readers and subscriptions: paging over a backend, shared by every store backend.

A reader is both awaitable (``await store.get_stream(...)`` gives a list) and
async-iterable (``async for`` fetches one page at a time, so memory stays bounded for
streams of any length). A subscription pages through the global log, then waits on the
backend for live appends; it remembers the next global position, so it never yields an
event twice and, because backends expose positions in order, never skips one. Nothing
moves past an event that fails to decode (an upcaster raising, an envelope refused): the
error is raised, and the next read (or a subscription resumed from ``position``) tries
that event again.

A subscription rides out an outage of its backend (a lost connection, a server
restarting): a read or wait failing with :class:`~pepperpy.event.StoreError` is tried
again from the same position, with backoff, for up to ``retry_for`` seconds, the same
rule on every backend (:class:`Outage`). Only then is the error raised to the caller.
Closing the subscription (or its store) ends a read under way too: nothing of it was
handed out, so abandoning it loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .._errors import ClosedError, StoreError
from .._event import Event
from .._patterns import ANY, ONE, _match_tokens, parse_pattern, parse_topic
from .._retry import RetryPolicy
from ._waiters import LoopWaiters
from .base import Row

if TYPE_CHECKING:
    from .base import StoreBackend

__all__ = ["RETRY_FOR", "EventReader", "Outage", "RowFilter", "StoreSubscription"]

T = TypeVar("T")

#: fetch(cursor, page_size) -> (rows, next cursor or None at the end); a cursor of None
#: means "the natural start"
FetchPage = Callable[[int | None, int], Awaitable[tuple[list[Row], int | None]]]

#: pages fetched for ``await reader``: the whole result is in memory anyway
_COLLECT_PAGE = 10_000
#: pages fetched for ``async for``: bounded memory
_ITERATE_PAGE = 500

#: how long a subscription waits between tries while its backend fails: 0.1 s, doubling
#: (with jitter) up to 1 s, so delivery resumes within about 1 s of the store's return,
#: and each subscription tries at most about once a second meanwhile
_BACKOFF = RetryPolicy.exponential(max_attempts=2, base_delay=0.1, max_delay=1.0)

#: how long a subscription tries again by default before it raises (``retry_for``)
RETRY_FOR = 60.0

logger = logging.getLogger("pepperpy.event.store")


class Outage:
    """The clock of an outage being ridden out: tries again, with backoff, for up to
    ``retry_for`` seconds (None: no limit) after the first failure.

    The rule: 0.1 s after the first failed try, then about twice as long each time, up
    to 1 s. A projection's ``follow()`` keeps its own by the same rule.
    """

    __slots__ = ("failures", "retry_for", "since")

    def __init__(self, retry_for: float | None) -> None:
        self.retry_for = retry_for
        #: when the outage under way began (``time.monotonic()``), and its failed tries
        self.since: float | None = None
        self.failures = 0

    @property
    def plan(self) -> str:
        """How long it goes on trying, for a log line: "for up to 60 s"."""
        bound = self.retry_for
        return "until it works" if bound is None else f"for up to {bound:g} s"

    def failed(self, began: float) -> float | None:
        """Count a failed try, begun at ``began`` (the outage's start if it is the first):
        the seconds to wait before the next one, or None once ``retry_for`` has passed
        (then :meth:`end` the outage, for its numbers)."""
        now = time.monotonic()
        if self.since is None:
            self.since, self.failures = began, 0
        self.failures += 1
        bound = self.retry_for
        if bound is not None and now - self.since >= bound:
            return None
        pause = _BACKOFF.delay(self.failures)
        return pause if bound is None else min(pause, self.since + bound - now)

    def end(self) -> tuple[float, str] | None:
        """End the outage under way: how long it lasted and its failed tries ("3 failed
        tries"), or None if there was none. The next failure starts a new one."""
        if self.since is None:
            return None
        ended = time.monotonic() - self.since, _tries(self.failures)
        self.since, self.failures = None, 0
        return ended


class RowFilter:
    """Keeps rows whose stream and type match the given patterns (None: any)."""

    __slots__ = ("_cache", "_streams", "_types")

    def __init__(self, streams: str | Sequence[str] | None, types: str | Sequence[str] | None):
        self._streams = _compile(streams, "streams")
        self._types = _compile(types, "types")
        self._cache: dict[tuple[int, str], bool] = {}

    @property
    def passes_everything(self) -> bool:
        return self._streams is None and self._types is None

    def __call__(self, row: Row) -> bool:
        return self._ok(0, self._streams, row[1]) and self._ok(1, self._types, row[4])

    @property
    def index_keys(self) -> tuple[str, tuple[str, ...]] | None:
        """What a backend's index can look up for this filter: ("type", prefixes) or
        ("stream", prefixes), or None when only a scan finds the matches.

        A pattern's prefix is its leading literal tokens (``order.*``: ``order``); a
        pattern that starts with a wildcard (``*.created``) has none, and then neither
        has its list. The types are used when their patterns all have a prefix, else the
        streams'; the rows found are a superset of the matches, filtered by ``__call__``.
        """
        for column, patterns in (("type", self._types), ("stream", self._streams)):
            if patterns is None:
                continue
            prefixes = [_literal_prefix(pattern) for pattern in patterns]
            if all(prefixes):
                return column, tuple(sorted(set(prefixes)))
        return None

    def stream_matches(self, name: str) -> bool:
        """True when the stream name passes the ``streams`` patterns."""
        return self._ok(0, self._streams, name)

    def stored_stream_matches(self, name: str) -> bool:
        """:meth:`stream_matches` for a name read from the store, checked when it was
        appended: split, not checked again (checking is most of the cost, and a cache
        would not hold the names of a large store)."""
        patterns = self._streams
        if patterns is None:
            return True
        tokens = tuple(name.split("."))
        return any(_match_tokens(pattern, tokens) for pattern in patterns)

    def _ok(self, kind: int, patterns: list[tuple[str, ...]] | None, name: str) -> bool:
        if patterns is None:
            return True
        key = (kind, name)
        hit = self._cache.get(key)
        if hit is None:
            try:
                tokens = parse_topic(name)
            except ValueError:  # a type outside the pattern language matches nothing
                hit = False
            else:
                hit = any(_match_tokens(pattern, tokens) for pattern in patterns)
            if len(self._cache) < 65_536:
                self._cache[key] = hit
        return hit


def _literal_prefix(pattern: tuple[str, ...]) -> str:
    """The pattern's tokens before its first wildcard, joined ("" if it starts with one)."""
    literal: list[str] = []
    for token in pattern:
        if token == ONE or token == ANY:
            break
        literal.append(token)
    return ".".join(literal)


def _compile(patterns: str | Sequence[str] | None, what: str) -> list[tuple[str, ...]] | None:
    if patterns is None:
        return None
    if isinstance(patterns, str):
        patterns = [patterns]
    elif (
        not isinstance(patterns, Sequence)
        or isinstance(patterns, bytes | bytearray | memoryview)
        or not patterns
        or not all(isinstance(pattern, str) for pattern in patterns)
    ):
        raise TypeError(
            f"{what} must be a pattern (str) or a non-empty list of patterns, got {patterns!r}"
        )
    compiled = [parse_pattern(pattern) for pattern in patterns]
    if any(tokens == ("#",) for tokens in compiled):
        return None
    return compiled


class EventReader:
    """Events read from a store: ``await`` it for a list, or ``async for`` over it."""

    __slots__ = ("_accept", "_decode", "_dense", "_fetch", "_limit", "_start")

    def __init__(
        self,
        fetch: FetchPage,
        decode: Callable[[Row], Event],
        *,
        start: int | None,
        limit: int | None,
        accept: RowFilter | None = None,
    ) -> None:
        if limit is not None and (limit.__class__ is not int or limit < 0):
            message = f"limit must be an int >= 0 or None, got {limit!r}"
            # an int subclass (a bool, an IntEnum) is refused too: a wrong type
            raise TypeError(message) if limit.__class__ is not int else ValueError(message)
        self._fetch = fetch
        self._decode = decode
        self._start = start
        self._limit = limit
        self._accept = None if accept is None or accept.passes_everything else accept
        # the rows a store reads through an index (a filter with index_keys) are mostly
        # rows the filter keeps: a limited read asks for pages of about ``limit`` rows,
        # as an unfiltered one does, instead of full pages
        self._dense = self._accept is None or self._accept.index_keys is not None

    def __await__(self) -> Generator[object, None, list[Event]]:
        return self._collect().__await__()

    def __aiter__(self) -> _ReaderIterator:
        return _ReaderIterator(self, _ITERATE_PAGE)

    async def _collect(self) -> list[Event]:
        pages = _ReaderIterator(self, _COLLECT_PAGE)
        events: list[Event] = []
        while True:
            page = await pages.next_page()
            if page is None:
                return events
            events.extend(page)


class _ReaderIterator:
    __slots__ = (
        "_buffer",
        "_cursor",
        "_done",
        "_index",
        "_page_size",
        "_reader",
        "_remaining",
        "_scan",
    )

    def __init__(self, reader: EventReader, page_size: int) -> None:
        self._reader = reader
        self._page_size = page_size
        self._cursor = reader._start
        self._remaining = reader._limit
        self._done = False
        self._buffer: list[Event] = []
        self._index = 0
        #: the least a limited, unfiltered (or dense) page scans: doubled while pages come
        #: back short
        self._scan = 0

    def __aiter__(self) -> _ReaderIterator:
        return self

    async def __anext__(self) -> Event:
        while self._index >= len(self._buffer):
            page = await self.next_page()
            if page is None:
                raise StopAsyncIteration
            self._buffer, self._index = page, 0
        event = self._buffer[self._index]
        self._index += 1
        return event

    async def next_page(self) -> list[Event] | None:
        """The next non-empty page of events, or None at the end."""
        reader = self._reader
        accept, decode = reader._accept, reader._decode
        while not self._done:
            remaining = self._remaining
            if remaining is not None and remaining <= 0:
                break
            size = self._page_size
            if remaining is not None and reader._dense:
                size = min(size, max(remaining, self._scan))
            rows, cursor = await reader._fetch(self._cursor, size)
            if accept is not None:
                rows = [row for row in rows if accept(row)]
            if len(rows) < size and cursor is not None:
                # hidden events (of deleted streams), or rows the filter left out, filled
                # part of the page: scan more at a time, or a run of them costs a read per
                # ``remaining`` rows
                self._scan = 2 * size
            if remaining is not None:
                rows = rows[:remaining]
            # decoded before the cursor moves: a page that fails is read again next time
            events = _decode_page(decode, rows) if rows else None
            self._cursor = cursor
            self._done = cursor is None
            if remaining is not None:
                self._remaining = remaining - len(rows)
            if events:
                return events
        return None


def _decode_page(decode: Callable[[Row], Event], rows: list[Row]) -> list[Event]:
    """Decode a page with the cycle collector paused.

    A page allocates a few container objects per event (the event, its frozen data, its
    times) and no reference cycles, yet the allocations alone trigger repeated collector
    passes that cost about a fifth of the decoding time. The pause is bounded by the
    page size and the previous state is restored even if decoding fails.
    """
    if not gc.isenabled():
        return [decode(row) for row in rows]
    gc.disable()
    try:
        return [decode(row) for row in rows]
    finally:
        gc.enable()


class StoreSubscription:
    """Catches up on the global log, then follows live appends, until closed.

    ``async for event in store.subscribe(...)``; resume after a checkpoint with
    ``from_position=last.global_position + 1``. ``position`` is the global position the
    next event will be read from; it stays on an event whose decoding failed, so that
    event is read again, never skipped. Closing the subscription (or its store) ends the
    loop.

    A read or wait that fails with :class:`~pepperpy.event.StoreError` (the backend lost
    its connection, say) is tried again from ``position``, with backoff, until it works or
    ``retry_for`` seconds (None: no limit) have passed since the first failure; a warning
    is logged when such an outage begins, and an info record when it ends. Past the
    bound a :class:`~pepperpy.event.StoreError` is raised, naming ``position``; iterating
    the same subscription again (or a new one from ``position``) resumes there.
    """

    def __init__(
        self,
        backend: StoreBackend,
        decode: Callable[[Row], Event],
        from_position: int,
        accept: RowFilter,
        is_closed: Callable[[], bool],
        *,
        prepare: Callable[[list[Row]], Awaitable[object]] | None = None,
        retry_for: float | None = RETRY_FOR,
    ) -> None:
        self._prepare = prepare
        #: what ``prepare`` returned for the page in ``_buffer`` (its data keys), held
        #: while its events are decoded one by one
        self._held: object = None
        self._backend = backend
        self._decode = decode
        self._accept = None if accept.passes_everything else accept
        self._keys = accept.index_keys
        self._store_closed = is_closed
        self._closed = False
        self.position = from_position
        self._buffer: list[Row] = []
        self._index = 0
        self._page_end = from_position
        self._caught_up = False
        self._outage = Outage(retry_for)
        #: woken by aclose() and by the store's close(), which may run on another loop
        self._stops = LoopWaiters()

    @property
    def closed(self) -> bool:
        """True once the subscription or its store was closed."""
        return self._closed or self._store_closed()

    def __aiter__(self) -> StoreSubscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self.closed:
                raise StopAsyncIteration
            if self._index < len(self._buffer):
                row = self._buffer[self._index]
                event = self._decode(row)  # if it fails, the next call tries this row again
                self._index += 1
                self.position = row[0] + 1
                return event
            # rows the filter dropped (and hidden ones) still move the checkpoint forward
            self.position = max(self.position, self._page_end)
            tried = time.monotonic()
            try:
                if self._caught_up:
                    await self._unless_stopped(self._backend.wait(self.position))
                    self._caught_up = False
                    continue
                keys = self._keys
                read = (
                    self._backend.read_all(self.position, _ITERATE_PAGE)
                    if keys is None
                    else self._backend.read_all_matching(self.position, _ITERATE_PAGE, *keys)
                )
                page = await self._unless_stopped(read)
            except (ClosedError, StoreError) as exc:
                # a failed read counts from when it began (it may have waited long for a
                # connection), a failed wait from its end (it may have waited long for news)
                began = time.monotonic() if self._caught_up else tried
                await self._failed(exc, began)  # raises, or returns when it is time to try again
                continue
            if page is None:
                continue  # stopped: the loop ends at its top
            self._recovered()
            rows = page.rows
            if self._accept is not None:
                rows = [row for row in rows if self._accept(row)]
            if self._prepare is not None:
                self._held = await self._prepare(rows)
            self._buffer, self._index = rows, 0
            self._page_end = page.next_position
            self._caught_up = not page.more

    async def _failed(self, error: ClosedError | StoreError, began: float) -> None:
        """A read or wait failed: count it as a try of the current outage (which began
        at its first failed try's ``began``) and wait the backoff (ended early by a
        close), or raise.

        Once the subscription or its store is closed, the iteration ends; a
        :class:`ClosedError` of its own is raised as it is, and a :class:`StoreError`
        when ``retry_for`` has passed since the outage began.
        """
        if self.closed:
            raise StopAsyncIteration from None
        if isinstance(error, ClosedError):
            raise error
        outage = self._outage
        pause = outage.failed(began)
        if pause is None:
            elapsed, tries = outage.end() or (0.0, "")  # iterating again starts afresh
            raise StoreError(
                f"subscription at global position {self.position}: the store could not be "
                f"read for {elapsed:.1f} s ({tries}, retry_for={outage.retry_for:g}): "
                f"{error}; nothing was skipped: iterate the subscription again, or "
                f"subscribe again with from_position={self.position}, to resume"
            ) from error
        if outage.failures == 1:
            logger.warning(
                "subscription at global position %d: %s; trying again %s",
                self.position,
                error,
                outage.plan,
            )
        stop = self._stops.register()
        if self.closed:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(pause):
                await stop.wait()

    def _recovered(self) -> None:
        """A read worked: an outage under way is over."""
        ended = self._outage.end()
        if ended is not None:
            logger.info(
                "subscription at global position %d: the store can be read again, "
                "after %.1f s and %s",
                self.position,
                *ended,
            )

    async def _unless_stopped(self, work: Coroutine[Any, Any, T]) -> T | None:
        """Run ``work`` (a read, or a wait for live appends) until it is done or the
        subscription is stopped (:meth:`aclose`, the store's close): then None.

        A read abandoned this way is cancelled (the backend cuts a connection off rather
        than wait for an answer that a partition may hold back for ``command_timeout``)
        and awaited, so nothing of it is left running or unread. Its error, if it fails
        as the subscription stops, is dropped: the iteration ends all the same.
        """
        stop = self._stops.register()
        if self.closed:
            work.close()
            return None
        worker = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((worker, stopper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not worker.get_loop().is_closed():  # else this runs as it is collected
                for task in (worker, stopper):
                    if not task.done():
                        task.cancel()
                await asyncio.gather(worker, stopper, return_exceptions=True)
        if not worker.done() or worker.cancelled():
            return None
        error = worker.exception()
        if error is None:
            return worker.result()
        if self.closed:
            return None
        raise error

    async def aclose(self) -> None:
        """Stop the subscription; a pending ``async for`` ends."""
        self._closed = True
        self._buffer = []
        self._stops.wake()

    def _wake(self) -> None:
        """Called by the store on close, from any thread: end a pending wait (one on a
        loop that was closed meanwhile is skipped: it will never run again)."""
        self._stops.wake()

    async def __aenter__(self) -> StoreSubscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _tries(count: int) -> str:
    return "1 failed try" if count == 1 else f"{count} failed tries"
