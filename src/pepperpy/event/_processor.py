"""EventProcessor: a middleware chain in front of pattern-routed handlers.

Middleware are ``call_next`` scopes, ``async def mw(event, next_handler)``: each one
decides whether, when and how often the rest of the chain runs, and sees every error
raised further in, so retry, timeout and dead-letter policies are ordinary middleware.
The first registered middleware is the outermost. The innermost step runs every handler
whose pattern matches the event's type.

A processor is not tied to a source: ``attach`` feeds it from an
:class:`~pepperpy.event.EventManager`, an :class:`~pepperpy.event.EventBus` subscription
or an event store subscription, each with one call.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._event import Event
from ._handlers import check_handler, check_not_bare, is_async_callable
from ._patterns import PatternIndex, parse_pattern, plain_name
from ._processor_cancel import caller_cancelled, handler_cancelled
from ._processor_chain import Middleware, MiddlewareSource, NextHandler, as_step, link
from ._processor_links import (
    ATTACHED,
    Attachment,
    Done,
    Lone,
    _BusLink,
    _completed,
    _ManagerLink,
    _TaskLink,
    need_running_loop,
    settled,
)
from ._removal import check_removal
from ._unmatched import Unmatched, UnmatchedMode, check_mode, check_overlap

if TYPE_CHECKING:
    from ._checkpoints import CheckpointStore

__all__ = ["Attachment", "EventProcessor", "Middleware", "NextHandler"]

logger = logging.getLogger("pepperpy.event.processor")

H = TypeVar("H", bound=Callable[..., Any])
M = TypeVar("M", bound=Callable[..., Any])


def failed_handlers(exc: BaseException) -> tuple[Callable[..., Any], ...]:
    """The handlers of the running ``process`` call that ``exc`` stopped (none if none did).

    One handler for its own exception; for the cancellation of a timeout, every handler
    it cut off before it finished.
    """
    record = _completed.get()
    if record is None:
        return ()
    hit = record[2].get(id(exc))
    return hit[1] if hit is not None and hit[0] is exc else ()


class _Route:
    __slots__ = ("handler", "is_async", "key", "pattern")

    def __init__(self, handler: Callable[[Event], Any], pattern: str) -> None:
        self.handler = handler
        self.is_async = is_async_callable(handler)
        self.key = 0
        self.pattern = pattern


class EventProcessor:
    """Runs each event through the middleware chain, then through its matching handlers.

    ``await process(event)`` returns once every matching handler has finished. Errors
    propagate outwards through the middleware (so retry and dead-letter middleware see
    them) and finally out of ``process``; nothing is swallowed. When several handlers
    fail, ``process`` raises an ``ExceptionGroup`` of their errors. An event no handler
    matches still runs through the middleware (which may validate, measure or log it).
    """

    def __init__(self) -> None:
        self._middleware: list[Middleware] = []
        self._index: PatternIndex[_Route] = PatternIndex()
        self._chain: NextHandler = self._run_recorded

    # -- registration -----------------------------------------------------------------

    @overload
    def middleware(self, func: M) -> M: ...

    @overload
    def middleware(self, func: MiddlewareSource) -> MiddlewareSource: ...

    def middleware(self, func: Any) -> Any:
        """Register a middleware (decorator or direct call); returns it unchanged.

        ``func(event, next_handler)`` may be async or sync (a sync one returns what
        ``next_handler(event)`` returned). Objects with an ``as_middleware()`` method,
        such as ``collector.measure("name")``, are accepted too. What cannot be called
        as ``func(event, next_handler)`` - a class instead of an instance, a one-argument
        function, ``collector.measure`` without its name - is a ``TypeError`` here,
        rather than a failure of every event later.
        """
        self._middleware.append(as_step(func))
        self._chain = self._build_chain()
        return func

    def use(self, *middleware: Middleware | MiddlewareSource) -> EventProcessor:
        """Register several middleware at once, outermost first; returns the processor.

        All or nothing: when one of them is refused (``TypeError``), none is registered.
        """
        steps = [as_step(each) for each in middleware]
        self._middleware.extend(steps)
        self._chain = self._build_chain()
        return self

    @overload
    def handle(self, pattern: str, handler: None = None) -> Callable[[H], H]: ...

    @overload
    def handle(self, pattern: str, handler: H) -> H: ...

    def handle(self, pattern: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Register a sync or async handler for events whose type matches ``pattern``."""
        check_not_bare("processor.handle", pattern, "user.*")
        parse_pattern(pattern)
        pattern = plain_name(pattern)  # a StrEnum member is kept as the str it holds

        def register(func: H) -> H:
            check_handler(func)
            route = _Route(func, pattern)
            route.key = self._index.add(pattern, route)
            return func

        if handler is None:
            return register
        return register(handler)

    def remove_handler(self, pattern: str, handler: Callable[..., Any]) -> bool:
        """Remove ``handler``'s registrations under exactly ``pattern``; True if any was.

        Safe from inside a handler: the event being processed keeps its handlers. A
        ``pattern`` that is not a str, or a ``handler`` that is not callable, is a
        ``TypeError``.
        """
        check_removal("remove_handler", pattern, handler)
        return self._index.remove_where(pattern, lambda route: route.handler == handler)

    def handlers(self, event_type: str) -> list[Callable[..., Any]]:
        """The handlers an event of type ``event_type`` reaches, in registration order."""
        return [route.handler for route in self._index.match(event_type)]

    def _patterns(self) -> list[str]:
        """The patterns handlers are registered under, sorted, each once."""
        return sorted({route.pattern for route in self._index})

    # -- processing -------------------------------------------------------------------

    async def process(self, event: Event) -> None:
        """Run ``event`` through the middleware chain and every matching handler."""
        if event.__class__ is not Event and not isinstance(event, Event):
            raise TypeError(f"process() takes an Event, got {type(event).__name__}")
        if not self._middleware:  # nothing can retry: no need to remember completions
            await self._run_handlers(event)
            return
        token = _completed.set((self, set(), {}))
        try:
            await self._chain(event)
        finally:
            _completed.reset(token)

    __call__ = process

    def _build_chain(self) -> NextHandler:
        chain: NextHandler = self._run_recorded
        for step in reversed(self._middleware):
            chain = link(step, chain)
        return chain

    async def _run_handlers(self, event: Event) -> None:
        """The handlers of a ``process`` call that nothing can retry: none recorded."""
        routes = self._index.match(event.type)
        if not routes:
            return
        if len(routes) == 1:
            route = routes[0]
            try:
                if route.is_async:
                    await route.handler(event)
                else:
                    result = route.handler(event)
                    if result is not None and inspect.isawaitable(result):
                        await result
            except BaseException as exc:  # a cancellation too: a timeout names the handler
                failure = self._failure(exc, route, event)
                if failure is exc:
                    raise
                raise failure from exc
            return
        await self._run_many(event, routes, set())

    async def _run_recorded(self, event: Event) -> None:
        """The innermost step of the chain: the handlers not yet recorded as succeeded
        for ``event`` in this ``process`` call's record (so a retry, by a middleware or
        by the attachment's source, re-runs only the ones that failed), each recorded as
        it succeeds."""
        record = _completed.get()
        if record is None or record[0] is not self:  # a step ran it outside process()
            await self._run_handlers(event)
            return
        routes = self._index.match(event.type)
        if not routes:
            return
        if len(routes) == 1:
            route = routes[0]
            if record[1] and (event.id, route.key) in settled(record[1]):
                return  # it succeeded in an earlier try; what failed was elsewhere
            try:
                if route.is_async:
                    await route.handler(event)
                else:
                    result = route.handler(event)
                    if result is not None and inspect.isawaitable(result):
                        await result
            except BaseException as exc:
                failure = self._failure(exc, route, event)
                if failure is exc:
                    raise
                raise failure from exc
            record[1].add(Lone(event, route.key))  # its id is read if a retry asks
            return
        await self._run_many(event, routes, settled(record[1]))

    async def _run_many(self, event: Event, routes: Sequence[_Route], done: Done) -> None:
        """Run the handlers of ``routes`` not in ``done`` concurrently, each in a task."""
        event_id = event.id
        pending = [route for route in routes if (event_id, route.key) not in done]
        # each handler is marked done as it succeeds, not after the gather: a timeout or
        # another cancellation ends the gather early, and a retry must still skip the
        # handlers that had finished by then
        try:
            results = await asyncio.gather(
                *(_call_marking(route, event, done) for route in pending),
                return_exceptions=True,
            )
        except asyncio.CancelledError as exc:  # a timeout names every handler it cut off
            self._blame(exc, *(route for route in pending if (event_id, route.key) not in done))
            raise
        errors: list[Exception] = []
        for route, result in zip(pending, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    # the gather was not cancelled (that raised above): the handler's own
                    # await was, in its task, so it failed
                    result = handler_cancelled(route.handler, event, result)
                elif not isinstance(result, Exception):
                    raise result
                self._blame(result, route)
                errors.append(result)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ExceptionGroup(f"{len(errors)} handlers failed for {event.type!r}", errors)

    def _failure(self, exc: BaseException, route: _Route, event: Event) -> BaseException:
        """What ``exc``, raised by the one handler of ``route`` run inline, fails with.

        ``exc`` itself, unless it is a ``CancelledError`` that is not a cancellation of
        the caller's task: then the handler's own await was cancelled, and it failed
        with :class:`HandlerCancelledError`. Either is blamed on the handler.
        """
        if isinstance(exc, asyncio.CancelledError) and not caller_cancelled():
            exc = handler_cancelled(route.handler, event, exc)
        self._blame(exc, route)
        return exc

    def _blame(self, exc: BaseException, *routes: _Route) -> None:
        """Remember that ``exc`` stopped the handlers of ``routes`` (for dead letters).

        For a ``DeadLetterMiddleware`` in the chain, and for the attachment running this
        call, whose source (a manager, a bus) dead-letters what ``process`` raises.
        """
        if not routes:
            return
        handlers = tuple(route.handler for route in routes)
        record = _completed.get()
        if record is not None and record[0] is self:
            record[2][id(exc)] = (exc, handlers)
        attached = ATTACHED.get()
        if attached is not None and attached[0] is self:
            attached[1][id(exc)] = (exc, handlers)

    # -- sources ----------------------------------------------------------------------

    def attach(
        self,
        source: Any,
        pattern: str | None = None,
        *,
        group: str | None = None,
        from_position: int = 0,
        streams: str | list[str] | None = None,
        types: str | list[str] | None = None,
        unmatched: UnmatchedMode = "warn",
        checkpoint: str | None = None,
        checkpoints: CheckpointStore | str | None = None,
        checkpoint_every: int = 100,
        checkpoint_interval: float = 1.0,
    ) -> Attachment:
        """Feed this processor from a manager, a bus or an event store.

        * ``attach(manager, "user.*")`` registers the processor as a manager handler;
          the manager's retry policy and ``on_error`` see what ``process`` raises. A retry
          by the manager (or by a bus) runs only the handlers that failed: the
          attachment remembers, per event id, the ones that succeeded, until the event
          succeeds or its source gives up (at most 256 events at once).
        * ``attach(bus, "orders.*", group="billing")`` subscribes to the bus (with a
          group, processors in many processes share the work).
        * ``attach(store, from_position=..., streams=..., types=...)`` starts a task that
          follows ``store.subscribe(...)``; ``pattern`` filters by event type when
          ``types`` is not given. ``await attachment.stop()`` ends it.
        * ``attach(store, checkpoint="name")`` also resumes after the position saved
          under that name (or at ``from_position``, if later), and saves the position of
          each event once the processor is done with it: every ``checkpoint_every``
          events, ``checkpoint_interval`` seconds after the first unsaved one, and when
          the attachment ends. ``checkpoints`` is where (a :class:`CheckpointStore` or
          URL; by default the event store's own database, as for ``EventReplay``).

        When the processor has handlers, a pattern (or ``types`` pattern) that can
        match none of theirs raises :class:`ConfigurationError`: every event it took
        would be consumed without a handler. An event that still reaches no handler
        (handlers added later or removed, a pattern broader than the handlers) is
        counted in ``attachment.unmatched`` and, per ``unmatched``: ``"warn"`` logs a
        WARNING (once per event type per minute) and lets it through the middleware,
        ``"error"`` raises :class:`UnknownTopicError` to the source instead (a bus
        retries and dead-letters it, a manager's ``on_error`` sees it, a store
        attachment stops), ``"ignore"`` lets it through quietly.

        Returns an :class:`Attachment`; ``await attachment.stop()`` detaches.
        """
        from ._bus import EventBus
        from ._manager import EventManager

        mode = check_mode(unmatched)
        is_bus = isinstance(source, EventBus)
        if group is not None and not is_bus:
            raise TypeError("group= applies to an EventBus only")
        is_store = not is_bus and not isinstance(source, EventManager)
        if not is_store and (
            from_position != 0
            or streams is not None
            or types is not None
            or checkpoint is not None
            or checkpoints is not None
        ):
            raise TypeError(
                "from_position=, streams=, types=, checkpoint= and checkpoints= apply to "
                "an event store only"
            )
        if checkpoint is None and (
            checkpoints is not None or checkpoint_every != 100 or checkpoint_interval != 1.0
        ):
            raise TypeError(
                "checkpoints=, checkpoint_every= and checkpoint_interval= apply with "
                "checkpoint= only"
            )
        if pattern is not None:
            pattern = plain_name(pattern)  # a StrEnum member: the str it holds, in messages too
        if group is not None:
            group = plain_name(group)
        if isinstance(source, EventManager):
            topic = "#" if pattern is None else pattern
            what = f"manager subscription {topic!r}"
            check_overlap(what, [topic], self._patterns())
            manager_link = _ManagerLink(self, Unmatched(mode, what, self._patterns), source, topic)
            source.on(topic, manager_link.deliver)
            return Attachment(self, manager_link)
        if is_bus:
            topic = "#" if pattern is None else pattern
            what = f"bus subscription {topic!r}" + ("" if group is None else f" (group {group!r})")
            check_overlap(what, [topic], self._patterns())
            outcome = "acknowledged without a handler" + (
                "" if group is None else f": group {group!r} will not get it again"
            )
            policy = Unmatched(mode, what, self._patterns, outcome)
            bus_link = _BusLink(self, policy, source, topic, group)
            bus_link.subscribe()
            return Attachment(self, bus_link)
        if callable(getattr(source, "subscribe", None)) and callable(
            getattr(source, "append", None)
        ):
            if types is None and pattern is not None:
                types = pattern
            filters = [types] if isinstance(types, str) else types
            what = "store subscription " + (
                "(every type)" if types is None else f"(types {types!r})"
            )
            if isinstance(filters, list | tuple) and all(isinstance(t, str) for t in filters):
                check_overlap(what, filters, self._patterns())
            # before subscribing: a refusal leaves nothing behind
            need_running_loop(
                "attach() to an event store",
                "it starts a task that follows the store; attach() to a manager or a bus "
                "needs none",
            )
            events = source.subscribe(from_position, streams=streams, types=types)
            outcome = "passed over without a handler (the subscription moves past it)"
            policy = Unmatched(mode, what, self._patterns, outcome)
            if checkpoint is None:
                return Attachment(self, _TaskLink(self, policy, events))
            from ._processor_checkpoint import CheckpointedLink

            # a refused checkpoint drops ``events`` unread: it holds nothing until iterated
            link = CheckpointedLink.attach(
                self,
                policy,
                source,
                events,
                checkpoint,
                from_position=from_position,
                streams=streams,
                types=types,
                checkpoints=checkpoints,
                every=checkpoint_every,
                interval=checkpoint_interval,
            )
            return Attachment(self, link)
        raise TypeError(
            "attach() takes an EventManager, an EventBus or an event store, "
            f"got {type(source).__name__}"
        )

    async def reset_checkpoint(
        self, store: Any, checkpoint: str, *, checkpoints: CheckpointStore | str | None = None
    ) -> bool:
        """Forget the checkpoint ``attach(store, checkpoint=...)`` saved; True if there was one.

        The next attachment with that name starts at its ``from_position``. Reset a
        checkpoint only while no attachment uses it.
        """
        from ._processor_checkpoint import checkpoint_key, checkpoints_for, forget
        from ._replay_options import check_store

        check_store(store)
        checkpoint_key(checkpoint)  # the name refused before anything is opened
        where, owned = checkpoints_for(store, checkpoints)
        try:
            return await forget(store, where, checkpoint)
        finally:
            if owned:
                await where.close()

    async def run(self, events: AsyncIterable[Event]) -> int:
        """Process every event of an async iterable in order; return how many ran.

        Stops at the first error ``process`` raises (put a dead-letter middleware in the
        chain to keep going past failures).
        """
        check_events("run()", events)
        count = 0
        async for event in events:
            await self.process(event)
            count += 1
        return count

    def run_in_background(
        self, events: AsyncIterable[Event], *, unmatched: UnmatchedMode = "warn"
    ) -> Attachment:
        """Like :meth:`run`, in a task; the returned attachment stops or awaits it.

        ``unmatched`` is what to do with an event no handler matches, as for
        :meth:`attach`.
        """
        check_events("run_in_background()", events)
        policy = Unmatched(check_mode(unmatched), "background run", self._patterns)
        need_running_loop("run_in_background()", "it starts a task that reads the events")
        return Attachment(self, _TaskLink(self, policy, events))


def check_events(call: str, events: object) -> None:
    """Refuse, naming ``call``, what is not an async iterable of events.

    ``run_in_background`` took anything and failed in its task: its error came only out
    of ``wait()``, logged as a store event's failure, and the usual slips (a list, an
    async generator function not called) said nothing of what to pass instead.
    """
    if callable(getattr(events, "__aiter__", None)):
        return
    if inspect.isasyncgenfunction(events):
        hint = f": call it, {call[:-1]}{getattr(events, '__name__', 'events')}())"
    elif callable(getattr(events, "__iter__", None)):
        hint = ": wrap a list (or other sync iterable) in an async generator"
    else:
        hint = ""
    raise TypeError(
        f"{call} takes an async iterable of events (an async generator, a store "
        f"subscription), got {type(events).__name__}{hint}"
    )


async def _call_marking(route: _Route, event: Event, done: Done) -> None:
    """Run one handler and, once it has succeeded, record it in ``done``."""
    await _call(route, event)
    done.add((event.id, route.key))


async def _call(route: _Route, event: Event) -> None:
    if route.is_async:
        await route.handler(event)
        return
    result = route.handler(event)
    if result is not None and inspect.isawaitable(result):
        await result
