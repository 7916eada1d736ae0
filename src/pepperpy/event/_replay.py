"""EventReplay: feed recorded events back through handlers, with filters and checkpoints.

A replay reads a stream (``replay_stream``) or the store's global log (``replay_all``)
page by page, so memory stays bounded however long the history is. Each event that
passes the filters (the time window, ``types``/``streams`` patterns) goes to every
handler whose pattern matches its type, one handler after another in registration
order, one event after another in log order: a replay is deterministic.

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
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from ._checkpoints import (
    CheckpointStore,
    SQLiteCheckpointStore,
    open_checkpoint_store,
    opened_by,
)
from ._errors import ConcurrencyError, ConfigurationError, PatternError, ReplayError, StoreError
from ._event import Event
from ._handlers import check_handler, is_async_callable
from ._loops import settled
from ._options import check_count, check_instance
from ._patterns import PatternIndex, matches, parse_pattern
from ._retry import RetryPolicy
from ._seconds import check_seconds
from ._text import shown, text_problem

if TYPE_CHECKING:
    from .store import EventReader, EventStore

__all__ = [
    "EventReplay",
    "ReplayFailure",
    "ReplayProgress",
    "ReplayReport",
    "ReplayStopped",
    "TimeWindow",
    "parse_time",
]

logger = logging.getLogger("pepperpy.event.replay")

H = TypeVar("H", bound=Callable[..., Any])
T = TypeVar("T")
Patterns = str | Sequence[str] | None
ProgressCallback = Callable[["ReplayProgress"], Any]
OnError = Literal["continue", "stop"]

FAILURES_KEPT = 100


# -- time windows ------------------------------------------------------------------------


def parse_time(value: datetime | str | None, what: str = "time") -> datetime | None:
    """An aware ``datetime`` from a datetime or an ISO-8601 string; None stays None.

    Naive values (no UTC offset) are refused with :class:`ValueError`, because guessing
    a timezone would silently shift the window by hours.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise ConfigurationError(
                f"{what} {value!r} is not an ISO-8601 date-time (e.g. 2023-01-01T00:00:00Z)"
            ) from exc
    elif isinstance(value, datetime):
        parsed = value
    else:
        raise TypeError(
            f"{what} must be a datetime or an ISO-8601 string, got {type(value).__name__}"
        )
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ConfigurationError(
            f"{what} {parsed.isoformat()} is naive: give a timezone (e.g. a trailing Z for UTC)"
        )
    return parsed


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """``start`` inclusive, ``end`` exclusive, either open; compared to ``event.timestamp``."""

    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def of(cls, start: datetime | str | None, end: datetime | str | None) -> TimeWindow:
        """Parse both bounds (see :func:`parse_time`) and check that they are in order."""
        window = cls(parse_time(start, "start_time"), parse_time(end, "end_time"))
        if window.start is not None and window.end is not None and window.start > window.end:
            raise ConfigurationError(
                f"start_time {window.start.isoformat()} is after end_time {window.end.isoformat()}"
            )
        return window

    def __contains__(self, moment: datetime) -> bool:
        if self.start is not None and moment < self.start:
            return False
        return self.end is None or moment < self.end


# -- reports -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplayFailure:
    """A handler that raised on an event (after its retries)."""

    event: Event
    handler: Callable[..., Any]
    exception: BaseException
    attempts: int


@dataclass(frozen=True, slots=True)
class ReplayProgress:
    """Where a running replay stands; passed to the ``progress`` callback.

    ``total`` is how many events a stream replay can read: the stream's visible events
    from its start position (0 for a missing or deleted stream), counted when it starts.
    It is ``None`` for ``replay_all``, whose length is not known in advance.
    """

    read: int
    replayed: int
    skipped: int
    failed: int
    position: int | None
    total: int | None
    elapsed: float


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a finished replay did.

    ``replayed``: events every matching handler handled; ``skipped``: events read but
    outside the time window or matched by no handler; ``failed``: events on which a
    handler raised. ``duration`` is in seconds; ``last_position`` is the position of the
    last event read (stream position for ``replay_stream``, global position for
    ``replay_all``), None if nothing was read. ``failures`` keeps the first 100.
    """

    replayed: int
    skipped: int
    failed: int
    duration: float
    last_position: int | None
    checkpoint: str | None = None
    failures: tuple[ReplayFailure, ...] = field(default=(), repr=False)

    @property
    def read(self) -> int:
        """Every event read from the store during this run."""
        return self.replayed + self.skipped + self.failed


class ReplayStopped(ReplayError):
    """A handler failed and ``on_error="stop"`` ended the replay; ``report`` says how far it got."""

    def __init__(self, message: str, report: ReplayReport) -> None:
        super().__init__(message)
        self.report = report


# -- the replay --------------------------------------------------------------------------


class _Handler:
    __slots__ = ("function", "is_async", "pattern")

    def __init__(self, pattern: str, function: Callable[..., Any]) -> None:
        check_handler(function)
        self.pattern = pattern
        self.function = function
        self.is_async = is_async_callable(function)


class EventReplay:
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
        self._handlers: PatternIndex[_Handler] = PatternIndex()

    # -- registration ---------------------------------------------------------------

    @overload
    def handle(self, pattern: str, handler: None = None) -> Callable[[H], H]: ...

    @overload
    def handle(self, pattern: str, handler: H) -> H: ...

    def handle(self, pattern: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Register a sync or async handler for event types matching ``pattern``.

        Works as a decorator (``@replay.handle("user.*")``) or a direct call; returns
        the handler unchanged.
        """
        parse_pattern(pattern)
        if handler is not None:
            self._handlers.add(pattern, _Handler(pattern, handler))
            return handler

        def decorator(function: H) -> H:
            self._handlers.add(pattern, _Handler(pattern, function))
            return function

        return decorator

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
            self._checkpoints = open_checkpoint_store(url)
            opened_by(self._checkpoints, "EventReplay")  # closed by close()
        return self._checkpoints

    async def reset(self, checkpoint: str) -> bool:
        """Forget a checkpoint, so the next run with that name starts from the beginning."""
        return await self.checkpoints.delete(_checkpoint_key(checkpoint))

    async def close(self) -> None:
        """Close the checkpoint store if this replay opened it."""
        if self._checkpoints is not None and self._checkpoints is not self._checkpoints_given:
            await self._checkpoints.close()
            self._checkpoints = None

    async def __aenter__(self) -> EventReplay:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

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
        run = _Run(
            self,
            scope=f"stream:{stream}",
            window=window,
            types=patterns_of(types),
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
        start = await run.resume_from(_start(start_pos))
        version = await self.store.stream_version(stream)
        run.total = 0
        if version is not None:
            # Positions continue past a soft-deleted incarnation's hidden events, so the
            # count starts at the first visible one, not at ``start``.
            first = await self.store.get_stream(stream, start, limit=1)
            if first:
                run.total = version + 1 - _stream_position(first[0])
        return await run.execute(self.store.get_stream(stream, start))

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
        stream_patterns = patterns_of(streams)
        type_patterns = patterns_of(types)
        run = _Run(
            self,
            scope="all",
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
        start = await run.resume_from(_start(start_pos))
        reader = self.store.read_all(
            start,
            streams=list(stream_patterns) if stream_patterns else None,
            types=list(type_patterns) if type_patterns else None,
        )
        return await run.execute(reader)


def check_store(store: object) -> None:
    """Refuse anything but an :class:`~pepperpy.event.EventStore` (a URL is told to open one)."""
    from .store import EventStore

    check_instance(store, EventStore, "store", from_url=True)


def store_url(store: object) -> str | None:
    """The URL an event store was opened with, if it tells."""
    url = getattr(store, "url", None)
    # a store built on a backend object reports "<BackendName>": no URL to share
    return url if isinstance(url, str) and "://" in url else None


def _checkpoint_key(name: str) -> str:
    check_name(name, "a checkpoint name")
    return f"replay:{name}"


def check_name(name: object, what: str) -> None:
    """Refuse a checkpoint or projection name no backend can hold, as stream names are.

    A NUL or a lone surrogate (a file name read with ``surrogateescape``) was taken by
    the memory store, raised a bare ``UnicodeEncodeError`` on SQLite and a
    ``StoreError`` reading like an outage on PostgreSQL; it is refused here, the same on
    every backend, before a checkpoint is loaded or any handler runs.
    """
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{what} must be a non-empty str, got {name!r}")
    problem = text_problem(name)
    if problem is not None:
        raise ConfigurationError(f"{what} {shown(name)} {problem}")


def patterns_of(value: Patterns) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview) or not isinstance(value, str | Iterable):
        raise TypeError(f"patterns must be a str or a list of str, got {value!r}")
    items = (value,) if isinstance(value, str) else tuple(value)
    for item in items:
        parse_pattern(item)
    return items


def handlers_for(index: PatternIndex[T], event_type: str) -> tuple[T, ...]:
    """What ``index`` holds for a stored event's type; nothing if it is not a valid topic.

    Older stores may hold such types; like the store's read filters, replay and
    projections let them match no pattern rather than fail on them.
    """
    try:
        return index.match(event_type)
    except PatternError:
        return ()


def type_matches(patterns: tuple[str, ...], event_type: str) -> bool:
    """True when a stored event's type matches one of ``patterns`` (already validated)."""
    try:
        return any(matches(pattern, event_type) for pattern in patterns)
    except PatternError:  # the type is not a valid topic: it matches no pattern
        return False


def _start(start_pos: int) -> int:
    if not isinstance(start_pos, int) or isinstance(start_pos, bool) or start_pos < 0:
        raise ConfigurationError(f"start_pos must be an int >= 0, got {start_pos!r}")
    return start_pos


def describe_checkpoints(checkpoints: CheckpointStore) -> str:
    """A checkpoint store, for a message: an SQLite one's file and read-only option."""
    if isinstance(checkpoints, SQLiteCheckpointStore):
        mode = "immutable=1" if checkpoints.immutable else "mode=ro"
        return f"{str(checkpoints.path.absolute())!r} ({mode})"
    return type(checkpoints).__name__


def _speed(speed: object) -> float:
    """A replay's ``speed``: a factor > 0 (not seconds), never a bool (``True`` is 1)."""
    if not isinstance(speed, bool) and isinstance(speed, int | float) and speed > 0:
        try:
            return float(speed)
        except OverflowError:  # an int past a float's range: as fast as can be
            return math.inf
    raise ConfigurationError(f"speed must be a number > 0 or None, got {speed!r}")


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


class _Run:
    """The state of one replay call: counters, pacing, checkpointing, progress."""

    def __init__(
        self,
        replay: EventReplay,
        *,
        scope: str,
        window: TimeWindow,
        types: tuple[str, ...] | None,
        speed: float | None,
        max_gap: float | None,
        progress: ProgressCallback | None,
        progress_every: int,
        checkpoint: str | None,
        checkpoint_every: int,
        on_error: OnError,
        retry_policy: RetryPolicy,
        position_of: Callable[[Event], int],
    ) -> None:
        if on_error not in ("continue", "stop"):
            raise ConfigurationError(f"on_error must be 'continue' or 'stop', got {on_error!r}")
        check_count(progress_every, "progress_every")
        check_count(checkpoint_every, "checkpoint_every")
        if progress is not None and not callable(progress):
            raise TypeError(f"progress must be a callable or None, got {progress!r}")
        if not isinstance(retry_policy, RetryPolicy):
            raise TypeError(f"retry_policy must be a RetryPolicy, got {retry_policy!r}")
        self.replay = replay
        self.scope = scope
        self.window = window
        self.types = types
        self.speed = None if speed is None else _speed(speed)
        self.max_gap = None if max_gap is None else check_seconds(max_gap, "max_gap", zero=True)
        self.progress = progress
        self.progress_every = progress_every
        self.checkpoint = None if checkpoint is None else _checkpoint_key(checkpoint)
        self.checkpoint_name = checkpoint
        self.checkpoint_every = checkpoint_every
        self.on_error = on_error
        self.retry_policy = retry_policy
        self.position_of = position_of
        self.total: int | None = None
        self.replayed = self.skipped = self.failed = 0
        self.failures: list[ReplayFailure] = []
        self.last_position: int | None = None
        self.saved_position: int | None = None
        #: a save failed and reading the checkpoint back did not show it: it may still
        #: land, so no further save of this run may compare against ``saved_position``
        self.in_doubt = False
        self.reported: int | None = None  # events read at the last progress call
        self.started = time.perf_counter()
        self.pace_anchor: tuple[float, datetime] | None = None

    async def resume_from(self, start: int) -> int:
        """The first position to read: ``start``, or after the saved checkpoint.

        A checkpoint store that only reads is refused here, before any event is handled:
        the replay would handle them all, then fail to save how far it got.
        """
        if self.checkpoint is None:
            return start
        checkpoints = self.replay.checkpoints
        if checkpoints.read_only:
            raise ConfigurationError(
                f"replay checkpoint {self.checkpoint_name!r} cannot be saved: the checkpoint "
                f"store {describe_checkpoints(checkpoints)} is open read-only, so nothing "
                "was replayed; replay without checkpoint=, or give checkpoints= a writable "
                "store"
            )
        saved = await checkpoints.load(self.checkpoint)
        if saved is None:
            return start
        state = saved.state if isinstance(saved.state, dict) else {}
        if state.get("scope") != self.scope:
            raise ReplayError(
                f"checkpoint {self.checkpoint_name!r} belongs to a replay of "
                f"{state.get('scope')!r}, not {self.scope!r}: use another name or reset it"
            )
        self.saved_position = saved.position
        return max(start, saved.position + 1)

    async def execute(self, reader: EventReader) -> ReplayReport:
        self.started = time.perf_counter()
        index = self.replay._handlers
        types, window, position_of = self.types, self.window, self.position_of
        isawaitable = inspect.isawaitable
        windowed = window.start is not None or window.end is not None
        # 0 disables a periodic duty: no modulo on the hot path when it is off
        save_every = self.checkpoint_every if self.checkpoint is not None else 0
        report_every = self.progress_every if self.progress is not None else 0
        try:
            async for event in reader:
                chosen: tuple[_Handler, ...] = ()
                if (types is None or type_matches(types, event.type)) and (
                    not windowed or event.timestamp in window
                ):
                    chosen = handlers_for(index, event.type)
                if chosen:
                    if self.speed is not None:
                        await self._pace(event.timestamp)
                    failed = False
                    for handler in chosen:  # inline: no coroutine per event on the hot path
                        try:
                            if handler.is_async:
                                await handler.function(event)
                            else:
                                result = handler.function(event)
                                if result is not None and isawaitable(result):
                                    await result
                        except Exception as exc:
                            if not await self._recover(handler, event, exc):
                                failed = True
                    if failed:
                        self.failed += 1
                    else:
                        self.replayed += 1
                else:
                    self.skipped += 1
                self.last_position = position_of(event)
                read = self.replayed + self.skipped + self.failed
                if save_every and read % save_every == 0:
                    await self._save_checkpoint()
                if report_every and read % report_every == 0:
                    await self._report_progress()
        except BaseException as exc:
            await self._save_checkpoint_after(exc)
            raise
        await self._save_checkpoint()
        if report_every and self.reported != self.read:
            await self._report_progress()  # the end, unless the last periodic call was it
        return self.report()

    @property
    def read(self) -> int:
        return self.replayed + self.skipped + self.failed

    def report(self) -> ReplayReport:
        return ReplayReport(
            replayed=self.replayed,
            skipped=self.skipped,
            failed=self.failed,
            duration=time.perf_counter() - self.started,
            last_position=self.last_position,
            checkpoint=self.checkpoint_name,
            failures=tuple(self.failures),
        )

    async def _recover(self, handler: _Handler, event: Event, exc: Exception) -> bool:
        """After ``handler`` raised ``exc``: retry per policy; True if a retry succeeded.

        A final failure is recorded, and raises :class:`ReplayStopped` under
        ``on_error="stop"``.
        """
        attempt = 1
        while self.retry_policy.should_retry(exc, attempt):
            await self.retry_policy.sleep(attempt)
            attempt += 1
            try:
                result = handler.function(event)
                if result is not None and inspect.isawaitable(result):
                    await result
                return True
            except Exception as again:
                exc = again
        self._record_failure(ReplayFailure(event, handler.function, exc, attempt))
        if self.on_error == "stop":
            self.failed += 1
            raise ReplayStopped(
                f"replay stopped: handler {handler_name(handler.function)} failed on "
                f"event {event.type!r} at position {self.position_of(event)}: {exc}",
                self.report(),
            ) from exc
        return False

    def _record_failure(self, failure: ReplayFailure) -> None:
        logger.error(
            "replay handler %s failed on %r (attempt %d)",
            handler_name(failure.handler),
            failure.event,
            failure.attempts,
            exc_info=failure.exception,
        )
        if len(self.failures) < FAILURES_KEPT:
            self.failures.append(failure)

    async def _pace(self, timestamp: datetime) -> None:
        """Wait until ``timestamp``'s place on the original schedule, scaled by speed.

        The schedule is anchored at the first paced event, so a slow handler shortens
        the next pause instead of delaying everything after it. ``max_gap`` caps a single
        pause (long quiet periods are cut short) by moving the anchor forward.
        """
        assert self.speed is not None
        loop = asyncio.get_running_loop()
        if self.pace_anchor is None:
            self.pace_anchor = (loop.time(), timestamp)
            return
        wall_start, first = self.pace_anchor
        due = wall_start + (timestamp - first).total_seconds() / self.speed
        delay = due - loop.time()
        if self.max_gap is not None and delay > self.max_gap:
            self.pace_anchor = (wall_start - (delay - self.max_gap), first)
            delay = self.max_gap
        if delay > 0:
            await asyncio.sleep(delay)

    async def _save_checkpoint(self) -> None:
        if self.checkpoint is None or self.last_position is None or self.in_doubt:
            return
        if self.last_position == self.saved_position:
            return
        # settled: a save cancelled half-way may still commit, and the next save's
        # compare-and-set must know whether it did
        await settled(self._save(self.checkpoint, self.last_position))

    async def _save_checkpoint_after(self, failure: BaseException) -> None:
        """Save the checkpoint of a run that ``failure`` ends (a cancellation included).

        ``failure`` is what the caller must see: a save that fails too (another runner
        moved the checkpoint, a lost connection) is logged and noted on it, never raised
        in its place, so a cancelled replay still ends with ``CancelledError`` (or
        ``TimeoutError`` under ``asyncio.timeout``). A cancellation arriving during the
        save itself still propagates.
        """
        try:
            await self._save_checkpoint()
        except Exception as error:
            logger.error(
                "replay: saving checkpoint %r at position %s failed while the replay ended with %s",
                self.checkpoint_name,
                self.last_position,
                type(failure).__name__,
                exc_info=error,
            )
            failure.add_note(
                f"saving checkpoint {self.checkpoint_name!r} at position {self.last_position} "
                f"failed too: {error!r}"
            )

    async def _save(self, key: str, position: int) -> None:
        state = {"scope": self.scope}
        try:
            await self.replay.checkpoints.save(key, position, state, previous=self.saved_position)
        except ConcurrencyError:
            raise
        except StoreError as failure:
            if failure.written is False:  # the checkpoint still holds saved_position
                raise
            # the connection may have been lost after the server committed the save
            # (PostgreSQL then says the outcome is unknown): the checkpoint tells
            if not await self._holds(key, position, state, failure):
                self.in_doubt = True
                raise
        self.saved_position = position

    async def _holds(self, key: str, position: int, state: Any, failure: StoreError) -> bool:
        """Whether checkpoint ``key`` holds exactly ``position`` and ``state`` (a save
        that failed with ``failure`` was written after all)."""
        name = self.checkpoint_name
        try:
            saved = await self.replay.checkpoints.load(key)
        except StoreError as exc:
            failure.add_note(f"reading checkpoint {name!r} back failed too: {exc}")
        else:
            if saved is not None and saved.position == position and saved.state == state:
                logger.warning(
                    "replay: saving checkpoint %r at position %d failed (%s), but the "
                    "checkpoint holds it: it was saved",
                    name,
                    position,
                    failure,
                )
                return True
            found = None if saved is None else saved.position
            failure.add_note(
                f"checkpoint {name!r} read back holds position {found}, not {position}"
            )
        failure.add_note(
            "the failed save may still be written, so this run saves no more; the next run "
            "resumes after whatever position the checkpoint then holds"
        )
        return False

    async def _report_progress(self) -> None:
        assert self.progress is not None
        snapshot = ReplayProgress(
            read=self.read,
            replayed=self.replayed,
            skipped=self.skipped,
            failed=self.failed,
            position=self.last_position,
            total=self.total,
            elapsed=time.perf_counter() - self.started,
        )
        self.reported = snapshot.read
        result = self.progress(snapshot)
        if isinstance(result, Awaitable):
            await result


def handler_name(function: Callable[..., Any]) -> str:
    return getattr(function, "__qualname__", None) or repr(function)
