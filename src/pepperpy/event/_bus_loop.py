"""The event loop an EventBus belongs to, and closing the bus, on that loop or without it.

A bus's broker connections, consumer tasks and futures belong to the loop it started
on. :func:`check_loop` refuses work from any other loop; when that loop has ended (a
second ``asyncio.run``), :func:`drop_loop` forgets what lived there and closes the bus
for good, since nothing of it can be awaited any more. :func:`close` runs the shutdown
on the bus's own loop (from another thread too) and does not wait for it from one of
the bus's own handlers; :func:`connect` starts the transport and says so when that takes
long. Kept apart from ``_bus.py``, which holds the public methods and
their docstrings; this is how the bus stays on its one loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from ._bus_delivery import delivering, end_pauses
from ._bus_logging import log_fields
from ._bus_serve import where
from ._errors import ClosedError, TransportError

if TYPE_CHECKING:
    from ._bus import EventBus

__all__ = [
    "check_caller_loop",
    "check_loop",
    "close",
    "connect",
    "refuse_publish",
    "start_to_publish",
]

logger = logging.getLogger("pepperpy.event.bus")

#: seconds ``start()`` waits for the transport before it logs that it is still connecting
STILL_CONNECTING_AFTER = 1.5


async def connect(bus: EventBus) -> None:
    """``bus.transport.start()``, logging once if it takes more than a moment.

    A broker that is down or unreachable keeps ``start()`` retrying for the transport's
    ``connect_timeout``; without a word the worker would look hung. One WARNING after
    :data:`STILL_CONNECTING_AFTER` seconds names the broker and when it gives up; the
    same for every transport.
    """
    loop = asyncio.get_running_loop()
    began = loop.time()
    note = loop.call_later(STILL_CONNECTING_AFTER, _still_connecting, bus, loop, began)
    try:
        await bus.transport.start()
    finally:
        note.cancel()


async def start_to_publish(bus: EventBus) -> None:
    """``bus.start()`` for a ``publish`` (or ``publish_many``) that starts the bus.

    A failure there (the broker unreachable, a subscription's registration failed) comes
    before anything was sent: the ``TransportError`` says ``stored=False``, as a
    transport's own publish does for an event it never sent. It said ``None`` (unknown:
    publishing again may deliver it twice), though nothing could have been stored.
    """
    try:
        await bus.start()
    except TransportError as exc:
        if exc.stored is not None or type(exc) is not TransportError:
            raise
        # in the words the transports' own publish errors use (docs/bus.md)
        error = TransportError(f"{exc}; the bus could not start, so it was not stored")
        error.stored = False
        raise error from exc


def _still_connecting(bus: EventBus, loop: asyncio.AbstractEventLoop, began: float) -> None:
    transport = bus.transport
    limit = getattr(transport, "connect_timeout", None)
    if limit is None:
        limit = getattr(getattr(transport, "options", None), "connect_timeout", None)
    giving_up = (
        f"; giving up after {limit:g} s (connect_timeout)"
        if isinstance(limit, int | float) and not isinstance(limit, bool)
        else ""
    )
    shown = where(transport)
    waited = loop.time() - began
    logger.warning(
        "EventBus: still connecting to %s after %.1f s%s",
        shown,
        waited,
        giving_up,
        extra=log_fields("still_connecting", transport=shown, connecting_s=round(waited, 1)),
    )


def check_caller_loop(bus: EventBus) -> None:
    """:func:`check_loop` for a synchronous call, which may run outside any loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # a sync context: the next await on the bus checks its loop
        return
    check_loop(bus)


def check_loop(bus: EventBus) -> None:
    """Refuse to work from another event loop than the one the bus started on.

    Broker connections, consumer tasks and futures belong to that loop. If it has
    ended (a second ``asyncio.run``), the bus is dropped and closed for good.
    """
    loop = bus._loop
    if loop is None or loop is asyncio.get_running_loop():
        return
    if loop.is_running():
        raise ClosedError(
            "this EventBus was started on an event loop running in another thread; "
            "use it from that loop (asyncio.run_coroutine_threadsafe), or give this "
            "loop an EventBus of its own"
        )
    _drop_loop(bus)
    raise ClosedError(bus._closed_reason)


def _drop_loop(bus: EventBus) -> None:
    """Forget the connections and consumers of the loop the bus started on, which ended.

    They cannot be closed gracefully (closing awaits that loop); the transport drops
    them. The bus is closed from then on: its subscriptions stopped with that loop.
    """
    bus._closed = True
    bus._closed_reason = (
        "this EventBus was started on an event loop that has ended (a previous "
        "asyncio.run); its broker connections and consumers ended with that loop. "
        "Create the EventBus inside the asyncio.run that uses it, or keep one loop; "
        "close() it before its loop ends"
    )
    bus._loop = None
    bus._started = False
    bus._start_lock = None
    bus._closing = bus._registering = None
    bus._removing.clear()
    bus._deliveries.clear()  # their tasks ended with that loop
    try:
        bus.transport.abandon()
    except Exception:
        logger.exception("dropping the connections of an ended event loop failed")


def refuse_publish(bus: EventBus) -> None:
    """Raise :class:`ClosedError` for a publish on the closed ``bus``, unless it comes from
    one of the bus's own deliveries still in progress while the bus closes.

    ``close()`` (and ``serve()``'s shutdown) let the deliveries in progress finish, and
    a handler among them may publish its follow-up events until the transport has
    closed: refusing them would fail the handler, dead-letter its event and lose the
    follow-up (a broker acknowledges the original). Any other publish is refused.
    """
    closing = bus._closing
    if (
        closing is None  # closed for good (its event loop ended), or never shut down
        or closing.done()  # the transport is closed
        or bus._loop is not asyncio.get_running_loop()
        # a delivery of the bus, or a handler one awaits (another memory:// bus's)
        or not delivering(bus)
    ):
        raise ClosedError(bus._closed_reason)


async def close(bus: EventBus) -> None:
    """See :meth:`EventBus.close`."""
    loop = bus._loop
    if loop is not None and loop is not asyncio.get_running_loop():
        if loop.is_running():  # a loop in another thread: close there
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(bus.close(), loop))
            return
        _drop_loop(bus)  # that loop has ended: nothing of it can be awaited
    closing = bus._closing
    if closing is None:
        bus._closed = True
        closing = bus._closing = asyncio.get_running_loop().create_task(_shutdown(bus))
        closing.add_done_callback(_retrieve)
        end_pauses(bus)  # a retry's backoff does not hold the shutdown
        for notify in bus._on_close:
            notify()
    if delivering(bus):  # the shutdown waits for the caller: it cannot wait for it
        return
    await asyncio.shield(closing)


async def _shutdown(bus: EventBus) -> None:
    registering = bus._registering
    if registering is not None and not registering.done():
        registering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await registering
    if bus._start_lock is not None:
        async with bus._start_lock:  # a start() in progress finishes first
            pass
    if bus._started:
        await bus.transport.close()


def _retrieve(task: asyncio.Task[None]) -> None:
    """Log a failed shutdown nobody awaited (close() called from a handler)."""
    if not task.cancelled() and task.exception() is not None:
        logger.error("closing the EventBus failed", exc_info=task.exception())
