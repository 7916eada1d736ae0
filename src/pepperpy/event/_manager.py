"""EventManager: in-process events with patterns, priorities, retries and backpressure.

Backpressure (buffer slots, the events ``emit_nowait`` scheduled, ``drain()``) is the
mixin in :mod:`._backpressure`; registering and removing handlers (``on``'s bookkeeping,
``listening``, ``off``, ``handlers``, ``off_all``, ``patterns``, ``on_error``, weak
registrations) the mixin in :mod:`._registrations`; waiting for several handlers of one
event, and calling them off when the emit is cancelled, is in :mod:`._fanout`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import copy_context
from dataclasses import dataclass
from functools import partial
from types import FrameType
from typing import Any, TypeVar, overload

from ._backpressure import DELIVERING, Backpressure, _Waiter
from ._blame import blamed, named
from ._closing import AsyncClosing
from ._eager import start_task, starts_eagerly
from ._errors import BufferFullError, ClosedError
from ._event import Event, make_event
from ._fanout import _all_settled, _call_sync, _cancel_all, _cancellation
from ._frames import release_locals
from ._guarded import guarded
from ._listeners import WeakListener, _Listener
from ._options import check_count
from ._patterns import PatternIndex, parse_topic
from ._registrations import ErrorCallback, Registrations
from ._retry import RetryPolicy, check_policy, describe_delay, follow

__all__ = ["DeadLetter", "EventManager"]

logger = logging.getLogger("pepperpy.event")

H = TypeVar("H", bound=Callable[..., Any])

DEAD_LETTER_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A handler failure that survived every retry."""

    event: Event
    handler: Callable[..., Any]
    exception: BaseException
    attempts: int


def _interrupted(exc: BaseException) -> str:
    """How an emit ended whose handler raised ``exc`` (KeyboardInterrupt, SystemExit)."""
    return f"interrupted by {type(exc).__name__} from another handler"


def _called_off(listener: _Listener, event: Event, exc: BaseException, attempts: int) -> None:
    """Log a handler's last failure when its emit is cancelled while it is being retried:
    the retries stop and no dead letter is made, so without this line the failure would
    end on the WARNING that announced a retry never made."""
    logger.error(
        "handler %s failed for event %s (%s) after %d attempt(s), and its emit was cancelled "
        "before it succeeded; not retried further or dead-lettered",
        named(listener.handler, event, exc),
        event.type,
        event.id,
        attempts,
        exc_info=exc,
    )


def _priority_first(listener: _Listener) -> int:
    return -listener.priority


class EventManager(Backpressure, Registrations, AsyncClosing):
    """Dispatches events to the handlers registered for their type (or a pattern).

    ``await emit(...)`` returns once every matching handler has finished, retries
    included. Handlers of one event run concurrently, higher ``priority`` first. A lone
    handler is awaited inline (an ordinary nested call, no Task); with several, each
    runs as if in a Task of its own, with its own copy of the context (``async`` ones
    get a Task; sync ones run inline in a context copy). Failures are retried per
    ``retry_policy`` and then become :class:`DeadLetter` records passed to the
    ``on_error`` callbacks, kept in ``dead_letters`` and logged.
    """

    def __init__(
        self,
        max_listeners: int | None = None,
        buffer_size: int | None = None,
        retry_policy: RetryPolicy = RetryPolicy.NONE,
    ) -> None:
        self.max_listeners = max_listeners  # checked by the setters below
        self._buffer_size = check_count(buffer_size, "buffer_size", optional=True)
        self.retry_policy = retry_policy
        self.dead_letters: deque[DeadLetter] = deque(maxlen=DEAD_LETTER_LIMIT)
        self._index: PatternIndex[_Listener] = PatternIndex(order=_priority_first)
        self._error_callbacks: list[tuple[ErrorCallback, bool]] = []
        #: held for the bookkeeping below: emits from several event loops (threads) share it
        self._lock = threading.Lock()
        self._in_flight = 0
        self._held: dict[asyncio.AbstractEventLoop, int] = {}  # buffer slots per loop
        self._space_waiters: deque[_Waiter] = deque()  # emits waiting for a slot, in order
        #: what emit_nowait scheduled and is not done yet: its task -> its event
        self._scheduled: dict[asyncio.Future[Event], Event] = {}
        self._drainers: list[_Waiter] = []  # drain() calls waiting for _scheduled to empty
        self._stuck: dict[int, int] = {}  # scheduled events with a handler in drain()
        self._blocked: dict[_Waiter, list[FrameType]] = {}  # see Backpressure._block
        self._owners: dict[asyncio.Future[Any], asyncio.Task[Any] | None] = {}
        self._closed = False
        self._direct = buffer_size is None  # emit may skip buffer and closed checks
        #: weak registrations whose handler was collected, to remove (see ._listeners)
        self._dead: deque[WeakListener] = deque()
        #: whether a once registration was ever made: only then does a dispatch to
        #: several handlers take its once handlers before running any (_take_once)
        self._uses_once = False

    # -- settings ---------------------------------------------------------------------

    @property
    def max_listeners(self) -> int | None:
        """Most registrations one type or pattern may have (None: no limit)."""
        return self._max_listeners

    @max_listeners.setter
    def max_listeners(self, value: int | None) -> None:
        self._max_listeners = check_count(value, "max_listeners", optional=True)

    @property
    def buffer_size(self) -> int | None:
        """Most events in flight at once (None: no limit); fixed at construction."""
        return self._buffer_size

    @buffer_size.setter
    def buffer_size(self, value: int | None) -> None:
        # the emits running hold slots counted against it, and an unbuffered manager
        # (the one-handler fast path) counts none: a new value would corrupt the count
        raise AttributeError(
            "EventManager.buffer_size is fixed at construction: the emits in flight hold "
            "slots counted against it (none are counted without a buffer_size); make a "
            f"new EventManager(buffer_size={value!r}) instead"
        )

    @property
    def retry_policy(self) -> RetryPolicy:
        """How failed handlers are tried again; a new one applies to the next failure."""
        return self._retry_policy

    @retry_policy.setter
    def retry_policy(self, value: RetryPolicy) -> None:
        self._retry_policy = check_policy(value)

    # -- registration -----------------------------------------------------------------

    @overload
    def on(
        self,
        event_type: str,
        handler: None = None,
        *,
        once: bool = False,
        priority: int = 0,
        weak: bool = False,
    ) -> Callable[[H], H]: ...

    @overload
    def on(
        self,
        event_type: str,
        handler: H,
        *,
        once: bool = False,
        priority: int = 0,
        weak: bool = False,
    ) -> H: ...

    def on(
        self,
        event_type: str,
        handler: H | None = None,
        *,
        once: bool = False,
        priority: int = 0,
        weak: bool = False,
    ) -> H | Callable[[H], H]:
        """Register ``handler`` for ``event_type`` (a type or pattern); returns it unchanged.

        Usable as ``@manager.on("user.*")`` or ``manager.on("user.*", handler)``. A
        closed manager refuses it with :class:`ClosedError` (as a closed bus refuses
        ``subscribe``): it would never run.

        ``weak=True`` holds the handler weakly (blinker's default): a bound method
        through :class:`weakref.WeakMethod`, so the registration does not keep its
        object alive, any other callable through :class:`weakref.ref`. Once the handler
        (or the method's object) is collected, it is no longer called, nor listed by
        :meth:`handlers`; its registration is removed lazily (see docs/manager.md). A
        lambda or ``functools.partial`` made in the call, held nowhere else, is gone
        as soon as the caller drops what ``on`` returned: it never runs, and removing
        its registration logs a WARNING saying so. A handler that cannot be weakly
        referenced (``list.append``) is a ``TypeError``.
        """
        self._check_options(event_type, once, priority, weak)
        if handler is None:

            def decorator(func: H) -> H:
                self._add(event_type, func, once, priority, weak)
                return func

            return decorator
        self._add(event_type, handler, once, priority, weak)
        return handler

    @overload
    def once(
        self, event_type: str, handler: None = None, *, priority: int = 0, weak: bool = False
    ) -> Callable[[H], H]: ...

    @overload
    def once(self, event_type: str, handler: H, *, priority: int = 0, weak: bool = False) -> H: ...

    def once(
        self,
        event_type: str,
        handler: H | None = None,
        *,
        priority: int = 0,
        weak: bool = False,
    ) -> H | Callable[[H], H]:
        """Like :meth:`on`, but the handler runs for the first matching event only."""
        return self.on(event_type, handler, once=True, priority=priority, weak=weak)

    # -- emitting ---------------------------------------------------------------------

    async def emit(
        self,
        event_type: str | Event,
        data: Any = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Event:
        """Dispatch an event and return it once every matching handler has finished.

        Pass a type with its data (and optional metadata), or a ready :class:`Event`.
        With a ``buffer_size``, waits for a slot when all are held; called from a handler
        when every slot is held by an emit waiting on such a call, so that none could
        ever be given back, raises :class:`BufferFullError` instead.
        """
        if event_type.__class__ is str:
            event = make_event(event_type, data, metadata)  # type: ignore[arg-type,unused-ignore]
        elif event_type.__class__ is Event and data is None and metadata is None:
            event = event_type  # type: ignore[assignment,unused-ignore]
        else:
            event = self._ready_event(event_type, data, metadata)
        if self._direct:
            # the hot path, inlined: no buffer, not closed, one listener
            listeners = self._index._cache.get(event._type)
            if listeners is None:
                listeners = self._index.match(event._type)
            if len(listeners) == 1:
                listener = listeners[0]
                if listener.once and not self._claim(listener):
                    return event  # another emit ran it
                try:
                    if listener.is_async:
                        await listener.handler(event)
                    else:
                        result = listener.handler(event)
                        if result is not None and inspect.isawaitable(result):
                            await result
                except Exception as exc:
                    await self._retry(listener, event, exc)
                except asyncio.CancelledError as exc:
                    # no cancelling() count taken at the start: on CPython 3.11 reading
                    # it (asyncio.current_task() makes a getpid() call) costs about as
                    # much as this whole path, so an own CancelledError of the first try
                    # in the cleanup of a cancelled task counts as the emit's here
                    await self._handler_cancelled(listener, event, exc, None)
                return event
            if listeners:
                await self._dispatch_many(event, listeners)
            return event
        if self._closed:
            raise ClosedError("the EventManager is closed")
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        since = 0 if task is None else task.cancelling()
        await self._enter(loop)
        try:
            await self._dispatch(event, since)
        finally:
            self._leave(loop)
        return event

    def emit_nowait(
        self,
        event_type: str | Event,
        data: Any = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> asyncio.Future[Event]:
        """Schedule an event without waiting; the returned future resolves to it.

        Raises :class:`BufferFullError` when ``buffer_size`` events are already in flight.
        """
        if event_type.__class__ is str:
            event = make_event(event_type, data, metadata)  # type: ignore[arg-type,unused-ignore]
        else:
            event = self._ready_event(event_type, data, metadata)
        if self._closed:
            raise ClosedError("the EventManager is closed")
        parse_topic(event._type)  # a bad type fails here, not inside the future
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "emit_nowait() needs an event loop running in this thread (it schedules "
                "the delivery on it); from a worker thread or sync code, hand the emit "
                "to the loop the manager runs on: "
                "asyncio.run_coroutine_threadsafe(manager.emit(...), loop); with no "
                "loop running anywhere (a script, a sync test), asyncio.run(manager.emit(...))"
            ) from None
        if self._buffer_size is not None:
            with self._lock:
                if not self._has_space():
                    raise BufferFullError(
                        f"{self._in_flight} events in flight (buffer_size={self._buffer_size}): "
                        "emit_nowait does not wait; await emit(...) to wait for a slot, "
                        "or await drain() before scheduling more"
                    )
                self._take_slot(loop)
        try:
            task = loop.create_task(self._deliver_scheduled(event))
        except BaseException:
            if self._buffer_size is not None:
                self._leave(loop)
            raise
        with self._lock:
            self._scheduled[task] = event
        if task.done():
            # an eager task factory (asyncio.eager_task_factory) ran the delivery to its
            # end already: give its slot back now, not on a later loop iteration, or an
            # ``await`` of the (done) future, which never suspends, finds it still held
            self._unschedule(task)
        else:
            # a done-callback runs exactly once, also when the future is cancelled before
            # its task ever started (a ``finally`` inside it would never run)
            task.add_done_callback(self._unschedule)
        return task

    async def _deliver_scheduled(self, event: Event) -> Event:
        DELIVERING.set(event)  # in this Task's own context: drain() from a handler
        await self._dispatch(event, 0)  # a task of its own: never cancelled before this
        return event

    @staticmethod
    def _ready_event(event: Any, data: Any, metadata: Any) -> Event:
        if isinstance(event, str):  # a str subclass (a StrEnum member): make_event takes it
            return make_event(event, data, metadata)
        if not isinstance(event, Event):
            raise TypeError(f"emit() takes an event type (str) or an Event, got {event!r}")
        if data is not None or metadata is not None:
            raise TypeError("pass data and metadata inside the Event, not beside it")
        return event

    async def _dispatch(self, event: Event, since: int) -> None:
        """Run the handlers of ``event``; ``since``: the task's cancelling() count at the
        emit's start (see :meth:`_handler_cancelled`)."""
        listeners = self._index._cache.get(event._type)
        if listeners is None:
            listeners = self._index.match(event._type)
        if not listeners:
            return
        if len(listeners) == 1:
            listener = listeners[0]
            if listener.once and not self._claim(listener):
                return
            try:
                if listener.is_async:
                    await listener.handler(event)
                else:
                    result = listener.handler(event)
                    if result is not None and inspect.isawaitable(result):
                        await result
            except Exception as exc:
                await self._retry(listener, event, exc, since)
            except asyncio.CancelledError as exc:
                await self._handler_cancelled(listener, event, exc, since)
            return
        if self._buffer_size is None:
            await self._dispatch_many(event, listeners)
            return
        owned: list[asyncio.Future[Any]] = []
        try:
            await self._dispatch_many(event, listeners, owned)
        finally:
            for task in owned:
                self._owners.pop(task, None)

    def _own(self, owned: list[asyncio.Future[Any]], tasks: Iterable[asyncio.Future[Any]]) -> None:
        """Note ``tasks`` as awaited by the current task (see :meth:`_dispatch_many`); one
        dict operation each, atomic, as ``_block`` reads them (with the lock) from
        whichever thread's emit waits."""
        owner = asyncio.current_task()
        for task in tasks:
            self._owners[task] = owner
            owned.append(task)

    async def _dispatch_many(
        self,
        event: Event,
        listeners: tuple[_Listener, ...],
        owned: list[asyncio.Future[Any]] | None = None,
    ) -> None:
        """Run several handlers concurrently, each as if in a Task of its own.

        An ``async`` handler gets a Task (so ``asyncio.timeout``, ``TaskGroup`` and
        ``current_task()`` inside it concern the handler, not the emitter) with its own
        copy of the context; on CPython 3.12+ the Task starts eagerly (:mod:`._eager`),
        so a handler that never suspends is done before the next one starts and the
        emit returns without a trip through the loop. A sync handler runs inline in a
        copy of the context, unless a Task was already scheduled but not yet started
        before it: then it gets a Task too, so handlers still start in priority order.
        ``owned`` (a buffered manager's): gets the handler Tasks, noted as awaited by this
        task (``_owners``) so that an emit one of them waits in is known to block this one.
        """
        loop = asyncio.get_running_loop()
        eager = starts_eagerly(loop)
        running: list[tuple[_Listener, asyncio.Future[Any]]] = []
        failed: list[tuple[_Listener, BaseException]] = []
        taken: Sequence[_Listener] = ()  # the once listeners this emit took
        if self._uses_once:
            claimed: list[_Listener] = []
            listeners = self._take_once(listeners, claimed)
            taken = claimed
        try:
            for listener in listeners:
                try:
                    if listener.once:  # taken by this emit (_take_once)
                        if eager or not (listener.is_async or running):  # it starts now
                            self._index.remove(listener.pattern, listener.key)
                        else:
                            # its Task starts on a later loop iteration (CPython 3.11, a
                            # task factory): it leaves the index as it starts, so an
                            # emit called off before that leaves it registered
                            task = loop.create_task(self._fire_once(listener, event))
                            running.append((listener, task))
                            continue
                    if listener.is_async:
                        task = start_task(loop, listener.handler(event), eager)
                        running.append((listener, task))
                        continue
                    if running and not eager:  # an earlier handler waits to start: keep order
                        running.append((listener, loop.create_task(_call_sync(listener, event))))
                        continue
                    context = copy_context()
                    result = context.run(listener.handler, event)
                    if result is not None and inspect.isawaitable(result):
                        # a sync callable that returned an awaitable: finish it like a handler
                        if inspect.iscoroutine(result):
                            pending = start_task(loop, result, eager, context)
                        else:
                            pending = asyncio.ensure_future(result)
                        running.append((listener, pending))
                except Exception as exc:
                    self._consumed(listener)
                    failed.append((listener, exc))
                except asyncio.CancelledError as exc:
                    # raised by a sync call (it read a cancelled future's result): the
                    # handler's own, since the task's cancellation only lands at an await;
                    # a failure like in the one-handler path, not the emit's cancellation
                    self._consumed(listener)
                    failed.append((listener, exc))
        except BaseException as exc:
            # KeyboardInterrupt or SystemExit from a sync handler, or from an async one's
            # eager first step: the handlers started so far are called off (as a cancelled
            # emit's are) before it propagates, not left running unsupervised, and the
            # failures of those that failed already are logged, not dropped
            try:
                if running or failed:
                    await self._call_off(loop, event, running, failed, _interrupted(exc))
            finally:
                self._give_back(taken)  # the once handlers it never started
            raise
        if owned is not None:
            self._own(owned, (task for _, task in running if not task.done()))
        if running:
            tasks = [task for _, task in running if not task.done()]
            if tasks:
                try:
                    await _all_settled(loop, tasks)
                except asyncio.CancelledError:
                    # the emit was cancelled: so are its handlers, and it ends after them
                    try:
                        await self._call_off(loop, event, running, failed)
                    finally:
                        self._give_back(taken)
                    raise
            for listener, done in running:
                if done.cancelled():
                    # the emit was not cancelled (that raised above): the handler's own
                    # await was, so it failed like one raising; as on the bus
                    self._consumed(listener)
                    failed.append((listener, _cancellation(done)))
                    continue
                error = done.exception()
                if error is not None:
                    if not isinstance(error, Exception):
                        try:
                            await self._stopped(loop, event, running, failed, done, error)
                        finally:
                            self._give_back(taken)
                        raise error
                    failed.append((listener, error))
        if failed:
            retries = [self._retry_task(loop, lis, event, exc) for lis, exc in failed]
            if owned is not None:
                self._own(owned, retries)
            await asyncio.gather(*retries)

    def _retry_task(
        self,
        loop: asyncio.AbstractEventLoop,
        listener: _Listener,
        event: Event,
        exc: BaseException,
    ) -> asyncio.Task[None]:
        """The retries (and dead letter) of one of several failed handlers, in a Task.

        A Task cancelled before its first step (a shutdown cancelling every task) runs
        none of :meth:`_retry`, which logs every outcome, so the failure would leave no
        line at all: its done-callback logs it then, as a retry called off does. Only
        the failure path pays for this.
        """
        begun = False

        async def retry() -> None:
            nonlocal begun
            begun = True
            await self._retry(listener, event, exc)

        def settled(task: asyncio.Task[None]) -> None:
            if not begun and task.cancelled():
                _called_off(listener, event, exc, 1)

        task = loop.create_task(retry())
        task.add_done_callback(settled)
        return task

    def _claim(self, listener: _Listener, removes: bool = True) -> bool:
        """Let a ``once`` listener fire a single time: True for the emit that takes it;
        ``removes``: remove it from the index now (else it leaves as it starts)."""
        with self._lock:  # emits in other threads race for it too
            if listener.fired:
                return False
            listener.fired = True
        if removes:
            self._index.remove(listener.pattern, listener.key)
        return True

    def _take_once(
        self, listeners: tuple[_Listener, ...], taken: list[_Listener]
    ) -> tuple[_Listener, ...]:
        """Take the ``once`` listeners of an emit to several handlers before any runs.

        Taken (``fired``), a once listener is no handler any more: ``handlers()`` leaves
        it out, ``off`` does not count it, and an emit made meanwhile (nested in a
        handler of higher priority, or racing in another thread) does not run it. It
        stays in the index until it starts, so an emit interrupted before then gives it
        back (:meth:`_give_back`). Claimed only as the dispatch reached it, it was still
        a handler to whatever ran before it in the same emit (a sync handler run
        inline, an async one's eager first step). Returns ``listeners`` without those
        another emit took; ``taken`` gets this emit's.
        """
        kept: list[_Listener] = []
        for listener in listeners:
            if listener.once:
                if not self._claim(listener, removes=False):
                    continue  # another emit has it
                taken.append(listener)
            kept.append(listener)
        return listeners if len(kept) == len(listeners) else tuple(kept)

    def _give_back(self, taken: Sequence[_Listener]) -> None:
        """An emit was called off: the once listeners it took but never started (still
        in the index) are free again, so they run for the next matching event."""
        for listener in taken:
            if any(item is listener for _, item in self._index.items_for(listener.pattern)):
                with self._lock:
                    listener.fired = False

    async def _fire_once(self, listener: _Listener, event: Event) -> None:
        """A claimed ``once`` handler whose Task was scheduled, not started: it leaves the
        index as it starts. A Task cancelled before its first step runs none of this, so
        the registration stays for the next event (see :meth:`_call_off`)."""
        self._index.remove(listener.pattern, listener.key)
        result = listener.handler(event)
        if result is not None and inspect.isawaitable(result):
            await result

    def _consumed(self, listener: _Listener) -> None:
        """A claimed ``once`` listener counts as fired for this event (it failed, or its
        Task was cancelled by someone else, and is dead-lettered): out of the index."""
        if listener.once:
            self._index.remove(listener.pattern, listener.key)  # no-op if it already left

    async def _call_off(
        self,
        loop: asyncio.AbstractEventLoop,
        event: Event,
        running: list[tuple[_Listener, asyncio.Future[Any]]],
        failed: list[tuple[_Listener, BaseException]],
        why: str = "cancelled",
    ) -> None:
        """Cancel the handlers of an emit that is called off and wait for them
        (:func:`._fanout._cancel_all`); its caller then gives back the ``once`` handlers
        whose Task never started (:meth:`_give_back`)."""
        await _cancel_all(loop, event, running, failed, why)

    async def _stopped(
        self,
        loop: asyncio.AbstractEventLoop,
        event: Event,
        running: list[tuple[_Listener, asyncio.Future[Any]]],
        failed: list[tuple[_Listener, BaseException]],
        stopper: asyncio.Future[Any],
        error: BaseException,
    ) -> None:
        """A settled handler Task ended with a BaseException that is not an Exception (a
        custom one, or KeyboardInterrupt once the loop runs again): before it propagates,
        the other handlers' failures are logged (not retried or dead-lettered), as for a
        cancelled emit; none is dropped without a word."""
        ran = {id(listener) for listener, _ in running}
        early = [entry for entry in failed if id(entry[0]) not in ran]  # failed to start
        others = [entry for entry in running if entry[1] is not stopper]
        await self._call_off(loop, event, others, early, _interrupted(error))

    async def _handler_cancelled(
        self, listener: _Listener, event: Event, exc: asyncio.CancelledError, since: int | None
    ) -> None:
        """A lone handler, awaited inline, raised CancelledError: whose cancellation?

        If the emit itself is being cancelled, it propagates; otherwise the handler's own
        await was cancelled (a future someone else cancelled), and the handler failed.
        ``since`` is the task's ``cancelling()`` count when the emit began: only a
        cancellation that came after it is the emit's. An emit made in the cleanup of a
        cancelled task (``finally:``, ``except CancelledError:``) starts with a count of
        1. Unknown (None, on the unbuffered fast path), any count is taken for the
        emit's: a cancellation is never swallowed.
        """
        task = asyncio.current_task()
        if task is None or task.cancelling() > (since or 0):
            raise exc
        await self._retry(listener, event, exc, since)

    async def _retry(
        self, listener: _Listener, event: Event, exc: BaseException, since: int | None = None
    ) -> None:
        """Try the handler again per ``retry_policy``, inline; dead-letter it if it keeps
        failing.

        A retry whose own await is cancelled failed like any other; only a cancellation
        of the task that came after ``since`` (its ``cancelling()`` count when the emit
        began; if unknown, when the retries began) cancels the emit. The retries of
        several handlers each run in a task of their own (``gather``), from 0.
        """
        task = asyncio.current_task()
        if since is None:
            since = 0 if task is None else task.cancelling()
        policy = self._retry_policy
        attempt = 1
        tries = [exc]  # each try's exception: the last one's __context__ holds the others (follow)
        while policy.should_retry(exc, attempt):
            logger.warning(  # a flapping handler shows, not only one that runs out
                "handler %s failed for event %s (%s) on attempt %d of %d (%s: %s); retrying in %s",
                named(listener.handler, event, exc),
                event.type,
                event.id,
                attempt,
                policy.max_attempts,
                type(exc).__name__,
                exc,
                describe_delay(policy, attempt),
            )
            try:
                await policy.sleep(attempt)
            except asyncio.CancelledError:
                _called_off(listener, event, exc, attempt)  # the emit, between two tries
                raise
            attempt += 1
            try:
                result = listener.handler(event)
                if result is not None and inspect.isawaitable(result):
                    await result
                return
            except Exception as again:
                exc = again
            except asyncio.CancelledError as again:
                if task is None or task.cancelling() > since:
                    _called_off(listener, event, exc, attempt - 1)
                    raise  # the emit itself is being cancelled
                exc = again  # the handler's own await was cancelled: this try failed
            follow(exc, tries)
            tries.append(exc)
        await self._dead_letter(DeadLetter(event, listener.handler, exc, attempt), since)
        # logged and seen by every callback: the kept letter keeps its traceback's lines,
        # not the variables of the handler's frames (1 MB in hand, 1 GB in 1,000 letters)
        for failure in tries:
            release_locals(failure)

    async def _dead_letter(self, letter: DeadLetter, since: int) -> None:
        """Keep, log and pass on ``letter``; a callback's failure (a CancelledError of its
        own too) is logged; a cancellation of the task after ``since`` propagates."""
        letter, name = blamed(letter)  # an attached processor names its own handler
        self.dead_letters.append(letter)
        logger.error(
            "handler %s failed for event %s (%s) after %d attempt(s)",
            name,
            letter.event.type,
            letter.event.id,
            letter.attempts,
            exc_info=letter.exception,
        )
        for callback, is_async in list(self._error_callbacks):
            await guarded(
                partial(callback, letter),
                since,
                logger,
                "on_error callback %r failed",
                callback,
                awaits=is_async,
            )

    # -- lifecycle --------------------------------------------------------------------

    def _closed_for_good(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Drain scheduled events, then refuse new ones.

        Cancelled while it drains (``asyncio.timeout`` around it at shutdown), it still
        closes: new events and handlers are refused; the deliveries in progress go on,
        and ``drain()`` can still wait for them.
        """
        try:
            await self.drain()
        finally:
            self._closed = True
            self._direct = False


#: the calls that hold a buffer slot while the handlers of their event run
EventManager._slot_codes = frozenset(
    {EventManager.emit.__code__, EventManager._deliver_scheduled.__code__}
)
