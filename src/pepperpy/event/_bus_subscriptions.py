"""EventBus subscriptions after their checks: broker names, late registration, removal.

What becomes of a subscription once ``EventBus.subscribe()`` has checked it: the name
the broker knows it by, its registration when the bus has already started,
``unsubscribe()`` (at once for deliveries, then with the broker, then waiting for the
deliveries in progress) and ``delete_group()``. Kept apart from ``_bus.py``, which holds
the public methods and their docstrings: this is the bookkeeping behind them, on the
bus's ``_subscriptions``, ``_unregistered``, ``_registrations`` and ``_removing``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._bus_delivery import delivering
from ._errors import ClosedError, ConfigurationError
from ._event import Event
from ._handlers import Handler
from ._patterns import parse_pattern, plain_name
from ._text import shown, text_problem
from .transports import Subscription
from .transports.base import NotDelivered

if TYPE_CHECKING:
    from ._bus import EventBus

__all__ = [
    "check_group",
    "delete_group",
    "refused",
    "register_late",
    "subscription_name",
    "unsubscribe",
]

logger = logging.getLogger("pepperpy.event.bus")


def subscription_name(bus: EventBus, pattern: str, group: str | None, handler: Handler) -> str:
    """The name a new subscription has on the broker: a group's, or the handler's."""
    if group is not None:
        base = f"{group}|{pattern}"
    else:
        qualname = getattr(handler, "__qualname__", type(handler).__qualname__)
        module = getattr(handler, "__module__", "")
        base = f"{module}.{qualname}|{pattern}"
    digest = _digest(base)
    # counted over the bus's life, not over the subscriptions left: a name that an
    # unsubscribed handler had is never given to another one (brokers may still hold
    # its queue or consumer)
    same = bus._name_counts.get(digest, 0)
    bus._name_counts[digest] = same + 1
    suffix = f"-{same}" if same and group is None else ""
    return digest + suffix


def register_late(bus: EventBus) -> None:
    """Register subscriptions added after start() without waiting for a publish."""
    if bus._registering is not None and not bus._registering.done():
        return  # the running registration drains every subscription added meanwhile
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop (subscribe from a sync context): the next await does it
        return
    bus._registering = loop.create_task(_register_pending(bus))


def refused(bus: EventBus, sub: Subscription, error: Exception) -> None:
    """Remove ``sub``, whose registration the transport refused with ``error`` (a
    ``ConfigurationError``: the group's settings differ from the broker's, say).

    Unlike a broker out of reach, a refusal would come again at every ``start()``; kept,
    the subscription also made ``delete_group()`` of its group refuse ("this bus has a
    subscription in it"), and a corrected ``subscribe()`` of the group was never reached.
    It goes as ``unsubscribe()`` would have it go; the error says so.
    """
    if sub in bus._unregistered:
        bus._unregistered.remove(sub)
    if sub in bus._subscriptions:
        bus._subscriptions.remove(sub)
    registration = bus._registrations.pop(sub, None)
    if registration is not None:
        registration.remove()
    sub.mark_removed()
    group = "" if sub.group is None else f" in group {sub.group!r}"
    handler = "?" if registration is None else _shown_handler(registration.handler)
    error.add_note(
        f"the subscription of {handler} to {sub.pattern!r}{group} was removed from the "
        "bus: subscribe it again once this is resolved"
    )


def _shown_handler(handler: Handler) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)


async def _register_pending(bus: EventBus) -> None:
    try:
        await bus.start()
    except ClosedError:
        pass
    except ConfigurationError:  # refused: the subscription was removed (see refused())
        logger.exception("a subscription added after start() was refused and removed")
    except Exception:
        logger.exception(
            "could not register a subscription added after start(); "
            "the next start() or publish() raises this again"
        )


async def unsubscribe(
    bus: EventBus, pattern: str, handler: Callable[..., Any], group: str | None
) -> bool:
    """See :meth:`EventBus.unsubscribe`."""
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a str, got {type(pattern).__name__}")
    pattern, group = plain_name(pattern), plain_name(group)
    if not bus._closed:
        bus._check_loop()  # before removing anything: refused means nothing changed
    removed = [
        sub
        for sub in bus._subscriptions
        if sub.pattern == pattern
        and sub.group == group
        and bus._registrations[sub].handler == handler
    ]
    if not removed:
        return False
    for sub in removed:  # at once: no delivery starts from here on, even before the
        bus._subscriptions.remove(sub)  # transport hears of it (see deliver)
        bus._registrations[sub].remove()
        sub.mark_removed()
    if bus._closed:  # the broker side went (or goes) with close()
        for sub in removed:
            _forget(bus, sub)
        return True
    # from the handler being removed, or from a handler its publish waits for (memory://)
    if delivering(bus, [bus._registrations[sub] for sub in removed]):
        task = asyncio.get_running_loop().create_task(_remove(bus, removed))
        bus._removing.add(task)
        task.add_done_callback(functools.partial(_removed, bus))
        return True
    await _remove(bus, removed)
    return True


async def _remove(bus: EventBus, subs: list[Subscription]) -> None:
    if bus._start_lock is None:
        bus._start_lock = asyncio.Lock()
    try:
        async with bus._start_lock:  # a registration under way finishes first
            for sub in subs:
                if sub in bus._unregistered:
                    bus._unregistered.remove(sub)
                elif bus._started and not bus._closed:
                    await _register_successors(bus, sub)
                    await bus.transport.unsubscribe(sub)
        for sub in subs:
            await bus._registrations[sub].wait_idle()
    finally:
        for sub in subs:
            _forget(bus, sub)


async def _register_successors(bus: EventBus, leaving: Subscription) -> None:
    """Register the members of ``leaving``'s group not registered yet, before it leaves
    (call with the start lock): what it had not started goes to them, and on
    ``memory://`` the group is not left empty and forgotten meanwhile. One that fails
    stays unregistered, for the next ``start()`` or ``publish()`` to raise."""
    if leaving.group is None:
        return
    for sub in list(bus._unregistered):
        if sub.group != leaving.group or sub.pattern != leaving.pattern or sub.removed:
            continue
        try:
            await bus.transport.subscribe(sub)
        except Exception:
            logger.debug("registering %s before a member left failed", sub.name, exc_info=True)
            continue
        if sub in bus._unregistered:
            bus._unregistered.remove(sub)


def _forget(bus: EventBus, sub: Subscription) -> None:
    bus._registrations.pop(sub, None)
    if sub in bus._unregistered:
        bus._unregistered.remove(sub)


def _removed(bus: EventBus, task: asyncio.Task[None]) -> None:
    bus._removing.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("unsubscribing failed", exc_info=task.exception())


async def delete_group(bus: EventBus, pattern: str, group: str) -> None:
    """See :meth:`EventBus.delete_group`."""
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a str, got {type(pattern).__name__}")
    pattern = plain_name(pattern)
    parse_pattern(pattern)
    bus.transport.check_pattern(pattern)
    check_group(group)
    group = plain_name(group)  # named on the broker as subscribe() names it
    if bus.access is not None:
        await bus.access.acheck("delete", pattern)
    _check_not_in(bus, pattern, group)
    await bus.start()
    assert bus._start_lock is not None
    async with bus._start_lock:  # no registration runs meanwhile
        if bus._closed:
            raise ClosedError(bus._closed_reason)
        _check_not_in(bus, pattern, group)
        name = _digest(f"{group}|{pattern}")  # what subscription_name gives a group
        await bus.transport.delete_group(Subscription(pattern, _refuse, group, name))


def _check_not_in(bus: EventBus, pattern: str, group: str) -> None:
    """Refuse to delete a group one of this bus's subscriptions is in (or leaving)."""
    for sub, registration in bus._registrations.items():
        if sub.group == group and sub.pattern == pattern:
            shown_handler = _shown_handler(registration.handler)
            leaving = " (being unsubscribed)" if sub.removed else ""
            raise ConfigurationError(
                f"cannot delete group {group!r} on {pattern!r}: this bus has a "
                f"subscription in it{leaving}, handler {shown_handler}; unsubscribe it "
                "(and wait for unsubscribe() to return) before deleting the group"
            )


def check_group(group: object, *, optional: bool = False) -> None:
    """Refuse a group name no broker can carry (``ValueError``; ``TypeError`` for a
    group that is no str)."""
    if not isinstance(group, str) or not group:
        alternative = " or None" if optional else ""
        message = f"group must be a non-empty str{alternative}, got {group!r}"
        raise TypeError(message) if not isinstance(group, str) else ValueError(message)
    problem = text_problem(group)
    if problem is not None:  # a lone surrogate no broker can carry, a NUL, too long
        raise ValueError(f"group {shown(group)} {problem}")


async def _refuse(event: Event) -> None:
    """The ``deliver`` of a subscription that only names a group (see delete_group)."""
    raise NotDelivered


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]
