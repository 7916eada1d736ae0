"""What feeds an attached processor: a manager handler, a bus subscription, a store task.

Each attachment is a link whose ``deliver`` runs one event through the processor. A
manager or a bus calls that ``deliver`` as a handler of its own, so when it fails they
retry and dead-letter *it*; the link then says which of the processor's handlers failed
(:class:`~pepperpy.event._blame.Delegating`), so that the dead letter and the log line
name the user's handler, or the processor and the pattern it was attached with when no
handler raised (a middleware refused the event, or the attachment did, per
``unmatched="error"``).

To know which handler raised, ``deliver`` gives the processor a place to record it for
the call (:data:`ATTACHED`; the processor's ``_blame`` writes there), and keeps what it
learnt per event until the source asks (a retry may run first) or the event succeeds.

A manager or a bus retries a failed ``deliver`` itself, by calling it again: the link
keeps, per event id, which of the processor's handlers succeeded, so that the retry runs
only the ones that failed, until the event succeeds or the source's policy gives up.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterable, Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from ._blame import Delegating, handler_name, named
from ._bus_delivery import Unhandled, _log_failed_try
from ._bus_serve import where
from ._cancel import cancelled_by_caller, resume_cancellation
from ._errors import ClosedError
from ._event import Event
from ._frames import release_locals
from ._manager import DeadLetter
from ._processor_cancel import stray_cancellation
from ._retry import RetryPolicy
from ._unmatched import Unmatched

if TYPE_CHECKING:
    from ._processor import EventProcessor

__all__ = [
    "ATTACHED",
    "STOPPING",
    "Attachment",
    "RetryWait",
    "Failures",
    "_BusLink",
    "_Link",
    "_ManagerLink",
    "_TaskLink",
    "need_running_loop",
    "stoppable_pause",
]

logger = logging.getLogger("pepperpy.event.processor")

#: exception id -> (the exception, the handlers it stopped); the exception is kept
#: alongside so that a reused id is never mistaken for it
Failures = dict[int, tuple[BaseException, tuple[Callable[..., Any], ...]]]

#: The processor an attachment's ``deliver`` is running, with where its ``_blame`` records
#: which handlers each exception stopped during that call. Only that processor writes
#: there: another processor a handler runs has its own handlers.
ATTACHED: contextvars.ContextVar[tuple[EventProcessor, Failures] | None] = contextvars.ContextVar(
    "pepperpy_event_attached_processor", default=None
)

#: The processor whose ``process`` call is running here, with the (event id, handler
#: key) of its handlers that already succeeded in that call (or, for an attachment whose
#: source retries, in the earlier tries of the event), so that a retry further out
#: re-runs only the handlers that failed, and the handler that raised each exception
#: (by ``id``; the exception is kept alongside), so that a dead letter names the handler
#: that failed. The owner is recorded because the variable is inherited by everything
#: the handlers call: another processor run from inside a handler must neither read nor
#: write this record (its handler keys are its own). An attachment whose source retries
#: sets it itself, with the record it keeps for the event.
Done = set["tuple[str, int] | Lone"]
_completed: contextvars.ContextVar[tuple[EventProcessor, Done, Failures] | None] = (
    contextvars.ContextVar("pepperpy_event_completed_handlers", default=None)
)


class Lone:
    """A lone handler's success, recorded by the event itself rather than its id.

    Reading the id of an event made in this process formats it, which costs as much as
    running a handler; a retry reads it (:func:`settled`), which is rare. Hashed by
    identity (an event's own hash reads its id).
    """

    __slots__ = ("event", "key")

    def __init__(self, event: Event, key: int) -> None:
        self.event = event
        self.key = key


def settled(done: Done) -> Done:
    """``done`` with each :class:`Lone` success turned into its (event id, handler key)."""
    lone = [item for item in done if item.__class__ is Lone]
    for item in lone:
        done.discard(item)
        done.add((item.event.id, item.key))
    return done


#: failed events a link remembers the handlers of, until asked (beyond: the oldest are
#: forgotten and a dead letter for them names the processor)
_REMEMBERED = 256


def stopped_by(exc: BaseException, failures: Failures) -> list[Callable[..., Any]]:
    """The handlers ``exc`` stopped, per ``failures``; empty when no handler raised it.

    A handler's own exception names it; an ``ExceptionGroup`` of several failed handlers
    names each (empty if one of its members came from elsewhere); a ``TimeoutError``
    raised from the cancellation it caused names the handlers that cancellation cut off.
    """
    hit = failures.get(id(exc))
    if hit is not None and hit[0] is exc:
        return list(hit[1])
    if isinstance(exc, BaseExceptionGroup):
        found: list[Callable[..., Any]] = []
        for member in exc.exceptions:
            who = stopped_by(member, failures)
            if not who:
                return []
            found.extend(handler for handler in who if all(handler is not h for h in found))
        return found
    if isinstance(exc, TimeoutError) and exc.__cause__ is not None:
        return stopped_by(exc.__cause__, failures)
    return []


class _Link(Delegating):
    """What every attachment does with an event it takes: count it, and apply its
    ``unmatched`` policy when no handler of the processor matches it."""

    #: the manager or bus whose ``retry_policy`` retries a failed ``deliver``: the link
    #: then keeps which handlers of the event succeeded until the retries are over
    source: Any = None

    def __init__(self, processor: EventProcessor, unmatched: Unmatched) -> None:
        self.processor = processor
        self.unmatched = unmatched
        self.processed = 0
        self.open = True
        # event id -> (its last failure, the handlers that raised it), for failed()
        self._failed: dict[str, tuple[BaseException, list[Callable[..., Any]]]] = {}
        # event id -> (the handlers that succeeded, and the failed tries), while the
        # source may still retry the event
        self._retrying: dict[str, tuple[Done, int]] = {}

    async def deliver(self, event: Event) -> None:
        """Run ``event`` through the processor (the handler a manager or bus calls)."""
        processor = self.processor
        if processor._index.match(event.type):
            failures: Failures = {}
            token = ATTACHED.set((processor, failures))
            try:
                source = self.source
                if source is None or source.retry_policy.max_attempts < 2:
                    await processor.process(event)  # no retry will come
                else:
                    # the source retries a failed delivery by calling this again: the
                    # handlers that succeeded in an earlier try are skipped
                    retrying = self._retrying
                    kept = retrying.pop(event.id, None) if retrying else None
                    if kept is None:
                        kept = (set(), 0)
                    record = _completed.set((processor, kept[0], {}))
                    try:
                        await processor._chain(event)
                    except BaseException:
                        if len(retrying) >= _REMEMBERED:  # the oldest re-runs every handler
                            del retrying[next(iter(retrying))]
                        retrying[event.id] = (kept[0], kept[1] + 1)
                        raise
                    finally:
                        _completed.reset(record)
            except BaseException as exc:
                self._remember(event, exc, stopped_by(exc, failures))
                raise
            finally:
                ATTACHED.reset(token)
            self.processed += 1
            if self._failed:  # it failed before and was retried: nothing to name now
                self._failed.pop(event.id, None)
        else:
            self.unmatched.taken(event)  # raises when the attachment refuses it
            await processor.process(event)  # the middleware still see it

    def _remember(
        self, event: Event, exc: BaseException, handlers: list[Callable[..., Any]]
    ) -> None:
        failed = self._failed
        failed.pop(event.id, None)  # the latest failure of an event is the one asked about
        if len(failed) >= _REMEMBERED:
            del failed[next(iter(failed))]
        failed[event.id] = (exc, handlers)

    def _gave_up(self, event: Event, exc: BaseException) -> None:
        """Forget the handlers that succeeded for ``event`` once its source will not
        retry it after ``exc`` (asked from :meth:`failed`, for a retry's log line or for
        the dead letter): a later delivery of the event runs every handler again."""
        kept = self._retrying.get(event.id) if self._retrying else None
        if kept is None:
            return
        policy = getattr(self.source, "retry_policy", None)
        if not isinstance(policy, RetryPolicy) or not policy.should_retry(exc, kept[1]):
            del self._retrying[event.id]

    def failed(self, event: Event, exc: BaseException) -> tuple[Callable[..., Any], str]:
        """The processor's handler that raised ``exc`` for ``event``, else the processor.

        With several failed handlers (an ``ExceptionGroup``), or none (a middleware or
        the attachment raised), the dead letter's handler is the processor's
        ``process``; the name says which handlers, or that none raised, and always the
        subscription the processor was attached with.
        """
        self._gave_up(event, exc)
        hit = self._failed.pop(event.id, None)  # asked about once, for its last failure
        handlers = hit[1] if hit is not None and hit[0] is exc else []
        where = f"attached as {self.unmatched.source}"
        if len(handlers) == 1:
            return handlers[0], f"{handler_name(handlers[0])} (processor {where})"
        if handlers:
            names = ", ".join(handler_name(handler) for handler in handlers)
            why = f"handlers {names} failed"
        else:
            why = "raised outside its handlers, by a middleware or the attachment"
        return self.processor.process, f"EventProcessor.process ({where}; {why})"


class _ManagerLink(_Link):
    """A manager handler feeding a processor; stopping removes it."""

    def __init__(
        self, processor: EventProcessor, unmatched: Unmatched, manager: Any, pattern: str
    ) -> None:
        super().__init__(processor, unmatched)
        self.manager = self.source = manager
        self.pattern = pattern

    async def stop(self) -> None:
        if self.open:
            self.open = False
            await self.manager.off(self.pattern, self.deliver)

    async def wait(self) -> None:
        return None


class _BusLink(_Link):
    """A bus subscription feeding a processor; stopping unsubscribes it.

    The subscribed handler is this link's own ``deliver`` (not ``process`` itself), so
    two attachments of one processor to one pattern are two subscriptions, and stopping
    one leaves the other in place.
    """

    #: the bus's wait between two tries of a failed delivery ends at stop() too
    stop_cuts_waits = True

    def __init__(
        self,
        processor: EventProcessor,
        unmatched: Unmatched,
        bus: Any,
        pattern: str,
        group: str | None,
    ) -> None:
        super().__init__(processor, unmatched)
        self.bus = self.source = bus
        self.pattern = pattern
        self.group = group
        #: the deliveries in hand, each with what stop() tells its middleware's pauses
        self._in_hand: set[Stopping] = set()

    def subscribe(self) -> None:
        """Subscribe :meth:`deliver` to the bus; from then on the bus's ``close()`` cuts
        its middleware's pauses too (not registered when the subscription is refused)."""
        self.bus.subscribe(self.pattern, group=self.group)(self.deliver)
        self.bus._on_close.append(self._bus_closing)

    def _bus_closing(self) -> None:
        """``close()`` of the bus began: a middleware's pause in a delivery in hand ends
        now, or as it starts (see :meth:`deliver`); a handler call under way finishes."""
        for stopping in list(self._in_hand):
            stopping.closing = True
            if stopping.pausing:
                stopping.cut_pause()

    async def deliver(self, event: Event) -> None:
        """Run ``event`` through the processor, in a delivery whose middleware's pauses
        (a ``RetryMiddleware`` between tries, a ``RateLimitMiddleware`` for a token)
        ``stop()`` cuts short: the event is then not handled, and the bus hands it back
        to its transport as not delivered (:class:`Unhandled`), so a group's broker
        gives it again, to another member or to the next one to join. The bus's
        ``close()`` cuts them too, as it cuts its own ``retry_policy`` waits
        (:meth:`_closed_in_pause`)."""
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - a bus delivers in a task
            await super().deliver(event)
            return
        stopping = Stopping()
        stopping.task = task
        stopping.requested = not self.open  # stop() was called already
        stopping.closing = self.bus._closed is True  # so was close()
        since = task.cancelling()
        self._in_hand.add(stopping)
        token = STOPPING.set(stopping)
        try:
            await super().deliver(event)
            return
        except asyncio.CancelledError:
            if not stopping.stopped:
                raise
            stopping.stopped = False
            if task.uncancel() > since:
                raise  # cancelled for another reason too (the bus closing): that goes on
            self._retrying.pop(event.id, None)  # nothing to resume: not ours any more
            self._failed.pop(event.id, None)
            if self.bus._closed is not True:
                raise Unhandled(
                    f"{event.type} ({event.id}) not handled: the processor's attachment "
                    f"({self.unmatched.source}) was stopped while the event waited to be "
                    "tried again"
                ) from None
        finally:
            STOPPING.reset(token)
            self._in_hand.discard(stopping)
        # close() cut the pause (a stop() too, maybe)
        await self._closed_in_pause(event, stopping.paused_for)

    async def _closed_in_pause(self, event: Event, paused: RetryWait | None) -> None:
        """The bus closed while a middleware of the processor paused ``event`` (a
        ``RetryMiddleware`` after the failure ``paused`` says, or a
        ``RateLimitMiddleware`` waiting for a token when it is None): as for a wait of
        the bus's own ``retry_policy``, a group's event on a broker is left
        unacknowledged (:class:`Unhandled`; a failure is logged as a ``retry_cut``
        WARNING), and where nothing can deliver it again (``memory://``, an ungrouped
        subscription, whose queue goes with the close) it is dead-lettered: with its last
        failure and a note saying the close ended its retries, or, its handlers never
        having run, with a :class:`ClosedError` saying so."""
        bus = self.bus
        group = self.group
        redelivered = group is not None and bus.transport.distributed is True
        if paused is None:
            if redelivered:
                raise Unhandled(
                    f"{event.type} ({event.id}) not handled: the EventBus closed while "
                    "the event waited for a RateLimitMiddleware token"
                )
            error: BaseException = ClosedError(
                f"{event.type} ({event.id}) not handled: the EventBus closed while the "
                f"event waited for a RateLimitMiddleware token (processor attached as "
                f"{self.unmatched.source})"
            )
            await bus._dead_letter(DeadLetter(event, self.deliver, error, 0), group)
            return
        error, attempt, policy = paused.error, paused.attempt, paused.policy
        self._remember(event, error, paused.handlers)  # the dead letter names the handler
        if redelivered:
            _log_failed_try(
                logging.WARNING,
                (
                    "retry_cut",
                    named(self.deliver, event, error),
                    event,
                    error,
                    attempt,
                    policy,
                    group,
                    where(bus.transport),
                ),
                "the EventBus closed during the RetryMiddleware's wait before the next "
                "try: left unacknowledged, the broker delivers it again (group %s)",
                group,
            )
            raise Unhandled(
                f"{event.type} ({event.id}) not handled: the EventBus closed while the "
                "event waited to be tried again"
            )
        cut = (
            "not tried again: the EventBus closed during the wait before attempt "
            f"{attempt + 1} of {policy.max_attempts}"
        )
        if cut not in getattr(error, "__notes__", ()):
            error.add_note(cut)  # what an on_error callback can read, and the traceback says
        await bus._dead_letter(DeadLetter(event, self.deliver, error, attempt), group, cut)
        release_locals(error)

    async def stop(self) -> None:
        """Unsubscribe: a group member leaves its group, whose other members get the rest.

        A delivery in hand finishes, except for a middleware's pause (a retry's wait):
        that is cancelled, and the event is left to the transport (see :meth:`deliver`).
        """
        if self.open:
            self.open = False
            for stopping in list(self._in_hand):
                if stopping.request():  # pausing now: cut the wait
                    stopping.cut_pause()
            try:
                # marks the subscription removed before the cancellations above are
                # thrown: the transport then gives those events to another member
                await self.bus.unsubscribe(self.pattern, self.deliver, group=self.group)
            finally:
                with contextlib.suppress(ValueError):
                    self.bus._on_close.remove(self._bus_closing)

    async def wait(self) -> None:
        return None


def need_running_loop(call: str, why: str) -> None:
    """Refuse ``call`` (which starts a task) with no event loop running in this thread.

    asyncio's own ``RuntimeError: no running event loop`` named neither the call nor
    the way out, where ``attach`` to a manager or a bus needs no loop at all.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            f"{call} needs an event loop running in this thread ({why}): call it from "
            "async code, such as the coroutine asyncio.run() runs"
        ) from None


class Stopping:
    """What ``stop()`` of a store attachment (or ``run_in_background``), or of a bus
    attachment for each delivery in hand, tells the middleware of the events its task
    processes: a ``RetryMiddleware`` waiting between
    tries, or a ``RateLimitMiddleware`` waiting for a token, is cancelled rather than
    waited for (:func:`stoppable_pause`).

    A graceful stop lets the event in hand finish, and a retry schedule can last
    minutes: ``stop()`` (a deployment's shutdown) waited it out, where the event,
    unfinished, is processed again from the checkpoint (or ``last_global_position``)
    by the next attachment anyway.
    """

    __slots__ = (
        "closed",
        "closing",
        "cut",
        "paused_for",
        "pausing",
        "requested",
        "stopped",
        "task",
    )

    def __init__(self, closed: Callable[[], bool] | None = None) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.stopped = False  # a pause was cancelled because stop() (or close()) was called
        self.requested = False  # stop() was called
        self.closing = False  # a bus attachment's bus is closing: its pauses end too
        #: the failure the last pause waited to retry (None: a wait for a token)
        self.paused_for: RetryWait | None = None
        self.pausing = False  # the task waits in a middleware (:func:`stoppable_pause`)
        #: whether the source was closed (the store closed: the attachment ends quietly)
        self.closed = closed
        self.cut = False  # a pause was cancelled because the source closed

    def request(self) -> bool:
        """Note that ``stop()`` was called; True when the task should be cancelled now
        (it waits between tries)."""
        self.requested = True
        return self.pausing

    def cut_pause(self) -> None:
        """Cancel the task's pause, noting that ``stop()`` (or the bus's ``close()``)
        did (see ``_BusLink``); once only, when both come."""
        if self.task is not None and not self.stopped:
            self.stopped = True
            self.task.cancel()

    def source_closed(self) -> bool:
        return self.closed is not None and self.closed()

    def cut_by_close(self) -> bool:
        """After a ``CancelledError`` in the task: True when it was only the pause cut
        short because the source closed (the cancellation is then taken back, and the
        attachment ends quietly, as when its source ends between events)."""
        task = self.task
        if not self.cut or task is None:
            return False
        self.cut = False
        return task.uncancel() == 0


#: the :class:`Stopping` of the attachment whose task runs here
STOPPING: contextvars.ContextVar[Stopping | None] = contextvars.ContextVar(
    "pepperpy_event_attachment_stopping", default=None
)


class RetryWait:
    """What a ``RetryMiddleware`` pauses for: the failure of try ``attempt`` of its
    ``policy``, and the processor's handlers that raised it (empty: none did)."""

    __slots__ = ("attempt", "error", "handlers", "policy")

    def __init__(
        self,
        error: BaseException,
        attempt: int,
        policy: RetryPolicy,
        handlers: list[Callable[..., Any]],
    ) -> None:
        self.error = error
        self.attempt = attempt
        self.policy = policy
        self.handlers = handlers


@contextlib.contextmanager
def stoppable_pause(
    retrying: tuple[BaseException, int, RetryPolicy] | None = None,
) -> Iterator[None]:
    """Around a middleware's wait before the event's work goes on (a ``RetryMiddleware``
    between two tries, a ``RateLimitMiddleware`` for its token): a stop of the
    attachment whose task waits cancels the wait (then, or at once if the stop came
    first), so the event ends unfinished, as any cancellation by ``stop()`` leaves it
    (neither retried nor dead-lettered, its checkpoint before it). So does the store
    closing, looked at every :data:`CLOSED_CHECK` seconds during the wait: closing the
    store ends its attachments quietly, and a retry still to come would fail, or be
    dead-lettered, on the way out. A wait in another task (a handler's own, which
    inherits the variable) is not the attachment's to cut short.

    A bus attachment's pauses end at the bus's ``close()`` too; ``retrying`` (the
    failure, the try it ended and the ``RetryPolicy``) is what a ``RetryMiddleware``
    waits to retry, for the dead letter such a cut may make (``_BusLink``)."""
    stopping = STOPPING.get()
    task = asyncio.current_task()
    if stopping is None or task is None or stopping.task is not task:
        yield
        return
    stopping.paused_for = None
    if retrying is not None:
        attached = ATTACHED.get()
        error = retrying[0]
        handlers = [] if attached is None else stopped_by(error, attached[1])
        stopping.paused_for = RetryWait(error, retrying[1], retrying[2], handlers)
    if stopping.requested or stopping.closing:
        stopping.cut_pause()  # the wait below ends at once, cancelled as stop() does
    watch: asyncio.TimerHandle | None = None
    stopping.pausing = True
    if stopping.closed is not None:  # the store closing ends the attachment: no more tries
        loop = task.get_loop()

        def look() -> None:
            nonlocal watch
            watch = None
            if stopping.pausing and not stopping.cut and stopping.source_closed():
                stopping.cut = True
                task.cancel()
            elif stopping.pausing:
                watch = loop.call_later(CLOSED_CHECK, look)

        look()
    try:
        yield
    finally:
        stopping.pausing = False
        if watch is not None:
            watch.cancel()


#: seconds between two looks, during a middleware's pause, at whether the store closed
CLOSED_CHECK = 0.25


class _TaskLink(_Link):
    def __init__(
        self, processor: EventProcessor, unmatched: Unmatched, events: AsyncIterable[Event]
    ) -> None:
        super().__init__(processor, unmatched)
        self.events = events
        self.last_global_position: int | None = None
        # the store closing ends the subscription: a pause (a retry's wait) in the
        # event in hand is cut short then, as stop() cuts it
        self.stopping_now = Stopping(
            (lambda: getattr(self.events, "closed", False) is True)
            if isinstance(getattr(type(events), "closed", None), property)
            else None
        )
        self.stop_after_event = False  # stop() came from a handler: end after the event
        # the exception the task ends with once ``_consume`` has logged it, else None
        self.reported: BaseException | None = None
        token = STOPPING.set(self.stopping_now)  # the task's context is a copy of this one
        try:
            self.task = asyncio.get_running_loop().create_task(self._consume())
        finally:
            STOPPING.reset(token)
        self.task.add_done_callback(self._reported_once)
        self.stopping_now.task = self.task

    def _reported_once(self, task: asyncio.Task[None]) -> None:
        """Mark the failure the task logged as retrieved: with nobody awaiting ``wait()``,
        asyncio reported it again at garbage collection ("Task exception was never
        retrieved"); ``wait()`` and ``stop()`` still raise it. A failure not logged (the
        source's ``aclose()`` raising) is left for asyncio to report."""
        if self.reported is not None and not task.cancelled():
            task.exception()

    async def _consume(self) -> None:
        handling: Event | None = None  # the event in hand; None while reading the next
        try:
            try:
                async for event in self.events:
                    handling = event
                    await self.deliver(event)
                    handling = None
                    stopping = self.stopping_now
                    if stopping.source_closed() and not stopping.requested:
                        # the store closed while the event was processed (its handlers
                        # may have failed for that): not counted, so resuming from
                        # last_global_position + 1 processes it again, as after a crash
                        break
                    if event.global_position is not None:
                        self.last_global_position = event.global_position
                    if self.stop_after_event:
                        break
                    # a handler runs inline here: one that caught this task's
                    # cancellation (stop() cancels it when the source cannot be closed)
                    # must not keep the loop reading, or stop() would wait for ever
                    resume_cancellation()
            except asyncio.CancelledError as exc:
                if self.stopping_now.cut_by_close():  # the store closed during a pause
                    return
                if cancelled_by_caller():  # stop(), or the event loop shutting down
                    raise
                # something the source or a middleware awaited was cancelled: a failure,
                # or the attachment would end as cancelled without a word
                raise stray_cancellation(_doing(handling), exc) from exc
        except Exception as exc:
            # which source (a run_in_background has no store), and whether an event's
            # processing or the source itself failed: both said "processing a store event"
            logger.exception(
                "processor stopped (%s): %s failed", self.unmatched.source, _doing(handling)
            )
            self.reported = exc
            raise
        finally:
            closer = getattr(self.events, "aclose", None)
            if closer is not None:
                try:
                    await closer()
                except BaseException:
                    self.reported = None  # the task ends with this one, not logged
                    raise

    async def stop(self) -> None:
        me = asyncio.current_task()
        if me is self.task:
            # from one of its own handlers (a "shut down" event, a poison message): it
            # cannot wait for itself, so the loop ends once the event in hand is done;
            # awaiting the task here raised RuntimeError, which failed that event
            self.stopping_now.request()
            self.stop_after_event = True
            return
        before = 0 if me is None else me.cancelling()  # cleanup code may start at 1
        closer = getattr(self.events, "aclose", None)
        pausing = self.stopping_now.request()  # a retry's wait is not waited out
        # an async generator awaiting inside, for its next event (no event in hand),
        # cannot be closed from here: aclose() raised RuntimeError ("asynchronous
        # generator is already running") out of stop() and left the task reading
        reading = getattr(self.events, "ag_running", False) is True
        if closer is not None and not self.task.done() and not pausing and not reading:
            await closer()  # graceful: the event in progress finishes first
        else:
            self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            # the consumer ended cancelled, as stopping it does; but a cancellation of
            # stop()'s caller (which also cancels the awaited consumer) is passed on
            if not self.task.cancelled() or (me is not None and me.cancelling() > before):
                raise

    async def wait(self) -> None:
        me = asyncio.current_task()
        before = 0 if me is None else me.cancelling()
        try:
            # not shielded: as for a Task awaited, cancelling the waiter (a TaskGroup
            # shutting down) cancels the attachment, which saves its checkpoint
            await self.task
        except asyncio.CancelledError:
            # stop() cancels the consumer when it cannot close its source gracefully (a
            # retry's wait, a source without aclose(), a generator awaiting its next
            # event): that ends the attachment as stop() says, and a task that awaited
            # wait() (a supervisor) got a CancelledError nobody had sent it, ending it
            # as cancelled; its own cancellation still propagates
            if not (
                self.task.cancelled()
                and self.stopping_now.requested
                and (me is None or me.cancelling() <= before)
            ):
                raise


def _doing(event: Event | None) -> str:
    """What an attachment's task was doing: processing ``event``, or reading the next."""
    if event is None:
        return "reading the next event from the source"
    return f"processing {event.type} ({event.id})"


class Attachment:
    """A processor fed from a source; ``await stop()`` detaches it.

    ``processed`` counts the events that matched a handler (as they arrived, before
    the middleware, which may still have stopped them) and were processed without an
    error, and ``unmatched`` those that matched none (see
    :meth:`EventProcessor.attach`'s ``unmatched``). For a store subscription,
    ``last_global_position`` is where it got to (pass it ``+ 1`` as ``from_position``
    to resume, or attach with ``checkpoint=`` to have the position saved and resumed,
    see ``checkpoint_position``), ``await wait()`` waits until the subscription ends,
    and ``stop()``/``wait()`` re-raise the error that stopped it, if any.
    """

    def __init__(
        self, processor: EventProcessor, link: _ManagerLink | _BusLink | _TaskLink
    ) -> None:
        self.processor = processor
        self._link = link

    @property
    def processed(self) -> int:
        """Events that matched a handler and were processed without an error."""
        return self._link.processed

    @property
    def unmatched(self) -> int:
        """Events taken that matched none of the processor's handlers.

        Each delivery counts: an event a bus redelivers after ``unmatched="error"``
        refused it counts once per try.
        """
        return self._link.unmatched.count

    @property
    def last_global_position(self) -> int | None:
        """Global position of the last event taken from a store, if any."""
        return self._link.last_global_position if isinstance(self._link, _TaskLink) else None

    @property
    def checkpoint_position(self) -> int | None:
        """The global position the attachment's checkpoint holds, as this attachment last
        loaded or saved it (None without ``checkpoint=``, or before any save)."""
        saves = getattr(self._link, "saves", None)  # a CheckpointedLink's
        return None if saves is None else cast("int | None", saves.saved)

    @property
    def running(self) -> bool:
        """False once stopped (or, for a store, once the subscription ended)."""
        link = self._link
        if isinstance(link, _TaskLink):
            return not link.task.done()
        return link.open

    async def stop(self) -> None:
        """Detach the processor from its source."""
        await self._link.stop()

    async def wait(self) -> None:
        """Wait until a store subscription ends (returns at once for other sources)."""
        await self._link.wait()
