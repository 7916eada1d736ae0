"""The handlers of a NotificationSystem, and the managers and buses it is attached to.

Each ``on`` handler is registered with the system's own manager (for ``emit``) and
subscribed on every attached manager and bus. A registration or an attach is all or
nothing: every subscription it needs is checked (access rights, declared topics, a
closed target) before any is made, and one that still fails undoes those made before
it, so a refused call leaves nothing behind and can simply be made again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from .._bus import EventBus
from .._errors import ClosedError
from .._event import Event
from .._handlers import check_handler
from .._manager import EventManager
from ._claims import in_context
from ._handler_failures import HandlerFailures

__all__ = ["Registration", "Subscriptions"]

logger = logging.getLogger("pepperpy.event.notifications")

Target = EventManager | EventBus


class Registration(NamedTuple):
    """One ``on``: the handler, and the wrappers that run it."""

    pattern: str
    handler: Callable[..., Any]
    wrapped: Callable[[Event], Any]  # what attached managers and buses run
    own: Callable[[Event], Any]  # what emit()'s manager runs (refused once closed)
    name: str  # what its consumer groups are named from (see handler_name)


class _Join(NamedTuple):
    """One subscription to make: ``handler`` on ``target`` for ``pattern``."""

    target: Target
    group: str | None
    pattern: str
    handler: Callable[..., Any]
    name: str  # the registration's name, for its consumer group


class Subscriptions:
    """The ``on`` registrations of a system and the targets it is attached to."""

    __slots__ = ("attached", "failures", "manager", "registrations")

    def __init__(self, manager: EventManager, failures: HandlerFailures) -> None:
        self.manager = manager  # runs the handlers for emit()
        self.failures = failures
        self.registrations: list[Registration] = []
        self.attached: list[tuple[Target, str | None]] = []

    def register(self, pattern: str, handler: Callable[..., Any]) -> None:
        """Run ``handler`` for ``pattern`` on emit() and on every attached target, or,
        if any of them refuses it, nowhere."""
        check_handler(handler)
        wrapped = in_context(handler)
        own = in_context(handler, refuse=self.failures.refuse)
        name = self._name(pattern, wrapped)
        joins = [_Join(self.manager, None, pattern, own, name)]
        joins += [_Join(target, group, pattern, wrapped, name) for target, group in self.attached]
        _join_all(joins)
        self.failures.add(own, handler)
        self.registrations.append(Registration(pattern, handler, wrapped, own, name))

    def _name(self, pattern: str, wrapped: Callable[..., Any]) -> str:
        """A name for a new registration under ``pattern`` (``wrapped``: its handler as
        :func:`in_context` wraps it, named as the handler), unique among this system's:
        the handler's module, qualified name and pattern, then ``#2``, ``#3``... for
        another handler of that name (two lambdas of one module, a method of two objects
        of one class) — in the order of registration, as every process running the same
        code registers them. One shared name put both in one consumer group, where each
        event reached only one of them."""
        base = f"{wrapped.__module__}.{wrapped.__qualname__}|{pattern}"
        taken = {each.name for each in self.registrations}
        name, number = base, 1
        while name in taken:
            number += 1
            name = f"{base}#{number}"
        return name

    def attach(self, target: Target, group: str | None) -> None:
        """Subscribe every handler on ``target``; kept as attached only if all were."""
        _join_all([_Join(target, group, r.pattern, r.wrapped, r.name) for r in self.registrations])
        self.attached.append((target, group))

    def is_attached(self, target: Target) -> bool:
        return any(existing is target for existing, _ in self.attached)

    async def off(self, pattern: str, handler: Callable[..., Any]) -> bool:
        """See :meth:`NotificationSystem.off`."""
        removed: list[Registration] = []
        kept: list[Registration] = []
        for each in self.registrations:
            chosen = each.pattern == pattern and each.handler == handler
            (removed if chosen else kept).append(each)
        if not removed:
            return False
        self.registrations = kept  # before any await: an attach() meanwhile skips them
        for registration in removed:
            await self.manager.off(registration.pattern, registration.own)
            for target, group in list(self.attached):
                await _unsubscribe(target, group, registration)
        return True

    def handlers(self, event_type: str) -> list[Callable[..., Any]]:
        """See :meth:`NotificationSystem.handlers`."""
        registered = {each.own: each.handler for each in self.registrations}
        return [registered[own] for own in self.manager.handlers(event_type)]

    async def detach(self, grace: float) -> None:
        """Leave every manager and bus ``attach`` joined (their handlers get nothing more)."""
        detaching = [
            _unsubscribe(target, group, each)
            for target, group in self.attached
            for each in self.registrations
        ]
        self.attached.clear()
        if detaching:
            try:
                async with asyncio.timeout(grace):
                    await asyncio.gather(*detaching)
            except TimeoutError:
                logger.warning("close(): leaving the attached buses took over %ss", grace)


def _join_all(joins: list[_Join]) -> None:
    """Make every subscription of ``joins``, or none.

    ``manager.on(pattern)`` and ``bus.subscribe(pattern, group=...)`` without a handler
    make every check (closed, access rights, declared topics, the caller's loop) and
    return the step that records it, so all are checked before any is made. Recording
    can still fail on a manager (its ``max_listeners``): those made are then removed
    again, at once (``manager.off`` removes before it is awaited). Buses are recorded
    last; recording on a bus checked already cannot fail.
    """
    steps = [(join, _checked(join)) for join in joins]
    steps.sort(key=lambda step: isinstance(step[0].target, EventBus))
    made: list[_Join] = []
    try:
        for join, record in steps:
            record(join.handler)
            made.append(join)
    except BaseException:
        for join in reversed(made):
            if isinstance(join.target, EventManager):
                join.target.off(join.pattern, join.handler)
        raise


def _checked(join: _Join) -> Callable[[Callable[..., Any]], Any]:
    if isinstance(join.target, EventManager):
        return join.target.on(join.pattern)
    group = bus_group(join.group, join.name)
    return join.target.subscribe(join.pattern, group=group)


def bus_group(group: str | None, name: str) -> str | None:
    """The consumer group of a registration (named ``name``) on a bus: one per
    registration, the same in every process running the same code."""
    if group is None:
        return None
    return f"{group}-{hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:12]}"


async def _unsubscribe(target: Target, group: str | None, registration: Registration) -> None:
    pattern, handler = registration.pattern, registration.wrapped
    if isinstance(target, EventManager):
        await target.off(pattern, handler)
        return
    with contextlib.suppress(ClosedError):  # a bus closed, or started on an ended loop
        await target.unsubscribe(pattern, handler, group=bus_group(group, registration.name))
