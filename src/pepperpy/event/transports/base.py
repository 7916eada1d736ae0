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
* ``publish_many(events, keys)`` publishes ``events[i]`` with ``keys[i]``, keeping each
  key's order, and returns once every event is accepted; if some could not be, it raises
  :class:`~pepperpy.event.BatchPublishError` saying which were stored. The default
  publishes concurrently (different keys and unkeyed events), one key at a time, in a
  bounded window; a transport may do better if it keeps those promises.
* ``sub.deliver(event)`` is called for each delivery. It returns normally when the event is
  done with (handled, or dead-lettered by the bus); if it raises, or the process dies
  before it returns, the transport must deliver the event again (at-least-once).
* ``sub.removed`` turns True the moment the bus starts removing ``sub`` (before
  ``unsubscribe(sub)`` is called, possibly from inside its own handler): from then on the
  transport starts no delivery to it. An event of a group it received but did not start
  must reach another member (left pending, requeued, nak'ed), never be lost or count as a
  delivery where that can be avoided; an ungrouped subscription's queued, unstarted events
  are dropped. ``sub.deliver`` raises :class:`NotDelivered` if called anyway.
* ``unsubscribe(sub)`` stops delivering to ``sub`` (registered before with ``subscribe``)
  and returns once its deliveries in progress have finished. A group member leaves the
  group, so the broker hands its share to the remaining members; the group itself (its
  queue, consumer group or durable consumer) stays for them.
* ``delete_group(sub)`` deletes what the broker keeps for the group ``sub`` names (its
  ``group`` and ``pattern``, with the ``name`` a subscription of that group gets):
  consumer groups, durable consumers, queues and exchanges, with the backlog they hold.
  ``sub`` is never registered; the bus calls it only while none of its own subscriptions
  is in that group. A group that does not exist is no error. A subscription of the group
  made afterwards starts it afresh: it gets only events published after it subscribed.
* ``delete_topology()`` (optional) deletes from the broker everything the transport made
  there (streams, consumer groups, queues, exchanges, leases), with the events they hold:
  for tests, examples and throw-away environments. It works after ``close()``, and a
  second call, or one with nothing to delete, is no error. Each shipped transport's page
  says what it covers; ``memory://`` has nothing to delete.
* ``close()`` stops consuming, waits for deliveries in progress, and releases resources.
  It never raises a driver error and bounds every wait for the broker (an unreachable
  one is simply not told); a second call returns at once.
* A lost connection interrupts no delivery in progress: the handler finishes, and if its
  acknowledgement cannot reach the broker any more, the event is delivered again.
* ``abandon()`` (synchronous) drops the connections of an event loop that has ended,
  without awaiting anything: the bus calls it instead of ``close()`` then.
* A transport serves one bus: ``EventBus`` refuses one that another bus was given.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._cancel import cancelled_by_caller, cancelling, resume_cancellation
from .._errors import SerializationError, TransportError
from .._event import Event
from .._text import shown
from ._batch import publish_concurrently

__all__ = [
    "NotDelivered",
    "Subscription",
    "Transport",
    "cancelled_by_caller",
    "cancelling",
    "resume_cancellation",
    "check_key",
    "quietly",
    "shutdown_sockets",
]

# Why a transport's broker is out of reach (``Transport.outage_reason``, ``BusHealth``):
# a small, stable vocabulary for probes and dashboards to tell apart.
#: the broker answered and refused the transport's credentials (user and password, token)
CREDENTIALS_REFUSED = "credentials refused"
#: the broker took the credentials but refused access (RabbitMQ: the virtual host, or an
#: exchange or queue the user may not declare)
ACCESS_REFUSED = "access refused"
#: a running transport's reconnections fail their TLS handshake for good (the server's
#: certificate is no longer trusted, one for another host, a client certificate refused):
#: no network outage, and no retry mends it
TLS_REFUSED = "tls refused"
#: anything else: the connection was lost, refused, reset, timed out or went silent
UNREACHABLE = "unreachable"
#: the broker answers, but a consumer of the transport's own ended unexpectedly (a bug,
#: a cancellation by another task): its subscriptions receive nothing until it restarts
CONSUMER_FAILED = "consumer failed"


class NotDelivered(Exception):  # noqa: N818 - a signal, not an error
    """``sub.deliver`` refused: the subscription is being removed; the event was not started."""


NotDelivered.__module__ = "pepperpy.event.transports"  # where docs/reference.md imports it


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
    _removal: list[bool] = field(default_factory=lambda: [False], repr=False)

    @property
    def removed(self) -> bool:
        """True once the bus began removing this subscription: start no more deliveries."""
        return self._removal[0]

    def mark_removed(self) -> None:
        self._removal[0] = True


class Transport(abc.ABC):
    """Moves events between a bus's publishers and its subscriptions."""

    #: True when events cross process boundaries (publish returns before handlers run)
    distributed: bool = True

    #: set by the :class:`~pepperpy.event.EventBus` given this transport: a transport
    #: serves one bus (its connections, consumers and subscription names are that bus's)
    _owned: bool = False

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

    async def publish_many(self, events: Sequence[Event], keys: Sequence[str | None]) -> None:
        """Publish ``events[i]`` with ``keys[i]``; return once all were accepted.

        Events with one key are published one after the other, in batch order, each
        once the previous one was accepted; different keys and unkeyed events go
        concurrently, at most 256 publishes in flight (Redis pipelines them, NATS and
        RabbitMQ await their acks together). Once a publish fails no other starts; those
        in flight finish, then :class:`~pepperpy.event.BatchPublishError` says which
        events were stored (``outcomes``). A transport may override it (``memory://``
        publishes one event after the other, so handlers run in batch order).
        """
        await publish_concurrently(self, events, keys)

    @abc.abstractmethod
    async def subscribe(self, subscription: Subscription) -> None:
        """Register ``subscription`` and start delivering to it."""

    async def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to ``subscription``; return once its deliveries in progress end.

        A member of a group leaves it (the remaining members get its share); what the
        group keeps on the broker is left for them. Every shipped transport implements
        it; a custom transport that does not cannot have subscriptions removed.
        """
        raise TransportError(f"{type(self).__name__} does not implement unsubscribe()")

    async def delete_group(self, subscription: Subscription) -> None:
        """Delete the group ``subscription`` names, and its backlog, from the broker.

        ``subscription`` is never registered: its ``group``, ``pattern`` and ``name`` (as
        ``subscribe`` would get them) name the group. Returns normally when there is no
        such group. Members in other processes are not asked: each shipped transport's
        page says what becomes of them. A custom transport that does not implement it
        cannot retire groups.
        """
        raise TransportError(f"{type(self).__name__} does not implement delete_group()")

    async def delete_topology(self) -> None:
        """Delete from the broker everything this transport made there, events included.

        For tests, examples and throw-away environments: what goes is each shipped
        transport's (its page says; ``memory://`` keeps nothing outside the process).
        Works after :meth:`close`; a second call, or one with nothing to delete, is no
        error. A custom transport that does not implement it raises
        :class:`~pepperpy.event.TransportError`.
        """
        raise TransportError(f"{type(self).__name__} does not implement delete_topology()")

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop consuming, finish deliveries in progress, release connections."""

    def outage(self) -> float | None:
        """Seconds since this transport found its broker unreachable, or None while it
        is reachable as far as the transport knows (from its own connections' failures
        and successes; nothing is sent to ask). For :meth:`EventBus.health`; the
        default, for a transport that does not track it, is None.
        """
        return None

    def outage_reason(self) -> tuple[str, str] | None:
        """Why the broker is out of reach while :meth:`outage` is not None: a short,
        stable reason (``"credentials refused"``, ``"access refused"``, ``"tls refused"``,
        ``"unreachable"`` or ``"consumer failed"``: the broker answers, but a consumer of
        the transport's own keeps failing) and a message for a person, without passwords
        (what the broker or the network said, from the latest failure). None while
        reachable, and by default, for a transport that does not tell.
        """
        return None

    def _read_ahead(self) -> int:
        """Events this transport read from its broker ahead of their handlers, which
        :meth:`close` still delivers: what ``serve()``'s shutdown line adds to the
        deliveries in progress. Private, for the bus's log; 0 by default."""
        return 0

    def abandon(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Drop the connections of the event loop this transport started on, which ended.

        Called by the bus, instead of :meth:`close`, when it is closed from another loop
        after its own ended: nothing of the old loop can be awaited any more. Best effort
        and synchronous; shutting the sockets lets the broker see the consumers go (and
        hand their unacknowledged events to other members) at once.
        """


def check_key(key: str) -> None:
    """Refuse a partition key no transport can carry (it travels as text in the event's
    metadata): not a str (``TypeError``), or not valid UTF-8 (``SerializationError``)."""
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {type(key).__name__}")
    if key.isascii():
        return
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SerializationError(
            f"key {shown(key)} contains a lone surrogate ({key[exc.start]!r}), which is not "
            "valid UTF-8: no transport can carry it"
        ) from None


def shutdown_sockets(writers: Iterable[Any]) -> None:
    """Shut down the sockets under asyncio ``StreamWriter``s whose event loop has ended.

    Their loop cannot run ``close()`` any more; shutting the socket down still tells the
    peer the connection is gone, and closing it gives its file descriptor back now rather
    than when the garbage collector finds the transport (a process that runs many event
    loops would otherwise hold one per connection). asyncio hands out only a wrapper
    without ``close()``; the socket itself is the selector transport's ``_sock``, looked up
    defensively (nothing else can use it: its loop is closed).
    """
    for writer in writers:
        transport = getattr(writer, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        raw = getattr(transport, "_sock", None)
        if isinstance(raw, socket.socket):
            with contextlib.suppress(OSError):
                raw.close()


async def quietly(
    operation: Awaitable[Any], what: str, logger: logging.Logger, *, deadline: float | None
) -> bool:
    """Await a broker call that a shutdown must not hang on or fail by; True if it completed.

    Gives up at ``deadline`` (event loop time, ``loop.time()``; None: no bound) and
    swallows whatever the driver raises, a dead connection's ``CancelledError`` included,
    logging it at debug level; only the caller's own cancellation propagates: one that
    came while it waited (it runs in cleanup code too, in a task already cancelled).
    """
    since = cancelling()
    try:
        async with asyncio.timeout_at(deadline):
            await operation
        return True
    except asyncio.CancelledError:
        if cancelled_by_caller(since):
            raise
        logger.debug("%s: the connection was lost", what)
    except Exception as exc:
        logger.debug("%s failed: %r", what, exc)
    return False
