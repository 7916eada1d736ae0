"""The checkpoint of a store attachment: ``processor.attach(store, checkpoint="name")``.

An attachment with a checkpoint loads its start from the checkpoint store (by default the
event store's own database, as :class:`~pepperpy.event.EventReplay` keeps its
checkpoints), and saves the global position of the last event the processor finished
with: after its middleware and handlers returned, so an event is never passed over
unprocessed (at-least-once). Saves are batched: once ``checkpoint_every`` events were
handled since the last save, ``checkpoint_interval`` seconds after the first of them
(whether more events come or not), and when the attachment ends (stopped, failed or
cancelled). After a crash the events finished since the last save are delivered again:
at most ``checkpoint_every`` (those of the last ``checkpoint_interval`` seconds, if fewer;
all those finished while saves failed, during an outage), plus the one in hand when it
crashed.

Interval saves run beside the consumer, one save at a time. A save that fails with a
:class:`~pepperpy.event.StoreError` (a lost connection, a server restarting) is tried
again, as a subscription rides out an outage, for up to 60 s; a save whose outcome is
unknown is resolved by reading the checkpoint back before the next one. A checkpoint
that another writer moved (a second attachment with the same name) stops the attachment
with :class:`~pepperpy.event.ConcurrencyError`.

A checkpoint remembers what it was saved for (``streams`` and ``types``): resumed with
other filters, its position would pass over the earlier events that only the new filters
select, so that is refused with :class:`~pepperpy.event.ConfigurationError`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from ._cancel import cancelled_by_caller, resume_cancellation
from ._checkpoint_base import _conflict, save_checkpoint
from ._checkpoint_head import check_not_past_head
from ._checkpoints import (
    CheckpointStore,
    MemoryCheckpointStore,
    open_checkpoint_store,
    opened_by,
    shared_in_memory,
)
from ._errors import ConcurrencyError, ConfigurationError, StoreError
from ._loops import settled
from ._options import check_count
from ._processor import EventProcessor
from ._processor_cancel import stray_cancellation
from ._processor_links import _TaskLink
from ._replay_options import check_name, check_store, describe_checkpoints, store_url
from ._seconds import check_seconds
from ._unmatched import Unmatched
from .store._reader import RETRY_FOR, Outage, StoreSubscription

__all__ = ["CheckpointedLink", "StoreCheckpoint", "checkpoint_key", "checkpoints_for"]

logger = logging.getLogger("pepperpy.event.processor")


def checkpoint_key(name: str) -> str:
    """The row a processor's checkpoint ``name`` is saved under (apart from replays')."""
    check_name(name, "a checkpoint name")
    return f"processor:{name}"


def checkpoints_for(
    store: Any, given: CheckpointStore | str | None
) -> tuple[CheckpointStore, bool]:
    """Where an attachment's checkpoints live, and whether the attachment closes them.

    ``given`` as a :class:`CheckpointStore` is used as it is (its owner closes it); a URL,
    or by default the event store's own URL, is opened as :class:`EventReplay` opens it.
    Checkpoints in memory are kept per event store object, for as long as it lives.
    """
    if isinstance(given, CheckpointStore):
        return given, False
    if given is not None and not isinstance(given, str):
        raise TypeError(f"checkpoints must be a CheckpointStore, a URL or None, got {given!r}")
    opened = open_checkpoint_store(given if given is not None else store_url(store))
    if isinstance(opened, MemoryCheckpointStore):
        # one per event store, so that attaching again in the same process resumes
        return shared_in_memory(store, opened), False
    opened_by(opened, "EventProcessor.attach")
    return opened, True


async def forget(store: Any, where: CheckpointStore, name: str) -> bool:
    """Delete processor checkpoint ``name`` from ``where``, as ``reset_checkpoint`` does.

    Over a store with ``access=`` it needs ``read`` on the streams the attachment that
    saved it reads (on ``#`` when it reads them all, or when no checkpoint is saved),
    as attaching does; with the store's ``audit=`` the deletion is recorded.
    """
    key = checkpoint_key(name)
    streams: list[str] | None = None
    if store.access is not None:
        saved = await where.load(key)
        state = saved.state if saved is not None else None
        if isinstance(state, dict) and state.get("scope") == "processor":
            patterns = state.get("streams")
            if isinstance(patterns, list) and all(isinstance(p, str) for p in patterns):
                streams = patterns
    forgetting: bool = await store._forget_checkpoint(
        lambda: where.delete(key),
        key,
        streams,
        f"resetting processor checkpoint {name!r}",
    )
    return forgetting


def _patterns(value: str | Sequence[str] | None) -> list[str] | None:
    """Patterns as saved in a checkpoint: sorted and unique (None: every one)."""
    if value is None:
        return None
    return sorted({value} if isinstance(value, str) else set(value))


class StoreCheckpoint:
    """Loads, batches and saves the position of one checkpointed store attachment."""

    def __init__(
        self,
        name: str,
        store: Any,
        *,
        checkpoints: CheckpointStore | str | None,
        streams: str | Sequence[str] | None,
        types: str | Sequence[str] | None,
        every: int,
        interval: float,
    ) -> None:
        self.key = checkpoint_key(name)
        self.name = name
        self.every = check_count(every, "checkpoint_every")
        self.interval = check_seconds(interval, "checkpoint_interval")
        self.store, self.owned = checkpoints_for(store, checkpoints)
        self.events = store  # the event store, whose head a loaded checkpoint is checked against
        if self.store.read_only:
            raise ConfigurationError(
                f"checkpoint {name!r} cannot be saved: the checkpoint store "
                f"{describe_checkpoints(self.store)} is open read-only, so nothing was "
                "attached; attach without checkpoint=, or give checkpoints= a writable store"
            )
        #: what the checkpoint is for; saved with it and compared when it is loaded
        self.state = {
            "scope": "processor",
            "streams": _patterns(streams),
            "types": _patterns(types),
        }
        #: the position the checkpoint holds (what the next save's compare-and-set expects)
        self.saved: int | None = None
        #: the revision of the save that holds it (compared with it: see CheckpointStore.save)
        self.revision: str | None = None
        #: the global position of the last event the processor finished with
        self.done: int | None = None
        self.unsaved = 0  # events finished since the last save began
        #: positions of saves that failed without saying whether they were written: the
        #: checkpoint is read back before the next save, and may hold one of them
        self.in_doubt: set[int] = set()
        self.outage = Outage(RETRY_FOR)
        #: a failure of an interval save that ends the attachment, for its consumer to raise
        self.failure: BaseException | None = None
        self.on_failure: Callable[[], Awaitable[None]] = _nothing
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._flush: asyncio.Task[None] | None = None
        self.ended = False  # no more interval saves: the attachment is ending

    # -- loading ------------------------------------------------------------------------

    async def start(self, from_position: int, stopping: Callable[[], bool]) -> int:
        """The position to subscribe from: after the checkpoint, or ``from_position`` if
        that is later (or there is no checkpoint yet), as :class:`EventReplay` resumes.

        A load that fails in an outage is tried again for up to 60 s, unless
        ``stopping()`` says the attachment was stopped meanwhile.
        """
        outage = Outage(RETRY_FOR)
        while True:
            try:
                saved = await self.store.load(self.key)
                break
            except StoreError as exc:
                pause = outage.failed(time.monotonic())
                if pause is None or stopping():
                    exc.add_note(f"loading checkpoint {self.name!r} failed; nothing was processed")
                    raise
                if outage.failures == 1:
                    logger.warning(
                        "loading checkpoint %r failed: %s; trying again %s",
                        self.name,
                        exc,
                        outage.plan,
                    )
                await asyncio.sleep(pause)
        if saved is None:
            return from_position
        if saved.state != self.state:
            raise ConfigurationError(
                f"checkpoint {self.name!r} (at global position {saved.position}) was saved "
                f"by an attachment reading {_describe(saved.state)}, not "
                f"{_describe(self.state)}: resumed, it would pass over the earlier events "
                "that only these filters select; use another name (with "
                f"from_position={saved.position + 1} to start where it stopped), or reset it "
                "with processor.reset_checkpoint()"
            )
        await check_not_past_head(
            self.events,
            f"processor checkpoint {self.name!r}",
            saved.position,
            f"Delete it with processor.reset_checkpoint(store, {self.name!r}) to process "
            "from from_position again; if checkpoints= holds another event store's "
            "checkpoints, give it this store's.",
        )
        self.saved = self.done = saved.position
        self.revision = saved.revision
        return max(from_position, saved.position + 1)

    # -- saving -------------------------------------------------------------------------

    def handled(self, position: int) -> bool:
        """Note that the event at ``position`` went through the processor; True when
        ``checkpoint_every`` events wait to be saved, so the consumer saves now."""
        self.done = position
        self.unsaved += 1
        if self.unsaved >= self.every:
            return True
        if self._timer is None and self._flush is None:
            self._arm(self.interval)
        return False

    def _arm(self, delay: float) -> None:
        if self.ended:
            return
        self._timer = asyncio.get_running_loop().call_later(delay, self._time_is_up)

    def _time_is_up(self) -> None:
        self._timer = None
        if self.failure is None and self._flush is None:
            self._flush = asyncio.get_running_loop().create_task(self._save_beside())

    async def _save_beside(self) -> None:
        """An interval save: beside the consumer, which it stops if the save fails for good."""
        try:
            await self.save()
        except Exception as exc:
            self.failure = exc
            await self.on_failure()
        finally:
            self._flush = None
            if self.failure is None and self._timer is None and self.done != self.saved:
                self._arm(self.interval)  # events finished while it saved

    async def save(self, *, final: bool = False) -> None:
        """Save the position of the last event finished, one save at a time.

        A :class:`StoreError` is ridden out (the position is saved at the next chance),
        unless the attachment is ending (``final``) or saves have failed for 60 s; then
        it is raised, as is a checkpoint another writer moved.
        """
        async with self._lock:
            position = self.done
            if position is None or position == self.saved:
                return
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.unsaved = 0
            began = time.monotonic()
            try:
                # settled: a save cancelled half-way may still land, and the next
                # compare-and-set must know whether it did
                await settled(self._write(position))
            except ConcurrencyError as exc:
                raise self._taken(exc) from None
            except StoreError as exc:
                if exc.written is not False:
                    self.in_doubt.add(position)
                self._failed(exc, began, final)
            else:
                ended = self.outage.end()
                if ended is not None:
                    logger.info(
                        "checkpoint %r saved again, at global position %d, after %.1f s and %s",
                        self.name,
                        position,
                        *ended,
                    )

    async def _write(self, position: int) -> None:
        if self.in_doubt:
            current = await self.store.load(self.key)
            found = None if current is None else current.position
            found_revision = None if current is None else current.revision
            ours = found == self.saved and (
                self.revision is None or found is None or found_revision == self.revision
            )
            if not ours and found not in self.in_doubt:
                raise _conflict(self.key, self.saved, found)
            self.saved, self.revision = found, found_revision
            self.in_doubt.clear()
        self.revision = await save_checkpoint(
            self.store,
            self.key,
            position,
            self.state,
            previous=self.saved,
            revision=self.revision,
        )
        self.saved = position

    def _failed(self, exc: StoreError, began: float, final: bool) -> None:
        """A save failed with ``exc``: raise it if the attachment ends or the outage is too
        long, else log it (once per outage) and try again soon."""
        pause = self.outage.failed(began)
        window = (
            "the events processed so far are processed again"
            if self.saved is None
            else f"the events after global position {self.saved} are processed again"
        )
        if final or pause is None:
            elapsed, tries = self.outage.end() or (0.0, "")
            if not final:
                exc.add_note(
                    f"saves of checkpoint {self.name!r} failed for {elapsed:.1f} s ({tries})"
                )
            exc.add_note(
                f"checkpoint {self.name!r} holds global position {self.saved} (or a later "
                f"one of this attachment's, if a failed save was written): {window} when "
                "it is attached again"
            )
            raise exc
        if self.outage.failures == 1:
            logger.warning(
                "saving checkpoint %r failed: %s; the attachment goes on and saves it "
                "again %s (after a crash, %s)",
                self.name,
                exc,
                self.outage.plan,
                window,
            )
        if self._timer is None:
            self._arm(pause)

    def _taken(self, exc: ConcurrencyError) -> ConcurrencyError:
        exc.add_note(
            f"checkpoint {self.name!r} was moved by another writer (another attachment "
            "with the same checkpoint name?): this attachment stops; the checkpoint "
            "keeps what the other one saved"
        )
        return exc

    # -- ending -------------------------------------------------------------------------

    async def finish(self, failure: BaseException | None) -> None:
        """Save what the attachment finished and close what it opened, as it ends.

        When ``failure`` ends it (a processing error, a cancellation), a failed save is
        logged and noted on ``failure``, never raised in its place.
        """
        self.ended = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            if self._flush is not None:
                await settled(asyncio.wait((self._flush,)))
            if self.failure is None:
                await settled(self.save(final=True))
        except Exception as error:
            if failure is None:
                raise
            logger.error(
                "saving checkpoint %r at global position %s failed while the attachment "
                "ended with %s",
                self.name,
                self.done,
                type(failure).__name__,
                exc_info=error,
            )
            failure.add_note(f"saving checkpoint {self.name!r} failed too: {error!r}")
        finally:
            if self.owned:
                await settled(self.store.close())


def _describe(state: Any) -> str:
    if not isinstance(state, dict) or state.get("scope") != "processor":
        return f"something else ({state!r})"
    streams, types = state.get("streams"), state.get("types")
    return f"streams {'(all)' if streams is None else streams} and types " + (
        "(all)" if types is None else f"{types}"
    )


async def _nothing() -> None:
    return None


class CheckpointedLink(_TaskLink):
    """A store subscription feeding a processor, resumed from and saved to a checkpoint.

    ``events`` is subscribed at ``from_position`` when attaching, so the store checks
    the arguments there; the task loads the checkpoint, then subscribes again after it.
    """

    events: StoreSubscription

    @classmethod
    def attach(
        cls,
        processor: EventProcessor,
        unmatched: Unmatched,
        store: Any,
        events: StoreSubscription,
        name: str,
        *,
        from_position: int,
        streams: str | Sequence[str] | None,
        types: str | Sequence[str] | None,
        checkpoints: CheckpointStore | str | None,
        every: int,
        interval: float,
    ) -> CheckpointedLink:
        """The link of ``processor.attach(store, checkpoint=name)`` (an :class:`EventStore`
        only), following ``events`` (subscribed at ``from_position``) once it has loaded
        its checkpoint."""
        check_store(store)
        saves = StoreCheckpoint(
            name,
            store,
            checkpoints=checkpoints,
            streams=streams,
            types=types,
            every=every,
            interval=interval,
        )

        def resubscribe(start: int) -> StoreSubscription | None:
            if store.closed:  # closed while the checkpoint loaded: subscribe() would raise
                return None
            return cast("StoreSubscription", store.subscribe(start, streams=streams, types=types))

        return cls(processor, unmatched, events, saves, from_position, resubscribe)

    def __init__(
        self,
        processor: EventProcessor,
        unmatched: Unmatched,
        events: StoreSubscription,
        saves: StoreCheckpoint,
        from_position: int,
        resubscribe: Callable[[int], StoreSubscription | None],
    ) -> None:
        self.saves = saves
        self.from_position = from_position
        self.resubscribe = resubscribe
        self.stopping = False
        saves.on_failure = self._end_reading  # a failed interval save ends the attachment
        super().__init__(processor, unmatched, events)

    async def _end_reading(self) -> None:
        await self.events.aclose()  # the consumer finishes the event in hand, then raises

    async def _consume(self) -> None:
        saves = self.saves
        try:
            try:
                start = await saves.start(self.from_position, lambda: self.stopping)
                # stopped meanwhile: stop() closed ``events``, and the loop below ends
                if start != self.from_position and not self.stopping:
                    unread = self.events
                    # the store closed meanwhile: nothing to subscribe to, and the
                    # subscription made at from_position (before the checkpoint) is
                    # closed unread, so the loop below ends as when closed while live
                    self.events = self.resubscribe(start) or unread
                    await unread.aclose()
                async for event in self.events:
                    await self.deliver(event)
                    position = event.global_position
                    if position is not None:
                        self.last_global_position = position
                        if self.events.closed and not self.stopping:
                            # the store closed while the event was processed: its
                            # handlers may have failed for that (a DeadLetterMiddleware
                            # then recorded it), so it is not counted done and the next
                            # attachment processes it again, as after a crash
                            break
                        if saves.handled(position):
                            await saves.save()
                    if saves.failure is not None or self.stop_after_event:
                        break
                    resume_cancellation()  # as in _TaskLink._consume
                if saves.failure is not None:
                    raise saves.failure
            except BaseException as exc:
                failure = exc
                if isinstance(exc, asyncio.CancelledError) and self.stopping_now.cut_by_close():
                    # the store closed while a retry waited: the attachment ends quietly,
                    # the checkpoint before the unfinished event (or a failed save, which
                    # closed the subscription, is raised as it would have been)
                    await saves.finish(saves.failure)
                    if saves.failure is not None:
                        raise saves.failure from None
                    return
                if isinstance(exc, asyncio.CancelledError) and not cancelled_by_caller():
                    # not stop(): something the source or a middleware awaited was
                    # cancelled, a failure (as in _TaskLink._consume)
                    failure = stray_cancellation("processing a store event", exc)
                await saves.finish(failure)
                if failure is exc:
                    raise
                raise failure from exc
            await saves.finish(None)
        except Exception as exc:
            logger.exception("processor stopped: checkpoint %r, store attachment", saves.name)
            self.reported = exc  # logged: not reported again at garbage collection
            raise
        finally:
            try:
                await self.events.aclose()
            except BaseException:
                self.reported = None  # the task ends with this one, not logged
                raise

    async def stop(self) -> None:
        self.stopping = True
        await super().stop()
