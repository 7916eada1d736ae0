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
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from ._errors import ClosedError
from ._redact import redact_url
from .transports import MemoryTransport, Transport

if TYPE_CHECKING:
    from ._bus import EventBus

__all__ = ["serve"]

logger = logging.getLogger("pepperpy.event.bus")


class _Previous(NamedTuple):
    """What handled a signal before serve() took it over, to be put back."""

    sig: signal.Signals
    python: Any  # signal.getsignal(): a callable, SIG_DFL, SIG_IGN or None
    loop_callback: tuple[Callable[..., Any], tuple[Any, ...]] | None  # add_signal_handler's


async def serve(bus: EventBus, signals: Iterable[signal.Signals | int]) -> None:
    """See :meth:`EventBus.serve`."""
    wanted = _check_signals(signals)
    if bus._serving:
        raise RuntimeError("serve() is already running on this EventBus")
    if bus._closed:
        raise ClosedError(bus._closed_reason)
    bus._serving = True
    try:
        await _serve(bus, wanted)
    finally:
        bus._serving = False


async def _serve(bus: EventBus, wanted: tuple[signal.Signals, ...]) -> None:
    try:
        await bus.start()
    except ClosedError:
        raise
    except BaseException:  # a broker not reachable, or serve() cancelled meanwhile
        await bus.close()  # what start() opened, as ``async with`` does
        raise
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
    where = _where(bus.transport)
    try:
        if bus._closed:  # closed while start() returned: nothing to wait for
            stop("close() was called")
        until = _install(loop, wanted, stop, previous)
        logger.info("EventBus serving on %s: %s; until %s", where, _subscriptions(bus), until)
        try:
            reason = await stopped
        finally:
            _restore(loop, previous)
    except asyncio.CancelledError:
        logger.info(
            "EventBus on %s: serve() cancelled; closing after the events in progress", where
        )
        await bus.close()
        raise
    finally:
        bus._on_close.remove(closing)
    logger.info("EventBus on %s: %s; closing after the events in progress", where, reason)
    await bus.close()
    logger.info("EventBus on %s: closed", where)


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
        until += f" ({' and '.join(sig.name for sig in ignored)} ignored, as before serve())"
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


def _where(transport: Transport) -> str:
    """The transport, for the log: its kind and server, without passwords."""
    if isinstance(transport, MemoryTransport):
        return "memory://"
    name = type(transport).__name__
    url = getattr(transport, "url", None)
    server = redact_url(url) if isinstance(url, str) else getattr(transport, "server", None)
    parts = [server] if isinstance(server, str) else []
    options = getattr(transport, "options", None)
    for label, value in (
        ("namespace", getattr(options, "namespace", None)),
        ("stream", getattr(options, "stream", None)),
        ("exchange", getattr(transport, "exchange_name", None)),
    ):
        if isinstance(value, str):
            parts.append(f"{label}={value}")
    return f"{name}({', '.join(parts)})" if parts else name
