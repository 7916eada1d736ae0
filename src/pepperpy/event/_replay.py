"""EventReplay: feed recorded events back through handlers, with filters and checkpoints.

A replay reads a stream (``replay_stream``) or the store's global log (``replay_all``)
page by page, so memory stays bounded however long the history is. Each event that
passes the filters (the time window, ``types``/``streams`` patterns) goes to every
handler whose pattern matches its type, one handler after another in registration
order, one event after another in log order: a replay is deterministic.

``replay_all`` with a time window seeks: it reads only the ranges of the log the store's
time summary says can hold events of the window (``StoreBackend.time_ranges``: blocks
judged by their least and greatest timestamp, so a late event with an old timestamp is
found), from ``start_pos`` or the checkpoint on; a backend without a summary is read
whole, the window filtering. ``replay_stream`` reads its stream whole and filters.

Handler failures are isolated: with ``on_error="continue"`` (the default) the event is
counted as failed, the failure is logged and recorded in the report, and the replay
moves on; with ``on_error="stop"`` the replay stops at that event and raises
:class:`ReplayError` (carrying the report), and a checkpointed replay resumes *at* the
failed event next time. A ``retry_policy`` retries a failing handler first.

With ``checkpoint="name"`` the last processed position is saved (every
``checkpoint_every`` events, and when the replay ends, fails or is cancelled), and a
re-run continues after it. Replay handlers are therefore at-least-once across crashes
(up to ``checkpoint_every`` events may be seen again); for exactly-once state use a
:class:`~pepperpy.event.Projection`.

A stored type that is not a valid topic (``"Order Placed"``, written before the store
refused such types) matches no handler and no ``types`` pattern: the event is skipped,
as the store's own filters skip it, instead of stopping every later event from replaying.

The parts live side by side: what a replay is given, checked, in ``_replay_options.py``;
the reports in ``_replay_report.py``; the work of one call (handlers, pacing,
checkpoints, progress) in ``_replay_run.py``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._checkpoints import (
    CheckpointStore,
    MemoryCheckpointStore,
    open_checkpoint_store,
    opened_by,
    shared_in_memory,
)
from ._closing import AsyncClosing
from ._errors import ReplayError
from ._event import Event
from ._patterns import PatternIndex, parse_name, parse_pattern, plain_name
from ._projection_scope import scope_of
from ._removal import check_removal

# re-exported with ``as``: _projection.py imports these from here
from ._replay_options import Patterns as Patterns
from ._replay_options import TimeWindow, check_start_pos, checkpoint_key, parse_time
from ._replay_options import check_name as check_name
from ._replay_options import check_store as check_store
from ._replay_options import describe_checkpoints as describe_checkpoints
from ._replay_options import handler_name as handler_name
from ._replay_options import handlers_for as handlers_for
from ._replay_options import patterns_of as patterns_of
from ._replay_options import store_url as store_url
from ._replay_report import ReplayFailure, ReplayProgress, ReplayReport, ReplayStopped
from ._replay_run import (
    OnError,
    ProgressCallback,
    ReplayHandler,
    ReplayRun,
    UpTo,
    first_outside,
)
from ._replay_waits import run_in, wait_for_runs_here
from ._retry import RetryPolicy

if TYPE_CHECKING:
    from .store import EventStore

__all__ = [
    "EventReplay",
    "ReplayFailure",
    "ReplayProgress",
    "ReplayReport",
    "ReplayStopped",
    "TimeWindow",
    "parse_time",
]

H = TypeVar("H", bound=Callable[..., Any])


class EventReplay(AsyncClosing):
    """Replays stored events through handlers registered with :meth:`handle`.

    ``store`` is an :class:`~pepperpy.event.EventStore`. ``checkpoints`` holds resumable
    positions: a :class:`CheckpointStore` or a URL; by default the event store's own
    database (a table of the SQLite file, or of the PostgreSQL database), in memory for
    a memory store.
    """

    def __init__(
        self, store: EventStore, *, checkpoints: CheckpointStore | str | None = None
    ) -> None:
        check_store(store)
        if checkpoints is not None and not isinstance(checkpoints, CheckpointStore | str):
            raise TypeError(
                f"checkpoints must be a CheckpointStore, a URL or None, got {checkpoints!r}"
            )
        self.store = store
        self._checkpoints_given = checkpoints
        self._checkpoints: CheckpointStore | None = (
            checkpoints if isinstance(checkpoints, CheckpointStore) else None
        )
        #: the checkpoint store is the one shared beside a memory event store (not ours)
        self._shared = False
        self._handlers: PatternIndex[ReplayHandler] = PatternIndex()
        #: how many times close() was called: a replay begun before the last call stops
        self._closings = 0
        #: the tasks of the replays under way (close() waits for them to stop)
        self._running: set[asyncio.Task[Any]] = set()

    # -- registration ---------------------------------------------------------------

    @overload
    def handle(self, pattern: str, handler: None = None) -> Callable[[H], H]: ...

    @overload
    def handle(self, pattern: str, handler: H) -> H: ...

    def handle(self, pattern: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Register a sync or async handler for event types matching ``pattern``.

        Works as a decorator (``@replay.handle("user.*")``) or a direct call; returns
        the handler unchanged. An enum member (a ``StrEnum``'s, a ``(str, Enum)``'s) is
        kept as the plain str it holds, as everywhere in the library.
        """
        parse_pattern(pattern)
        pattern = plain_name(pattern)  # in ReplayHandler.pattern and messages too
        if handler is not None:
            self._handlers.add(pattern, ReplayHandler(pattern, handler))
            return handler

        def decorator(function: H) -> H:
            self._handlers.add(pattern, ReplayHandler(pattern, function))
            return function

        return decorator

    def remove_handler(self, pattern: str, handler: Callable[..., Any]) -> bool:
        """Remove ``handler``'s registrations under exactly ``pattern``; True if any was.

        Safe during a replay, from a handler too: the event being replayed keeps its
        handlers, the next event does not reach ``handler``. A ``pattern`` that is not a
        str, or a ``handler`` that is not callable, is a ``TypeError``.
        """
        check_removal("remove_handler", pattern, handler)
        pattern = plain_name(pattern)
        return self._handlers.remove_where(pattern, lambda apply: apply.function == handler)

    def handlers(self, event_type: str) -> list[Callable[..., Any]]:
        """The handlers an event of ``event_type`` goes to, in call order.

        Empty for a type that is not a valid topic: replay skips such stored events.
        """
        return [h.function for h in handlers_for(self._handlers, event_type)]

    # -- checkpoints ----------------------------------------------------------------

    @property
    def checkpoints(self) -> CheckpointStore:
        """Where checkpoints are kept (opened on first use)."""
        if self._checkpoints is None:
            given = self._checkpoints_given
            url = given if isinstance(given, str) else store_url(self.store)
            opened = open_checkpoint_store(url)
            if given is None and isinstance(opened, MemoryCheckpointStore):
                # beside a memory event store: the one checkpoint store of that store's,
                # so that a new EventReplay of it resumes a checkpoint in this process,
                # as projections and attachments do (it is never closed by a replay)
                self._checkpoints = shared_in_memory(self.store, opened)
                self._shared = True
            else:
                self._checkpoints = opened
                opened_by(opened, "EventReplay")  # closed by close()
        return self._checkpoints

    async def reset(self, checkpoint: str) -> bool:
        """Forget a checkpoint, so the next run with that name starts from the beginning.

        Over a store with ``access=``, resetting needs what the replay that saved it
        needs: ``read`` on its stream (a ``replay_stream`` checkpoint), on the ``streams``
        patterns a ``replay_all`` one recorded (``#`` when it had none, or recorded none),
        or on ``#`` for a name with no checkpoint saved (a denial is audited, and nothing
        is deleted). With the store's ``audit=``, the deletion is recorded
        (``checkpoint.delete``). ``close()`` waits for a reset under way, as for a replay.
        """
        key = checkpoint_key(checkpoint)
        with run_in(self._running):  # close() waits for it
            return await self._reset(checkpoint, key)

    async def _reset(self, checkpoint: str, key: str) -> bool:
        checkpoints = self.checkpoints
        streams: list[str] | None = None  # the whole log, unless it is one stream's
        if self.store.access is not None:
            saved = await checkpoints.load(key)
            state = saved.state if saved and isinstance(saved.state, dict) else {}
            scope, recorded = state.get("scope"), state.get("streams")
            if isinstance(scope, str) and scope.startswith("stream:"):
                streams = [scope.removeprefix("stream:")]
            elif scope == "all" and isinstance(recorded, list) and recorded:
                # the streams it was filtered to, if recorded (else the whole log)
                if all(isinstance(item, str) for item in recorded):
                    streams = recorded
        return await self.store._forget_checkpoint(
            lambda: checkpoints.delete(key),
            key,
            streams,
            f"resetting replay checkpoint {checkpoint!r}",
        )

    async def close(self) -> None:
        """Stop the replays under way, then close the checkpoint store if this replay
        opened it.

        Each replay under way stops before its next event, saves its checkpoint there
        and raises :class:`ClosedError`; ``close()`` waits for those on its event loop
        (not for one it is called from, a handler's).
        """
        self._closings += 1
        await wait_for_runs_here(self._running)
        checkpoints, self._checkpoints = self._checkpoints, None
        if self._shared or checkpoints is None:
            return
        if checkpoints is self._checkpoints_given:
            self._checkpoints = checkpoints  # not ours: kept, open
            return
        # let go first: a call made while it closes opens a store of its own
        await checkpoints.close()

    # -- replays --------------------------------------------------------------------

    async def replay_stream(
        self,
        stream: str,
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
        start_pos: int = 0,
        *,
        types: Patterns = None,
        speed: float | None = None,
        max_gap: float | None = None,
        progress: ProgressCallback | None = None,
        progress_every: int = 100,
        checkpoint: str | None = None,
        checkpoint_every: int = 100,
        on_error: OnError = "continue",
        retry_policy: RetryPolicy = RetryPolicy.NONE,
    ) -> ReplayReport:
        """Replay one stream from ``start_pos`` (a stream position, inclusive).

        See the module docs for ``speed``, ``progress``, ``checkpoint`` and ``on_error``.
        """
        window = TimeWindow.of(start_time, end_time)
        selected = patterns_of(types, "types")
        if selected is not None and "#" in selected:
            selected = None  # every type, stored ones that are not topics too, as read_all's
        run = ReplayRun(
            self,
            scope=f"stream:{stream}",
            filters=scope_of(None, selected),
            window=window,
            types=selected,
            speed=speed,
            max_gap=max_gap,
            progress=progress,
            progress_every=progress_every,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            on_error=on_error,
            retry_policy=retry_policy,
            position_of=_stream_position,
        )
        # read first: a checkpoint is loaded only for a principal that may read the stream
        parse_name(stream, "stream name")
        await self.store._acheck_read(stream)
        start = await run.resume_from(check_start_pos(start_pos))
        # the stream's end as the replay begins: what is appended meanwhile is the next
        # replay's (else a writer faster than the handlers would keep it going for ever)
        version = await self.store.stream_version(stream)
        reader = UpTo(self.store.get_stream(stream, start), version, _stream_position)
        if run.types is not None or run.settled is not None:  # not known in advance
            return await run.execute(reader)
        run.total = 0
        if version is not None:
            # Positions continue past a soft-deleted incarnation's hidden events, so the
            # count starts at the first visible one, not at ``start``.
            first = await self.store.get_stream(stream, start, limit=1)
            if first:
                run.total = version + 1 - _stream_position(first[0])
        return await run.execute(reader)

    async def replay_all(
        self,
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
        start_pos: int = 0,
        *,
        streams: Patterns = None,
        types: Patterns = None,
        speed: float | None = None,
        max_gap: float | None = None,
        progress: ProgressCallback | None = None,
        progress_every: int = 100,
        checkpoint: str | None = None,
        checkpoint_every: int = 100,
        on_error: OnError = "continue",
        retry_policy: RetryPolicy = RetryPolicy.NONE,
    ) -> ReplayReport:
        """Replay the global log from ``start_pos`` (a global position, inclusive).

        ``streams`` and ``types`` take one pattern or a list; the store filters by them.
        """
        window = TimeWindow.of(start_time, end_time)
        stream_patterns = patterns_of(streams, "streams")
        type_patterns = patterns_of(types, "types")
        run = ReplayRun(
            self,
            scope="all",
            filters=scope_of(_every(stream_patterns), _every(type_patterns)),
            window=window,
            types=None,
            speed=speed,
            max_gap=max_gap,
            progress=progress,
            progress_every=progress_every,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            on_error=on_error,
            retry_policy=retry_policy,
            position_of=_global_position,
        )
        selected_streams = list(stream_patterns) if stream_patterns else None
        await self.store._acheck_read(selected_streams)  # before a checkpoint is loaded
        start = await run.resume_from(check_start_pos(start_pos))
        selected_types = list(type_patterns) if type_patterns else None
        ranges = None
        if window.start is not None or window.end is not None:
            # seek: only the blocks of positions whose timestamps can be in the window
            ranges = await self.store._time_ranges(window.start, window.end, start)
        if ranges is not None and run.checkpoint is not None and window.end is not None:
            # the ranges not read that may hold events past the end: the checkpoint
            # must not pass them, a run with a later end reads them
            later = await self.store._time_ranges(window.end, None, start)
            if later is not None:
                run.gap = first_outside(later, ranges)
        reader: AsyncIterable[Event]
        if ranges is None:  # a backend without a time summary: the window is a filter
            reader = self.store.read_all(start, streams=selected_streams, types=selected_types)
        else:
            reader = _InRanges(self.store, ranges, selected_streams, selected_types)
        # the log's end as the replay begins: what is appended meanwhile is the next
        # replay's (else a writer faster than the handlers would keep it going for ever)
        end = await self.store.backend.head()
        return await run.execute(UpTo(reader, end, _global_position))


class _InRanges:
    """``read_all``'s events in each of ``ranges`` of global positions, one range after
    another (see :meth:`~pepperpy.event.store.base.StoreBackend.time_ranges`)."""

    __slots__ = ("_events", "_high", "_ranges", "_store", "_streams", "_types")

    def __init__(
        self,
        store: EventStore,
        ranges: list[tuple[int, int | None]],
        streams: list[str] | None,
        types: list[str] | None,
    ) -> None:
        self._store = store
        self._ranges = deque(ranges)
        self._streams = streams
        self._types = types
        self._events: AsyncIterator[Event] | None = None
        self._high: int | None = None

    def __aiter__(self) -> _InRanges:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._events is None:
                if not self._ranges:
                    raise StopAsyncIteration
                low, self._high = self._ranges.popleft()
                # at most high - low events lie in the range: a limit keeps pages that size
                limit = None if self._high is None else self._high - low
                reader = self._store.read_all(
                    low, streams=self._streams, types=self._types, limit=limit
                )
                self._events = aiter(reader)
            try:
                event = await anext(self._events)
            except StopAsyncIteration:
                self._events = None
                continue
            if self._high is not None and _global_position(event) >= self._high:
                self._events = None  # past the range: on to the next one
                continue
            return event


def _every(patterns: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """Filter patterns as a checkpoint records them: None where they select everything."""
    return None if not patterns or "#" in patterns else patterns


def _stream_position(event: Event) -> int:
    position = event.position
    if position is None:
        raise ReplayError(f"event {event.id} read from the store carries no stream position")
    return position


def _global_position(event: Event) -> int:
    position = event.global_position
    if position is None:
        raise ReplayError(f"event {event.id} read from the store carries no global position")
    return position
