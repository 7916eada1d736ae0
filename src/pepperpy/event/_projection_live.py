"""How a :class:`~pepperpy.event.Projection` follows the log: ``follow()``, riding out
outages, and the live loop that commits what the store's subscription yields
(a mixin, :class:`Following`, so that ``_projection`` keeps loading, running and
committing)."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterable
from contextlib import AbstractAsyncContextManager, aclosing
from typing import TYPE_CHECKING, Any

from ._errors import ClosedError, ConcurrencyError, ReplayError, StoreError
from ._event import Event
from ._projection_follow import (
    Stops,
    is_outage,
    recovered,
    ride_out,
    standing,
    taken_over,
    waiting,
)
from ._seconds import check_seconds
from .store._reader import RETRY_FOR, Outage

if TYPE_CHECKING:
    from ._projection_handlers import Apply, ProjectionHandlers
    from ._replay import ReplayReport
    from .store import EventStore
    from .store._reader import StoreSubscription

__all__ = ["Following", "global_position"]

logger = logging.getLogger("pepperpy.event.replay")

_NOTHING = object()


def global_position(event: Event) -> int:
    """``event``'s position in the global log (it was read from the store)."""
    position = event.global_position
    if position is None:
        raise ReplayError(f"event {event.id} read from the store has no position")
    return position


class Following:
    """What :class:`~pepperpy.event.Projection` does to follow the log live."""

    name: str
    store: EventStore
    batch_size: int
    _handlers: ProjectionHandlers
    _state: Any
    _loaded: bool
    #: how many times close() was called: a follow() begun before the last call ends
    _closings: int
    #: the live subscriptions and tasks of the follow() calls under way (close() ends them)
    _live: set[StoreSubscription]
    _followers: set[asyncio.Task[Any]]
    #: how the last follow() ended with an error (None: it did not), for wait_until()
    _follow_failed: str | None
    #: ends the backoff of the follow() calls riding out an outage (close() wakes it)
    _stops: Stops

    if TYPE_CHECKING:  # the projection's own, which following uses

        @property
        def _position(self) -> int | None: ...
        def _turn(self) -> AbstractAsyncContextManager[None]: ...
        def _check_writable(self) -> None: ...
        def _filters(self) -> dict[str, Any]: ...
        async def _load(self) -> Any: ...
        async def _run(self) -> ReplayReport: ...
        async def _apply(self, chosen: tuple[Apply, ...], state: Any, event: Event) -> Any: ...
        async def _commit(self, state: Any, position: int | None) -> None: ...
        async def _reload_after(self, failure: BaseException) -> None: ...

    async def follow(self, *, retry_for: float | None = RETRY_FOR) -> None:
        """Catch up, then apply live appends as they commit, until cancelled (or the
        store is closed: then it returns, whether it was live or still catching up;
        what was applied and not committed is applied again by the next run).

        Live events are committed as they come, each commit taking those already read
        and waiting (up to ``batch_size``: one when they come one at a time, batches
        after a burst), so the saved state never lags more than the events being
        applied. The lock is taken per commit, so a :meth:`run` called meanwhile gets its
        turn between two of them.
        Logs (INFO) the position it follows from, then once that it has caught up.

        An outage is ridden out as a subscription rides one out, with the same backoff:
        a load, catch-up read, live read or commit failing with
        :class:`~pepperpy.event.StoreError` (state and position are then reloaded from
        disk, as after any failed commit) is followed by a catch-up from the position
        on disk, tried again until it works or ``retry_for`` seconds (None: no limit)
        have passed since the first failure; the WARNING and INFO lines name the
        projection. Past it the error is raised; the state on disk is consistent, and
        calling ``follow()`` again resumes from it. Handler errors
        (:class:`ReplayError`) and encryption errors are raised at once, and so is
        another follower's commit: a :class:`ReplayError` (from the
        :class:`ConcurrencyError`) saying that one follower per projection must run.
        """
        if retry_for is not None:
            retry_for = check_seconds(retry_for, "retry_for", zero=True, error=ValueError)
        task = asyncio.current_task()
        if task is not None:
            self._followers.add(task)
        self._follow_failed = None
        try:
            with self._handlers.applying():  # on/off refused meanwhile
                try:
                    await self._follow(Outage(retry_for), self._closings)
                except ConcurrencyError as exc:
                    raise ReplayError(taken_over(self.name, exc)) from exc
        except Exception as exc:  # for wait_until(): a follower task's error is seen late
            self._follow_failed = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if task is not None:
                self._followers.discard(task)

    async def _follow(self, outage: Outage, closings: int) -> None:
        """Follow until cancelled, or until the store or (``closings`` having changed
        since it began) the projection is closed."""
        started = live = False
        while True:
            if self._closings != closings:
                return  # the projection was closed: as when its store is
            try:
                if not started:  # the position it follows from, once known
                    async with self._turn():
                        if self._closings != closings:
                            return  # closed while it waited for its turn
                        self._check_writable()
                        if not self._loaded:
                            await self._load()
                    start = 0 if self._position is None else self._position + 1
                    logger.info("projection %r following from global position %d", self.name, start)
                    started = True
                async with self._turn():  # as run() does, checking for a close first
                    if self._closings != closings:
                        return  # closed while it waited for its turn
                    await self._run()
            except ClosedError:
                if self.store.closed:
                    return  # closed while it loaded or caught up: as when closed while live
                raise
            except StoreError as exc:
                if not is_outage(exc):
                    raise
                if await self._ride_out(outage, exc, closings):
                    continue
                return
            self._recovered(outage)
            if not live:
                logger.info(
                    "projection %r caught up %s; applying live events",
                    self.name,
                    standing(True, self._position),  # "before its first event" if none
                )
                live = True
            start = 0 if self._position is None else self._position + 1
            # retry_for=0: an outage of the live read ends it at once, to be ridden out
            # here, where the log lines name the projection
            if self.store.closed or self._closings != closings:
                return  # closed as the catch-up ended: subscribing would raise ClosedError
            events = self.store.subscribe(start, retry_for=0, **self._filters())
            self._live.add(events)
            try:
                failure = await self._follow_live(events, outage, closings)
            except StoreError as exc:
                if not is_outage(exc):
                    raise
                cause = exc.__cause__  # the subscription's words wrap the backend's
                failure = cause if isinstance(cause, StoreError) else exc
            finally:
                self._live.discard(events)
                await events.aclose()
            if failure is None or not await self._ride_out(outage, failure, closings):
                return  # the subscription ended: it, or the store, was closed

    async def _ride_out(self, outage: Outage, error: StoreError, closings: int) -> bool:
        """A step of :meth:`follow` failed with ``error`` in an outage: wait the backoff
        and say whether to go on (False: the store, or the projection, ``closings``
        having changed, was closed meanwhile: that ends the backoff at once), or raise
        once ``retry_for`` has passed since the outage began."""

        def stopped() -> bool:
            return self.store.closed or self._closings != closings

        await ride_out(
            outage,
            error,
            self.name,
            self._where(),
            lambda seconds: self._stops.pause(seconds, stopped),
        )
        return not stopped()

    def _where(self) -> str:
        """Where the projection stands, for an error or log line."""
        return standing(self._loaded, self._position)

    def _recovered(self, outage: Outage) -> None:
        """A step of :meth:`follow` worked: an outage under way is over."""
        recovered(outage, self.name, self._position)

    async def _follow_live(
        self, reader: AsyncIterable[Event], outage: Outage, closings: int
    ) -> StoreError | None:
        """Apply and commit what ``reader`` yields, taking the lock for each commit, until
        it ends (None) or a commit fails in an outage: then its error is returned, with
        state and position reloaded from disk (if that worked: else the next run loads).
        A batch whose turn comes after a close() (``closings`` changed) is left to the
        next run: nothing is applied, and the state store close() closed is not used.

        Each commit takes the live events already read and waiting (up to
        ``batch_size``), not one event: after a burst of appends the follower catches up
        in batches, as a run does, instead of paying a transaction per event; when the
        events come one at a time, each is committed as it comes.
        """
        state: Any = None
        basis: Any = _NOTHING  # the committed state ``state`` was copied from
        async with aclosing(waiting(reader, self.batch_size)) as batches:
            async for batch in batches:
                async with self._turn():
                    if self._closings != closings:
                        return None  # closed while it waited for its turn
                    if self._state is not basis:  # first batch, or a run committed meanwhile
                        state = copy.deepcopy(self._state)
                    last = self._position
                    try:
                        for event in batch:
                            position = global_position(event)
                            if last is not None and position <= last:
                                continue  # applied already (by the catch-up, or a run meanwhile)
                            chosen = self._handlers.chosen(event.type)
                            if chosen:
                                state = await self._apply(chosen, state, event)
                            last = position
                        if last != self._position:
                            await self._commit(state, last)
                    except BaseException as exc:
                        await self._reload_after(exc)
                        if is_outage(exc):
                            return exc
                        raise
                    basis = self._state
                self._recovered(outage)
        return None
