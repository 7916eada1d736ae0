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
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterable, Callable
from typing import TYPE_CHECKING, Any

from ._blame import Delegating, handler_name
from ._cancel import resume_cancellation
from ._event import Event
from ._unmatched import Unmatched

if TYPE_CHECKING:
    from ._processor import EventProcessor

__all__ = ["ATTACHED", "Failures", "_BusLink", "_Link", "_ManagerLink", "_TaskLink"]

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

    def __init__(self, processor: EventProcessor, unmatched: Unmatched) -> None:
        self.processor = processor
        self.unmatched = unmatched
        self.processed = 0
        self.open = True
        # event id -> (its last failure, the handlers that raised it), for failed()
        self._failed: dict[str, tuple[BaseException, list[Callable[..., Any]]]] = {}

    async def deliver(self, event: Event) -> None:
        """Run ``event`` through the processor (the handler a manager or bus calls)."""
        processor = self.processor
        if processor._index.match(event.type):
            failures: Failures = {}
            token = ATTACHED.set((processor, failures))
            try:
                await processor.process(event)
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

    def failed(self, event: Event, exc: BaseException) -> tuple[Callable[..., Any], str]:
        """The processor's handler that raised ``exc`` for ``event``, else the processor.

        With several failed handlers (an ``ExceptionGroup``), or none (a middleware or
        the attachment raised), the dead letter's handler is the processor's
        ``process``; the name says which handlers, or that none raised, and always the
        subscription the processor was attached with.
        """
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
        self.manager = manager
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

    def __init__(
        self,
        processor: EventProcessor,
        unmatched: Unmatched,
        bus: Any,
        pattern: str,
        group: str | None,
    ) -> None:
        super().__init__(processor, unmatched)
        self.bus = bus
        self.pattern = pattern
        self.group = group

    async def stop(self) -> None:
        """Unsubscribe: a group member leaves its group, whose other members get the rest."""
        if self.open:
            self.open = False
            await self.bus.unsubscribe(self.pattern, self.deliver, group=self.group)

    async def wait(self) -> None:
        return None


class _TaskLink(_Link):
    def __init__(
        self, processor: EventProcessor, unmatched: Unmatched, events: AsyncIterable[Event]
    ) -> None:
        super().__init__(processor, unmatched)
        self.events = events
        self.last_global_position: int | None = None
        self.task = asyncio.get_running_loop().create_task(self._consume())

    async def _consume(self) -> None:
        try:
            async for event in self.events:
                await self.deliver(event)
                if event.global_position is not None:
                    self.last_global_position = event.global_position
                # a handler runs inline here: one that caught this task's cancellation
                # (stop() cancels it when the source cannot be closed) must not keep
                # the loop reading, or stop() would wait for ever
                resume_cancellation()
        except Exception:
            logger.exception("processor stopped: processing a store event failed")
            raise
        finally:
            closer = getattr(self.events, "aclose", None)
            if closer is not None:
                await closer()

    async def stop(self) -> None:
        me = asyncio.current_task()
        before = 0 if me is None else me.cancelling()  # cleanup code may start at 1
        closer = getattr(self.events, "aclose", None)
        if closer is not None and not self.task.done():
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
        await self.task
