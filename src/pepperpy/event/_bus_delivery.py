"""Delivering events to a bus handler: who is running, retries, dead letters.

A :class:`Registration` is a subscribed handler and its deliveries in progress, which
``EventBus.unsubscribe()`` waits for. :data:`DELIVERY` marks the handler call under way
in a context, so that ``close()`` and ``unsubscribe()`` called from a handler do not wait
for that handler itself. :func:`deliverer` builds what a transport calls for each event:
the handler runs as the principal that subscribed it, a failure is retried per the bus's
policy (each retried failure logged as a WARNING), and an event that fails every attempt
goes to the bus as a dead letter. The bus keeps its deliveries in progress
(``bus._deliveries``), which ``serve()`` logs while it closes and cancels at its
``shutdown_timeout``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from ._blame import named
from ._bus_logging import log_fields, logged_shorter
from ._bus_serve import where
from ._cancel import cancelled_by_caller, cancelling
from ._event import Event
from ._frames import release_locals
from ._handlers import Handler, is_async_callable
from ._manager import DeadLetter
from ._retry import describe_delay
from .security._principal import PRINCIPAL
from .transports import NotDelivered

if TYPE_CHECKING:
    from ._bus import EventBus
    from ._retry import RetryPolicy

    #: a failed try, for :func:`_log_failed_try`: the record's kind, the handler's
    #: name, the event, the error, the attempt, the retry policy, the group, the
    #: transport (as :func:`where` gives it)
    FailedTry = tuple[str, str, Event, BaseException, int, RetryPolicy, str | None, str]

__all__ = [
    "DELIVERY",
    "Delivery",
    "Registration",
    "Unhandled",
    "deliverer",
    "delivering",
    "end_pauses",
]

logger = logging.getLogger("pepperpy.event.bus")


class Unhandled(NotDelivered):
    """Raised by a subscribed handler of the library's own (a processor's attachment
    stopped while the event waited for a retry) to say the event was not handled: the
    bus neither retries nor dead-letters it, and the transport treats it as a delivery
    that did not start. A group's broker gives it to another member (or to the group's
    next subscriber: it is left unacknowledged, never acknowledged as done); an
    ungrouped subscription, being removed, drops it as it drops its unstarted events.
    """


class Delivery:
    """Marks the handler call in progress in this context (see :meth:`EventBus.close`).

    A flag, not just a context variable value: a delivery started eagerly in a
    transport's task may finish in another context, where the variable cannot be reset;
    clearing the flag still tells ``close()`` the delivery is over. ``event``, ``task``
    and ``began`` (event loop time) say what runs where, for ``serve()``'s shutdown.
    ``parent`` is the delivery in progress this one was started from (a handler's
    ``publish`` on ``memory://`` waits for it), None once either is over.
    """

    __slots__ = ("active", "began", "bus", "event", "parent", "registration", "task")

    def __init__(self, bus: EventBus, registration: Registration, event: Event) -> None:
        self.bus = bus
        self.registration = registration
        self.event = event
        self.task = asyncio.current_task()
        self.began = asyncio.get_running_loop().time()
        self.active = True
        parent = DELIVERY.get()
        self.parent = parent if parent is not None and parent.active else None

    def finish(self) -> None:
        self.active = False
        self.parent = None  # what it waited for is over: hold none of it


def delivering(bus: EventBus, registrations: Collection[Registration] | None = None) -> bool:
    """Whether this context runs inside a delivery of ``bus`` in progress (to one of
    ``registrations`` if given), or inside a delivery started from one, however deep.

    Such a delivery cannot finish before the caller returns: a handler's ``publish`` on
    ``memory://`` waits for the handlers it reaches. ``close()`` and ``unsubscribe()``
    called there must not wait for it.
    """
    marker = DELIVERY.get()
    while marker is not None and marker.active:
        if marker.bus is bus and (registrations is None or marker.registration in registrations):
            return True
        marker = marker.parent
    return False


class Registration:
    """A subscribed handler and its deliveries in progress (see :meth:`EventBus.unsubscribe`).

    ``principal`` is who subscribed it: the handler runs as that principal.
    """

    __slots__ = ("cuts_waits", "handler", "idle", "principal", "removed", "running", "waking")

    def __init__(self, handler: Handler, principal: str | None) -> None:
        self.handler = handler
        self.principal = principal
        self.removed = False  # unsubscribe() began: start no further delivery
        self.running = 0
        self.idle: asyncio.Future[None] | None = None  # set when running drops to 0
        #: a processor's attachment (``_BusLink``): its removal (``stop()``) also ends
        #: the bus's waits between two tries, the event left unhandled (:meth:`pause`)
        link = getattr(handler, "__self__", None)
        self.cuts_waits = getattr(link, "stop_cuts_waits", False) is True
        self.waking: set[asyncio.Future[bool]] = set()  # the pauses under way

    def remove(self) -> None:
        """``unsubscribe()`` began: no delivery starts, and a processor attachment's
        pauses end (:meth:`pause`)."""
        self.removed = True
        if self.cuts_waits:
            for wake in self.waking:
                _wake(wake, True)

    async def pause(self, seconds: float, bus: EventBus) -> bool:
        """Wait ``seconds`` before the next try; True when the wait was cut short: the
        bus closes (``close()`` does not wait out a retry backoff), or the subscription
        of a processor attachment is removed (its ``stop()`` does not either)."""
        if self.cuts_waits and self.removed:
            return True
        if seconds <= 0:  # no wait to hold a shutdown: the next try runs, after a yield
            await asyncio.sleep(0)
            return self.cuts_waits and self.removed
        if bus._closed:
            return True
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[bool] = loop.create_future()
        self.waking.add(wake)
        bus._pauses.add(wake)
        timer = loop.call_later(seconds, _wake, wake, False)
        try:
            return await wake
        finally:
            timer.cancel()
            self.waking.discard(wake)
            bus._pauses.discard(wake)

    def finished_one(self) -> None:
        self.running -= 1
        idle = self.idle
        if not self.running and idle is not None and not idle.done():
            idle.set_result(None)

    async def wait_idle(self) -> None:
        """Return once no delivery to this handler is in progress."""
        while self.running:
            self.idle = asyncio.get_running_loop().create_future()
            await self.idle
        self.idle = None


def _wake(wake: asyncio.Future[bool], cut: bool) -> None:
    if not wake.done():
        wake.set_result(cut)


def end_pauses(bus: EventBus) -> None:
    """``close()`` began: every wait between two tries of this bus ends now (see
    :func:`deliverer`); the handler calls in progress are left to finish."""
    for wake in list(bus._pauses):
        _wake(wake, True)


DELIVERY: contextvars.ContextVar[Delivery | None] = contextvars.ContextVar(
    "pepperpy_bus_delivery", default=None
)


def deliverer(
    bus: EventBus, registration: Registration, pattern: str, group: str | None
) -> Callable[[Event], Any]:
    """The function the transport calls with each event for ``registration``'s handler.

    The handler runs as the principal that subscribed it; a failure is retried per the
    bus's ``retry_policy``, then handed to the bus as a dead letter. A cancellation of
    the delivery itself (the bus or the caller shutting down) is not a failure.
    """
    handler = registration.handler
    is_async = is_async_callable(handler)
    transport = where(bus.transport)  # for the log records' fields

    async def deliver(event: Event) -> None:
        if registration.removed:  # the transport must give it to another member
            raise NotDelivered(f"{pattern!r} is being unsubscribed")
        if bus._cut_off:  # serve()'s shutdown_timeout passed: start nothing more
            raise NotDelivered("the EventBus is closing and its shutdown_timeout has passed")
        attempt = 1
        since = cancelling()  # a cancellation under way before it is not its own
        marker = Delivery(bus, registration, event)
        token = DELIVERY.set(marker)
        acting = PRINCIPAL.set(registration.principal)  # not the publisher's
        registration.running += 1
        bus._deliveries.add(marker)
        try:
            while True:
                try:
                    if is_async:
                        await handler(event)
                    else:
                        result = handler(event)
                        if result is not None and hasattr(result, "__await__"):
                            await result
                    return
                except Unhandled:
                    raise  # not handled, and not a failure: the transport's to give again
                except asyncio.CancelledError as exc:
                    if cancelled_by_caller(since):
                        raise  # our own shutdown (or the caller's): not a failure
                    error: BaseException = exc  # the handler awaited something cancelled
                except Exception as exc:
                    error = exc
                policy = bus._retry_policy  # read at each failure: it may have been set since
                if policy.should_retry(error, attempt):
                    name = named(handler, event, error)
                    # one WARNING per handler and error type a minute, the rest at DEBUG
                    seen = bus._retry_warnings.check(name, error)
                    _log_failed_try(
                        logging.WARNING if seen.full else logging.DEBUG,
                        ("retry", name, event, error, attempt, policy, group, transport),
                        "retrying in %s%s",
                        describe_delay(policy, attempt),
                        logged_shorter(seen, "at DEBUG") if seen.full else "",
                    )
                    delay = policy.delay(attempt)
                    if await registration.pause(delay, bus):
                        await _not_tried_again(bus, registration, event, error, attempt, group)
                        release_locals(error)
                        return
                    attempt += 1
                    continue
                await bus._dead_letter(DeadLetter(event, handler, error, attempt), group)
                # logged, seen by every callback and republished: the kept letter keeps
                # its traceback's lines, not the handler's variables (1 MB in hand made
                # 100 letters hold 100 MB)
                release_locals(error)
                return
        finally:
            marker.finish()
            bus._deliveries.discard(marker)
            registration.finished_one()
            try:
                DELIVERY.reset(token)
                PRINCIPAL.reset(acting)
            except ValueError:  # finished in another context than it started in
                pass

    return deliver


def _log_failed_try(level: int, failed: FailedTry, then: str, *then_args: Any) -> None:
    """Log at ``level`` that a try failed, then ``then`` (a format, with ``then_args``),
    with the fields (``extra``) of a record of its kind. Attributed to the caller (its
    function and line), as when it logged the record itself."""
    kind, name, event, error, attempt, policy, group, transport = failed
    logger.log(
        level,
        "bus handler %s failed for %s (%s) on attempt %d of %d (%s: %s); " + then,
        name,
        event.type,
        event.id,
        attempt,
        policy.max_attempts,
        type(error).__name__,
        error,
        *then_args,
        stacklevel=2,
        extra=log_fields(
            kind,
            event_id=event.id,
            event_type=event.type,
            handler=name,
            group=group,
            attempt=attempt,
            max_attempts=policy.max_attempts,
            error_type=type(error).__name__,
            transport=transport,
        ),
    )


async def _not_tried_again(
    bus: EventBus,
    registration: Registration,
    event: Event,
    error: BaseException,
    attempt: int,
    group: str | None,
) -> None:
    """The wait before try ``attempt + 1`` of ``event`` was cut short.

    A processor attachment stopped: :class:`Unhandled` (its transport gives the event
    to another member). The bus closing: where a broker can give the event again (a
    group's), :class:`Unhandled` too, left unacknowledged; where nothing can
    (``memory://``, an ungrouped subscription, whose queue goes with the close), it is
    dead-lettered with the last failure, saying the close ended its retries.
    """
    if registration.removed and not bus._closed:
        raise Unhandled(
            f"{event.type} ({event.id}) not handled: its subscription was removed "
            "while the event waited to be tried again"
        )
    policy = bus._retry_policy
    cut = (
        f"not tried again: the EventBus closed during the wait before attempt "
        f"{attempt + 1} of {policy.max_attempts}"
    )
    name = named(registration.handler, event, error)
    if group is not None and bus.transport.distributed:
        _log_failed_try(
            logging.WARNING,
            ("retry_cut", name, event, error, attempt, policy, group, where(bus.transport)),
            "the EventBus closed during the wait before the next try: left unacknowledged, "
            "the broker delivers it again (group %s)",
            group,
        )
        raise Unhandled(
            f"{event.type} ({event.id}) not handled: the EventBus closed while the event "
            "waited to be tried again"
        )
    if cut not in getattr(error, "__notes__", ()):
        error.add_note(cut)  # what an on_error callback can read, and the traceback says
    await bus._dead_letter(DeadLetter(event, registration.handler, error, attempt), group, cut)
