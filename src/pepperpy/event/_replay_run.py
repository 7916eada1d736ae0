"""One replay call at work: each event through its handlers, paced, checkpointed, reported.

:class:`~pepperpy.event.EventReplay` checks a call's arguments, resumes it from its
checkpoint and opens the reader; a :class:`ReplayRun` does the rest: it sends each event
that passes the filters to its handlers in order (retrying a failing one per the
``retry_policy``, recording or stopping on a final failure), keeps the original pace
under ``speed``, saves the checkpoint every ``checkpoint_every`` events and when the
run ends (a save of unknown outcome is read back, never guessed), and calls
``progress``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from ._checkpoint_base import save_checkpoint
from ._checkpoint_head import check_not_past_head
from ._errors import (
    ClosedError,
    ConcurrencyError,
    ConfigurationError,
    ReplayError,
    StoreError,
)
from ._event import Event
from ._handlers import check_handler, is_async_callable
from ._loops import settled
from ._options import check_count
from ._projection_scope import Scope, describe, may_read
from ._replay_options import (
    TimeWindow,
    check_speed,
    checkpoint_key,
    describe_checkpoints,
    handler_name,
    handlers_for,
    type_matches,
)
from ._replay_report import ReplayFailure, ReplayProgress, ReplayReport, ReplayStopped
from ._retry import RetryPolicy
from ._seconds import check_seconds
from .security._principal import current_principal
from .store.base import from_micros, to_micros

if TYPE_CHECKING:
    from ._replay import EventReplay

__all__ = ["FAILURES_KEPT", "OnError", "ProgressCallback", "ReplayHandler", "ReplayRun", "UpTo"]

logger = logging.getLogger("pepperpy.event.replay")

ProgressCallback = Callable[[ReplayProgress], Any]
OnError = Literal["continue", "stop"]

FAILURES_KEPT = 100


class ReplayHandler:
    """A registered handler: its pattern, and whether calling it gives a coroutine."""

    __slots__ = ("function", "is_async", "pattern")

    def __init__(self, pattern: str, function: Callable[..., Any]) -> None:
        check_handler(function)
        self.pattern = pattern
        self.function = function
        self.is_async = is_async_callable(function)


class ReplayRun:
    """The state of one replay call: counters, pacing, checkpointing, progress."""

    def __init__(
        self,
        replay: EventReplay,
        *,
        scope: str,
        filters: Scope,
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
        #: the replay's close() calls so far: one more stops this run
        self.closings = replay._closings
        self.scope = scope
        self.filters = filters
        self.window = window
        self.types = types
        self.speed = None if speed is None else check_speed(speed)
        self.max_gap = None if max_gap is None else check_seconds(max_gap, "max_gap", zero=True)
        self.progress = progress
        self.progress_every = progress_every
        self.checkpoint = None if checkpoint is None else checkpoint_key(checkpoint)
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
        #: the revision of the save that holds it (compared with it: see CheckpointStore.save)
        self.saved_revision: str | None = None
        #: a save failed and reading the checkpoint back did not show it: it may still
        #: land, so no further save of this run may compare against ``saved_position``
        self.in_doubt = False
        #: the state the saved checkpoint holds (as saved or loaded)
        self.saved_state: Any = None
        #: with ``checkpoint`` and an ``end_time``: the first position read whose event
        #: the window leaves to a later run (its timestamp at or past the end), and the
        #: first one of an unread range of the log that may hold such events (``gap``).
        #: The checkpoint records them (``held``), so a run with a later end reads them
        self.held: int | None = None
        self.gap: int | None = None
        #: the loaded checkpoint's ``held`` (first position, end in microseconds): kept
        #: by a run whose end is not later (``carried``); re-read by one whose end is
        #: later or open (``settled``: with the saved position and the end as a datetime)
        self.carried: tuple[int, int] | None = None
        self.settled: tuple[int, int, int, datetime] | None = None
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
            theirs = state.get("scope")
            if not self._may_read_scope(theirs):
                raise ReplayError(
                    f"checkpoint {self.checkpoint_name!r} belongs to another replay, not one "
                    f"of {self.scope!r} (which one is withheld: principal "
                    f"{current_principal() or 'anonymous'!r} may not read what it "
                    "replayed): use another name"
                )
            raise ReplayError(
                f"checkpoint {self.checkpoint_name!r} belongs to a replay of "
                f"{theirs!r}, not {self.scope!r}: use another name or reset it"
            )
        if "streams" in state or "types" in state:  # else saved before filters were recorded
            self._check_filters({"streams": state.get("streams"), "types": state.get("types")})
        name = self.checkpoint_name
        await check_not_past_head(
            self.replay.store,
            f"replay checkpoint {name!r}",
            saved.position,
            f"Delete it with replay.reset({name!r}) to replay from start_pos again; if "
            "checkpoints= holds another event store's checkpoints, give it this store's.",
            stream=self.scope.removeprefix("stream:") if self.scope != "all" else None,
        )
        self.saved_position, self.saved_revision = saved.position, saved.revision
        self.saved_state = saved.state
        held = _held_of(state)
        if held is not None:
            first, end = held
            if self.window.end is not None and to_micros(self.window.end) <= end:
                self.carried = held
            else:  # this run's window takes events the saved one left: read from there
                self.settled = (saved.position, first, end, from_micros(end))
                return max(start, first)
        return max(start, saved.position + 1)

    def _check_filters(self, theirs: Scope) -> None:
        """Refuse a checkpoint saved by a replay of the same scope with other ``streams``
        or ``types``: resuming after its position would silently pass over the events the
        new filters select before it. The saved filters are told only to a principal that
        may read what they selected."""
        if theirs == self.filters:
            return
        store = self.replay.store
        readable = self.scope.startswith("stream:") or may_read(store, theirs)
        if not readable:
            raise ReplayError(
                f"checkpoint {self.checkpoint_name!r} belongs to a replay with other "
                f"filters than {describe(self.filters)} (which ones is withheld: principal "
                f"{current_principal() or 'anonymous'!r} may not read what it replayed): "
                "use another name"
            )
        raise ReplayError(
            f"checkpoint {self.checkpoint_name!r} was saved by a replay of {describe(theirs)}, "
            f"not {describe(self.filters)}: resuming after its position would pass over "
            "the events these filters add before it; use another name or reset it"
        )

    def _may_read_scope(self, scope: object) -> bool:
        """Whether this principal may read what a replay of ``scope`` read (always, on a
        store without ``access=``): else a checkpoint's scope is not told."""
        access = self.replay.store.access
        if access is None:
            return True
        target = "#"
        if isinstance(scope, str) and scope.startswith("stream:"):
            target = scope.removeprefix("stream:")
        return access.is_allowed(current_principal(), "read", target)

    async def execute(self, reader: AsyncIterable[Event]) -> ReplayReport:
        self.started = time.perf_counter()
        index = self.replay._handlers
        types, window, position_of = self.types, self.window, self.position_of
        isawaitable = inspect.isawaitable
        windowed = window.start is not None or window.end is not None
        # with a checkpoint, events at or past the end are noted: a later end takes them
        hold_end = window.end if self.checkpoint is not None else None
        reread = self.settled
        # 0 disables a periodic duty: no modulo on the hot path when it is off
        save_every = self.checkpoint_every if self.checkpoint is not None else 0
        report_every = self.progress_every if self.progress is not None else 0
        replay, closings = self.replay, self.closings
        task = asyncio.current_task()
        if task is not None:
            replay._running.add(task)
        try:
            async for event in reader:
                if replay._closings != closings:
                    raise ClosedError(
                        f"the EventReplay was closed during this replay, before the event at "
                        f"{self.where(event)}: it stopped there"
                        + ("" if self.checkpoint is None else ", its checkpoint saved")
                    )
                if types is not None and not type_matches(types, event.type):
                    # not selected: neither read nor skipped, as when the store filters
                    # by type (replay_all), so both count the same events the same way
                    continue
                if reread is not None:
                    if position_of(event) > reread[0]:
                        reread = None  # past what the saved checkpoint had read
                    elif event.timestamp < reread[3]:
                        continue  # in the saved run's window: handled, or skipped, then
                if hold_end is not None and event.timestamp >= hold_end and self.held is None:
                    self.held = position_of(event)
                chosen: tuple[ReplayHandler, ...] = ()
                if not windowed or event.timestamp in window:
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
        finally:
            if task is not None:
                replay._running.discard(task)
        await self._save_checkpoint()
        if report_every and self.reported != self.read:
            await self._report_progress()  # the end, unless the last periodic call was it
        return self.report()

    def where(self, event: Event) -> str:
        """``event``'s position in words: in its stream, or in the global log."""
        what = "global position" if self.scope == "all" else "stream position"
        return f"{what} {self.position_of(event)}"

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

    async def _recover(self, handler: ReplayHandler, event: Event, exc: Exception) -> bool:
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

    def _target(self) -> tuple[int, dict[str, Any]] | None:
        """The position and state to save (None: nothing read, nothing to save).

        ``held`` in the state, ``[first, end]``: the events at positions from ``first``
        up to the saved one whose timestamp is at or past ``end`` (microseconds) were
        left to a later run by the window's end; a run with a later end (or none)
        resumes at ``first`` and passes over the others there, handled already.
        """
        last = self.last_position
        if last is None:
            return None
        state: dict[str, Any] = {"scope": self.scope, **self.filters}
        held = self.held
        if self.gap is not None and self.gap <= last:
            held = self.gap if held is None else min(held, self.gap)
        end = None if self.window.end is None else to_micros(self.window.end)
        if self.settled is not None and last < self.settled[0]:
            # still among the events the saved run read: it keeps its position and end,
            # and what lies from here on is still to read again
            done, _, saved_end, _ = self.settled
            first = last + 1 if held is None else min(held, last + 1)
            state["held"] = [first, saved_end]
            return done, state
        if self.carried is not None:
            first, saved_end = self.carried
            if held is not None and end is not None:
                first, saved_end = min(first, held), min(saved_end, end)
            state["held"] = [first, saved_end]
        elif held is not None and end is not None:
            state["held"] = [held, end]
        return last, state

    async def _save_checkpoint(self) -> None:
        if self.checkpoint is None or self.in_doubt:
            return
        target = self._target()
        if target is None:
            return
        position, state = target
        if position == self.saved_position and state == self.saved_state:
            return
        # settled: a save cancelled half-way may still commit, and the next save's
        # compare-and-set must know whether it did
        await settled(self._save(self.checkpoint, position, state))

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

    async def _save(self, key: str, position: int, state: dict[str, Any]) -> None:
        try:
            revision = await save_checkpoint(
                self.replay.checkpoints,
                key,
                position,
                state,
                previous=self.saved_position,
                revision=self.saved_revision,
            )
        except ConcurrencyError:
            raise
        except StoreError as failure:
            if failure.written is False:  # the checkpoint still holds saved_position
                raise
            # the connection may have been lost after the server committed the save
            # (PostgreSQL then says the outcome is unknown): the checkpoint tells
            held = await self._holds(key, position, state, failure)
            if held is False:
                self.in_doubt = True
                raise
            revision = held
        self.saved_position, self.saved_revision = position, revision
        self.saved_state = state

    async def _holds(
        self, key: str, position: int, state: Any, failure: StoreError
    ) -> str | None | Literal[False]:
        """Whether checkpoint ``key`` holds exactly ``position`` and ``state`` (a save
        that failed with ``failure`` was written after all): its revision if so, else
        False."""
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
                return saved.revision
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


def _held_of(state: dict[str, Any]) -> tuple[int, int] | None:
    """A checkpoint state's ``held`` (see :meth:`ReplayRun._target`), if well formed."""
    held = state.get("held")
    if (
        isinstance(held, list)
        and len(held) == 2
        and all(isinstance(item, int) and not isinstance(item, bool) for item in held)
    ):
        return held[0], held[1]
    return None


def first_outside(
    ranges: list[tuple[int, int | None]], covered: list[tuple[int, int | None]]
) -> int | None:
    """The first position in ``ranges`` that no range of ``covered`` holds (None: none);
    both are sorted, disjoint ``(low, high)`` ranges, ``high`` exclusive or None (open)."""
    for low, high in ranges:
        position = low
        for covered_low, covered_high in covered:
            if covered_high is not None and covered_high <= position:
                continue
            if covered_low > position:
                break
            if covered_high is None:
                return None
            position = covered_high
        if high is None or position < high:
            return position
    return None


class UpTo:
    """The events of ``reader`` up to position ``end`` (as ``position_of`` gives it;
    None: none at all), read when a run begins: it catches up to the end of the log as
    it was then and returns, however fast others append meanwhile (their events are the
    next run's). Positions are handed out in commit order, so every event up to ``end``
    is readable already and none can appear below it later."""

    __slots__ = ("_end", "_events", "_position_of")

    def __init__(
        self, reader: AsyncIterable[Event], end: int | None, position_of: Callable[[Event], int]
    ) -> None:
        self._events = aiter(reader)
        self._end = end
        self._position_of = position_of

    def __aiter__(self) -> UpTo:
        return self

    async def __anext__(self) -> Event:
        end = self._end
        if end is None:
            raise StopAsyncIteration
        event = await anext(self._events)
        if self._position_of(event) > end:
            self._end = None
            raise StopAsyncIteration
        return event
