"""The transport contract: the whole of what a bus backend must implement.

A transport moves events between publishers and subscriptions. Everything else the bus
promises (pattern checks, retries, dead letters, CloudEvents on the wire, groups) is
built once in :class:`~pepperpy.event.EventBus` on top of these few methods.

Contract, checked by the bus conformance suite (``tests/bus/conformance.py``):

* ``subscribe(sub)`` registers ``sub`` so that every event published afterwards whose
  topic matches ``sub.pattern`` reaches it, and returns only once that holds (on a broker:
  once the queue/consumer exists). Subscriptions with the same ``group`` *and* pattern
  share work: each event goes to one of them. Ungrouped subscriptions get every event.
* ``publish(event, key=...)`` returns once the event is durably accepted (on ``memory://``:
  once matching subscriptions have handled it). Events with the same ``key`` reach a
  group in publish order.
* ``sub.deliver(event)`` is called for each delivery. It returns normally when the event is
  done with (handled, or dead-lettered by the bus); if it raises, or the process dies
  before it returns, the transport must deliver the event again (at-least-once).
* ``close()`` stops consuming, waits for deliveries in progress, and releases resources.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .._event import Event

__all__ = ["Subscription", "Transport"]


@dataclass(frozen=True, eq=False)
class Subscription:
    """One registration of a handler with a transport.

    ``name`` is unique per subscription within a bus and stable across restarts of the
    same program (derived from group, pattern and handler), so brokers can use it for
    durable consumers.
    """

    pattern: str
    deliver: Callable[[Event], Awaitable[None]]
    group: str | None = None
    name: str = field(default="")


class Transport(abc.ABC):
    """Moves events between a bus's publishers and its subscriptions."""

    #: True when events cross process boundaries (publish returns before handlers run)
    distributed: bool = True

    async def start(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Connect to the broker. Called once by the bus before any other method."""

    def check_pattern(self, pattern: str) -> None:  # noqa: B027 - optional hook
        """Refuse (:class:`PatternError`) a valid pattern this broker cannot subscribe to.

        Called by ``EventBus.subscribe`` before anything is registered, so such a pattern
        fails where it is written, not later inside ``start()`` or ``publish()``.
        """

    @abc.abstractmethod
    async def publish(self, event: Event, *, key: str | None = None) -> None:
        """Hand ``event`` (whose ``type`` is its topic) to the broker."""

    @abc.abstractmethod
    async def subscribe(self, subscription: Subscription) -> None:
        """Register ``subscription`` and start delivering to it."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop consuming, finish deliveries in progress, release connections."""
