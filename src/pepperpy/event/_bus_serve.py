"""``EventBus.serve()``: run a bus as a consumer service until a signal or ``close()``.

What a worker process needs around its subscriptions: start the bus, wait until SIGINT or
SIGTERM (or until something calls ``close()``), then close it gracefully, letting the
events in progress finish (on a broker they are acknowledged, not delivered again).

The signals are handled with ``loop.add_signal_handler`` for as long as serve() waits.
When one arrives, the handlers in place before are put back at once, so a second signal
during the graceful close acts as it would without serve(): under ``asyncio.run`` a
second Ctrl-C cancels the program (``KeyboardInterrupt``), and a second SIGTERM with
Python's default handler ends the process at once. Handlers still running then do not
finish; a broker delivers their events again (at-least-once), ``memory://`` loses them.
A signal ignored when serve() begins stays ignored.

The signals are handled from before ``start()``: one that arrives while the bus is still
connecting (a broker down, retried for ``connect_timeout``) gives the start up, and
serve() closes the bus and returns, as after a signal later on. While it closes it logs
the deliveries it waits for (how many, which handler, which event, for how long) at once
and every :data:`PROGRESS_EVERY` seconds. With ``shutdown_timeout`` the wait is bounded:
at that deadline the deliveries still running are cancelled (a broker delivers their
events again: they were not acknowledged), none starts any more, and once the bus is
closed serve() raises ``TimeoutError``, so that the process ends, non-zero, before the
orchestrator's SIGKILL.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn
from urllib.parse import parse_qs, urlsplit

from ._blame import handler_name
from ._bus_logging import log_fields
from ._errors import ClosedError
from ._handlers import CUT_OFF
from ._redact import redact_url
from ._seconds import check_seconds
from .transports import MemoryTransport, Transport
from .transports.base import CONSUMER_FAILED, UNREACHABLE

if TYPE_CHECKING:
    from ._bus import EventBus

__all__ = ["in_progress", "serve", "where"]

logger = logging.getLogger("pepperpy.event.bus")

#: seconds between the log lines saying what a closing serve() still waits for
PROGRESS_EVERY = 5.0
#: deliveries named in such a line (the oldest); the rest are counted
_SHOWN = 5


class _Previous(NamedTuple):
    """What handled a signal before serve() took it over, to be put back."""

    sig: signal.Signals
    python: Any  # signal.getsignal(): a callable, SIG_DFL, SIG_IGN or None
    loop_callback: tuple[Callable[..., Any], tuple[Any, ...]] | None  # add_signal_handler's


async def serve(
    bus: EventBus, signals: Iterable[signal.Signals | int], shutdown_timeout: float | None
) -> None:
    """See :meth:`EventBus.serve`."""
    wanted = _check_signals(signals)
    if shutdown_timeout is not None:
        check_seconds(shutdown_timeout, "shutdown_timeout", zero=True)
    if bus._serving:
        raise RuntimeError("serve() is already running on this EventBus")
    if bus._closed:
        raise ClosedError(bus._closed_reason)
    bus._serving = True
    try:
        await _serve(bus, wanted, shutdown_timeout)
    finally:
        bus._serving = False


async def _serve(bus: EventBus, wanted: tuple[signal.Signals, ...], grace: float | None) -> None:
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[str] = loop.create_future()
    previous: list[_Previous] = []

    def stop(reason: str) -> None:
        _restore(loop, previous)  # a second signal acts as it would without serve()
        if not stopped.done():
            stopped.set_result(reason)

    def closing() -> None:
        stop("close() was called")

    bus._on_close.append(closing)
    at = where(bus.transport)
    try:
        try:
            # before start(): a signal while connecting gives the connection up
            until = _install(loop, wanted, stop, previous)
            if not await _start(bus, stopped):
                logger.info(
                    "EventBus on %s: %s while connecting; closing",
                    at,
                    stopped.result(),
                    extra=log_fields("serve_closing", transport=at),
                )
                await bus.close()
                logger.info(
                    "EventBus on %s: closed", at, extra=log_fields("serve_closed", transport=at)
                )
                return
            if bus._closed:  # closed while start() returned: nothing to wait for
                stop("close() was called")
            if grace is not None:
                until += f"; shutdown_timeout {grace:g} s"
            logger.info(
                "EventBus serving on %s: %s; until %s",
                at,
                _subscriptions(bus),
                until,
                extra=log_fields("serving", transport=at),
            )
            reason = await stopped
        finally:
            _restore(loop, previous)
    except asyncio.CancelledError:
        await _close(bus, at, "serve() cancelled", grace)
        raise
    finally:
        bus._on_close.remove(closing)
    await _close(bus, at, reason, grace)


async def _start(bus: EventBus, stopped: asyncio.Future[str]) -> bool:
    """Start the bus, unless ``stopped`` comes first: then give the start up, False.

    A start that fails closes what it opened (as ``async with`` does) and raises; so
    does one whose serve() is cancelled meanwhile.
    """
    starting = asyncio.ensure_future(bus.start())
    try:
        await asyncio.wait((starting, stopped), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        await _give_up(starting)
        await bus.close()
        raise
    if not starting.done():  # a signal, or close(), while connecting
        await _give_up(starting)
        return False
    try:
        starting.result()
    except ClosedError:
        raise
    except BaseException:  # a broker not reachable
        await bus.close()
        raise
    return True


async def _give_up(starting: asyncio.Future[None]) -> None:
    """Cancel ``starting`` and wait until it has ended, whatever it raised."""
    starting.cancel()
    await asyncio.wait((starting,))
    if not starting.cancelled():
        starting.exception()  # retrieved: a start that failed meanwhile is not logged


async def _close(bus: EventBus, at: str, reason: str, grace: float | None) -> None:
    """Close ``bus``, logging what it waits for; cancel it at ``grace`` (TimeoutError)."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    running = in_progress(bus, began)
    after = f"after the {running}" if bus._deliveries else f"({running})"
    try:
        ahead = bus.transport._read_ahead()
    except Exception:  # a count for the log must never stop the shutdown
        ahead = 0
    if ahead:
        after += (
            f"; {ahead} more event{'' if ahead == 1 else 's'} already read "
            f"{'is' if ahead == 1 else 'are'} handled before it closes"
        )
    logger.info(
        "EventBus on %s: %s; closing %s",
        at,
        reason,
        after,
        extra=log_fields("serve_closing", transport=at, in_progress=len(bus._deliveries)),
    )
    closing = asyncio.ensure_future(bus.close())
    deadline = None if grace is None else began + grace
    try:
        while True:
            wait = PROGRESS_EVERY
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - loop.time()))
            await asyncio.wait((closing,), timeout=wait)
            if closing.done():
                break
            now = loop.time()
            if grace is not None and deadline is not None and now >= deadline:
                await _cut_off(bus, at, closing, began, grace)
            left = "" if deadline is None else f"; shutdown_timeout in {deadline - now:.0f} s"
            logger.info(
                "EventBus on %s: still closing after %.0f s, waiting for %s%s",
                at,
                now - began,
                _waiting_for(bus, now),
                left,
                extra=log_fields(
                    "serve_closing",
                    transport=at,
                    closing_s=round(now - began, 1),
                    in_progress=len(bus._deliveries),
                ),
            )
    except asyncio.CancelledError:
        closing.cancel()  # the shutdown itself goes on (close() shields it)
        raise
    closing.result()
    took = loop.time() - began
    logger.info(
        "EventBus on %s: closed in %.1f s",
        at,
        took,
        extra=log_fields("serve_closed", transport=at, closing_s=round(took, 1)),
    )


async def _cut_off(
    bus: EventBus, at: str, closing: asyncio.Future[None], began: float, grace: float
) -> NoReturn:
    """Cancel the deliveries still in progress at ``shutdown_timeout``; raise TimeoutError."""
    loop = asyncio.get_running_loop()
    bus._cut_off = True  # no delivery starts from now on
    running = list(bus._deliveries)
    fate = (
        "memory:// loses their events"
        if isinstance(bus.transport, MemoryTransport)
        else "the broker delivers their events again (they were not acknowledged)"
    )
    logger.warning(
        "EventBus on %s: shutdown_timeout (%g s) passed; cancelling %s; %s",
        at,
        grace,
        in_progress(bus, loop.time(), "still in progress"),
        fate,
        extra=log_fields("shutdown_timeout", transport=at, in_progress=len(running)),
    )
    for delivery in running:
        if delivery.task is not None:
            delivery.task.cancel(CUT_OFF)
    await closing  # a handler that swallows its cancellation keeps it waiting
    logger.info(
        "EventBus on %s: closed in %.1f s; %s cancelled at shutdown_timeout",
        at,
        loop.time() - began,
        _deliveries(len(running)),
        extra=log_fields("serve_closed", transport=at, closing_s=round(loop.time() - began, 1)),
    )
    raise TimeoutError(
        f"EventBus.serve(): shutdown_timeout ({grace:g} s) passed with "
        f"{_deliveries(len(running))} in progress; they were cancelled and {fate}"
    )


def in_progress(bus: EventBus, now: float, state: str = "in progress") -> str:
    """The bus's deliveries in progress, for a log line: how many, which handler, which
    event, for how long (the first few, the oldest first)."""
    running = sorted(bus._deliveries, key=lambda delivery: delivery.began)
    if not running:
        return f"no delivery {state}"
    shown = ", ".join(
        f"{handler_name(d.registration.handler)} on {d.event.type} {d.event.id} "
        f"({now - d.began:.1f} s)"
        for d in running[:_SHOWN]
    )
    more = f" and {len(running) - _SHOWN} more" if len(running) > _SHOWN else ""
    return f"{_deliveries(len(running))} {state}: {shown}{more}"


def _waiting_for(bus: EventBus, now: float) -> str:
    """What a closing bus still waits for, for its progress line: the deliveries in
    progress, or, once they are done, the transport (its acks, leaving its groups,
    closing its connection), with how long its broker has been unreachable if it is."""
    if bus._deliveries:
        return in_progress(bus, now)
    waiting = (
        "the transport to close (the deliveries are done; acknowledging, leaving its "
        "groups and closing its connection need the broker)"
    )
    try:
        outage = bus.transport.outage()
        why = None if outage is None else bus.transport.outage_reason()
    except Exception:  # a transport's own report must not break the shutdown's log
        outage = why = None
    if outage is not None:
        if why is None or why[0] == UNREACHABLE:
            waiting += f"; the broker has been unreachable for {outage:.0f} s"
        elif why[0] == CONSUMER_FAILED:  # it answers: one of the transport's loops fails
            waiting += (
                "; the broker answers, but a consumer of the transport has been failing "
                f"for {outage:.0f} s ({why[0]}: {why[1]})"
            )
        else:  # it answers, and refuses: not a network outage
            waiting += f"; the broker has refused the connection for {outage:.0f} s ({why[0]})"
    return waiting


def _deliveries(count: int) -> str:
    return f"{count} delivery" if count == 1 else f"{count} deliveries"


#: signals no process can handle
_UNCATCHABLE = frozenset(
    getattr(signal, name) for name in ("SIGKILL", "SIGSTOP") if hasattr(signal, name)
)


def _check_signals(signals: object) -> tuple[signal.Signals, ...]:
    """``signals`` as a tuple of :class:`signal.Signals` (``TypeError``/``ValueError``)."""
    if isinstance(signals, int | str) or not isinstance(signals, Iterable):
        raise TypeError(
            f"signals must be an iterable of signals, got {signals!r}; "
            "write signals=(signal.SIGTERM,) for one"
        )
    checked = []
    for sig in signals:
        if not isinstance(sig, int) or isinstance(sig, bool):
            raise TypeError(f"signals must hold signal numbers, got {sig!r}")
        try:
            checked.append(signal.Signals(sig))
        except ValueError:
            raise ValueError(f"{sig!r} in signals is no signal of this platform") from None
        if checked[-1] in _UNCATCHABLE:
            # asyncio would refuse it later, and serve() then handled none of the others
            # either (a SIGTERM would end the process without the graceful close)
            raise ValueError(
                f"{checked[-1].name} in signals cannot be caught by any process; "
                "give the signals that ask for a graceful stop (SIGINT, SIGTERM)"
            )
    return tuple(dict.fromkeys(checked))


def _install(
    loop: asyncio.AbstractEventLoop,
    wanted: tuple[signal.Signals, ...],
    stop: Callable[[str], None],
    previous: list[_Previous],
) -> str:
    """Handle ``wanted`` with ``stop``; return what ends serve() now, for the log.

    A signal ignored when serve() begins (``SIG_IGN``: a background job of a shell, a
    supervisor's choice) stays ignored.
    """
    if not wanted:
        return "close() (signals=())"
    names = " or ".join(sig.name for sig in wanted)
    if threading.current_thread() is not threading.main_thread():
        return f"close() ({names} not handled: not the main thread)"
    ignored = [sig for sig in wanted if signal.getsignal(sig) is signal.SIG_IGN]
    handled = [sig for sig in wanted if sig not in ignored]
    for sig in handled:
        before = _Previous(sig, signal.getsignal(sig), _loop_handler(loop, sig))
        try:
            loop.add_signal_handler(sig, stop, f"{sig.name} received")
        except (NotImplementedError, RuntimeError, ValueError, OSError) as exc:
            _restore(loop, previous)  # all or none
            why = f"{type(loop).__name__} cannot: {exc}" if str(exc) else type(loop).__name__
            return f"close() ({names} not handled: {why})"
        previous.append(before)
    until = " or ".join(sig.name for sig in handled) + ", or close()" if handled else "close()"
    if ignored:
        names = " and ".join(sig.name for sig in ignored)
        verb = "is" if len(ignored) == 1 else "are"
        until += f"; {names} {verb} ignored in this process (it was started in the background)"
    return until


def _loop_handler(
    loop: asyncio.AbstractEventLoop, sig: signal.Signals
) -> tuple[Callable[..., Any], tuple[Any, ...]] | None:
    """The callback ``loop.add_signal_handler`` installed for ``sig`` (asyncio's own
    loops keep them in ``_signal_handlers``), to install it again afterwards."""
    handlers = getattr(loop, "_signal_handlers", None)
    handle = handlers.get(sig) if isinstance(handlers, dict) else None
    callback = getattr(handle, "_callback", None)
    if callback is None or getattr(handle, "_cancelled", False):
        return None
    return callback, tuple(getattr(handle, "_args", None) or ())


def _restore(loop: asyncio.AbstractEventLoop, previous: list[_Previous]) -> None:
    """Put back what handled each signal before serve(); idempotent."""
    while previous:
        sig, python, loop_callback = previous.pop()
        loop.remove_signal_handler(sig)
        if loop_callback is not None:
            callback, args = loop_callback
            loop.add_signal_handler(sig, callback, *args)
        elif python is not None:  # None: set outside Python, the default stays
            signal.signal(sig, python)


def _subscriptions(bus: EventBus) -> str:
    shown = [
        f"{sub.pattern} (group {sub.group})" if sub.group is not None else sub.pattern
        for sub in bus._subscriptions
    ]
    return ", ".join(shown) if shown else "no subscriptions (it receives nothing)"


def where(transport: Transport) -> str:
    """The transport, for the log: its kind and server, without passwords."""
    if isinstance(transport, MemoryTransport):
        return "memory://"
    name = type(transport).__name__
    url = getattr(transport, "url", None)
    server = redact_url(url) if isinstance(url, str) else getattr(transport, "server", None)
    parts = [server] if isinstance(server, str) else []
    in_url = parse_qs(urlsplit(server).query) if isinstance(server, str) else {}
    options = getattr(transport, "options", None)
    for label, value in (
        ("namespace", getattr(options, "namespace", None)),
        ("stream", getattr(options, "stream", None)),
        ("prefix", getattr(options, "prefix", None)),  # NATS: which subjects it sees
        ("exchange", getattr(transport, "exchange_name", None)),
    ):
        if isinstance(value, str) and in_url.get(label) != [value]:  # not twice
            parts.append(f"{label}={value}")
    return f"{name}({', '.join(parts)})" if parts else name
