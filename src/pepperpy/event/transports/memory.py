"""The in-process transport: ``publish`` returns after local subscribers ran."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import logging
from collections.abc import Sequence
from typing import Any

from .._event import Event, json_native
from .._handlers import cut_off, outcomes, start
from .._patterns import PatternIndex
from ._batch import batch_error
from .base import NotDelivered, Subscription, Transport

__all__ = ["MemoryTransport"]

logger = logging.getLogger("pepperpy.event.transports.memory")

#: set inside a keyed delivery (and so in every task its handler starts, which copy the
#: context): a publish made there does not wait for keyed deliveries queued behind others
_in_keyed_delivery: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "pepperpy_memory_keyed_delivery", default=False
)


class _Group:
    __slots__ = ("ident", "key", "members", "turn")

    def __init__(self, ident: tuple[str, str]) -> None:
        self.ident = ident  # (group, pattern): what the group is, across its lives here
        self.members: list[Subscription] = []
        self.turn = itertools.count()
        self.key = 0  # its key in the pattern index

    def next_member(self) -> Subscription | None:
        """The next member in turn that is not being removed; None if all are."""
        members = self.members
        for _ in range(len(members)):
            sub = members[next(self.turn) % len(members)]
            if not sub.removed:
                return sub
        return None


#: what a keyed delivery's order is kept for: an ungrouped subscription, or a group's ident
_Chain = Subscription | tuple[str, str]


class MemoryTransport(Transport):
    """Delivers in-process. Groups share work round-robin; publish waits for handlers.

    It is a full transport, not a test double: use it for single-process applications
    and in tests of code that will later run on a broker, so it delivers what a broker
    delivers. Subscribers get the published event itself, or, when its data or metadata
    holds values JSON does not carry as they are (datetime, Decimal, UUID, bytes, enum
    members), the event as a broker would deliver it: decoded from its JSON form; an
    event read from a store arrives without its store fields (``stream``, ``position``,
    ...); what no broker can encode (a lone surrogate) is refused with
    :class:`~pepperpy.event.SerializationError`. Events published with a ``key`` reach
    each subscription or group one at a time, in publish order, as on a broker.
    """

    distributed = False

    def __init__(self) -> None:
        self._index: PatternIndex[Subscription | _Group] = PatternIndex()
        self._groups: dict[tuple[str, str], _Group] = {}
        self._keys: dict[Subscription, int] = {}  # ungrouped subscription -> its index key
        self._in_progress: set[asyncio.Future[Any]] = set()
        #: (subscription or group's ident, key) -> the turn of the last delivery of that
        #: key to it: done once that delivery and every earlier one of the key are done.
        #: A group by its ident: one left by its last member and joined again here is the
        #: same group, as on a broker, and its key order goes on
        self._tails: dict[tuple[_Chain, str], asyncio.Future[None]] = {}
        self._closed = False

    async def publish(self, event: Event, *, key: str | None = None) -> None:
        # checked whether or not anyone subscribed, as a broker encodes every event
        if json_native(event.data) and json_native(event.metadata):
            wire = None
        else:  # what a broker refuses (SerializationError), refused here too
            wire = event.to_json()
        targets = self._index.match(event.type)
        if not targets:
            return
        if wire is not None:
            # what a broker's subscriber would get: datetimes, Decimals, UUIDs and bytes
            # as their JSON form, so code tested on memory:// behaves alike on a broker
            event = Event.from_json(wire)
        elif event._extra is not None and event._extra[2] is not None:
            event = event.replace()  # read from a store: no stream or positions on a wire
        # each delivery in a Task of its own, so a handler's asyncio.timeout, TaskGroup or
        # context variables never touch the publisher (docs/bus.md, "How handlers run")
        running: list[asyncio.Task[Any]] = []
        if key is None:
            running.extend(start(self._deliver(target, event)) for target in targets)
        else:
            self._start_keyed(targets, event, key, running)
        self._in_progress.update(running)
        try:
            failures = await outcomes(running)
        finally:
            self._in_progress.difference_update(running)
        for failure in failures:
            # the bus turned Exceptions into retries/dead letters; serve() logs its cut-off
            if failure is not None and not cut_off(failure):
                logger.error("delivery of %s (%s) failed", event.type, event.id, exc_info=failure)

    async def publish_many(self, events: Sequence[Event], keys: Sequence[str | None]) -> None:
        """Publish one event after the other, as a loop of ``publish`` would: each
        returns after the local subscribers ran, so handlers see the batch in order."""
        if len(events) != len(keys):
            raise ValueError(f"{len(events)} events but {len(keys)} keys: give one key per event")
        for index, (event, key) in enumerate(zip(events, keys, strict=True)):
            try:
                await self.publish(event, key=key)
            except Exception as exc:  # nothing after it was published
                stored: Sequence[bool | None] = [True] * index + [False] * (len(events) - index)
                raise batch_error(events, stored, {index: exc}) from exc

    def _start_keyed(
        self,
        targets: tuple[Subscription | _Group, ...],
        event: Event,
        key: str,
        running: list[asyncio.Task[Any]],
    ) -> None:
        """Start one delivery per target, each after the last one of ``key`` to it.

        ``running`` gets the deliveries ``publish`` waits for: all of them, except, when
        publishing from inside a keyed delivery, those queued behind another one. Waiting
        there could wait for the publisher itself (a handler publishing with its own key
        to its own subscription), or for a delivery that waits for it: those run after
        their predecessors, as on a broker, while ``publish`` returns.
        """
        detach = _in_keyed_delivery.get()
        loop = asyncio.get_running_loop()
        for target in targets:
            chain = (target.ident if isinstance(target, _Group) else target, key)
            previous = self._tails.get(chain)
            if previous is not None and previous.done():
                previous = None
            task = start(self._deliver_keyed(target, event, previous))
            # the next one of the key waits for this turn, not for the task: a task
            # cancelled while waiting for its predecessor (its publish was cancelled) is
            # done at once, and the next must still wait for that predecessor
            turn: asyncio.Future[None] = loop.create_future()
            task.add_done_callback(functools.partial(_turn_over, turn, previous))
            self._tails[chain] = turn
            turn.add_done_callback(functools.partial(self._chain_moved, chain))
            if previous is not None and detach:
                self._in_progress.add(task)  # close() waits for it
                task.add_done_callback(functools.partial(self._detached_done, event))
            else:
                running.append(task)

    async def _deliver_keyed(
        self, target: Subscription | _Group, event: Event, previous: asyncio.Future[None] | None
    ) -> None:
        _in_keyed_delivery.set(True)  # this task's own context copy
        if previous is not None:
            await asyncio.wait((previous,))  # its outcome is its own publisher's business
        await self._deliver(target, event)

    async def _deliver(self, target: Subscription | _Group, event: Event) -> None:
        """Deliver ``event`` to ``target``: a subscription, or a group's next member.

        The member is chosen when the delivery starts, not when ``publish`` was called:
        one that began leaving the group meanwhile gets nothing, and the event goes to
        another member (docs/bus.md, "unsubscribe"). An ungrouped subscription being
        removed drops what it had not started, as on a broker; so does every
        subscription once ``serve()``'s ``shutdown_timeout`` has passed. Neither is a
        failure to log.
        """
        while True:
            sub = target.next_member() if isinstance(target, _Group) else target
            if sub is None or sub.removed:
                return
            try:
                await sub.deliver(event)
            except NotDelivered:
                # refused before its handler started: a member that began leaving right
                # now gets nothing and the next one is asked; anything else drops it
                if isinstance(target, _Group) and sub.removed:
                    continue
                logger.debug("%s (%s) not delivered to %s", event.type, event.id, sub.name)
            return

    def _chain_moved(self, chain: tuple[_Chain, str], done: asyncio.Future[None]) -> None:
        if self._tails.get(chain) is done:
            del self._tails[chain]

    def _detached_done(self, event: Event, task: asyncio.Task[Any]) -> None:
        self._in_progress.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "delivery of %s (%s) failed", event.type, event.id, exc_info=task.exception()
            )

    async def subscribe(self, subscription: Subscription) -> None:
        if subscription.group is None:
            self._keys[subscription] = self._index.add(subscription.pattern, subscription)
            return
        group_key = (subscription.group, subscription.pattern)
        group = self._groups.get(group_key)
        if group is None:
            group = self._groups[group_key] = _Group(group_key)
            group.key = self._index.add(subscription.pattern, group)
        group.members.append(subscription)

    async def unsubscribe(self, subscription: Subscription) -> None:
        """Deliver nothing more to ``subscription``; a group's next events go to the others.

        Deliveries already started finish in their publisher's ``publish`` call.
        """
        if subscription.group is None:
            key = self._keys.pop(subscription, None)
            if key is not None:
                self._index.remove(subscription.pattern, key)
            return
        group_key = (subscription.group, subscription.pattern)
        group = self._groups.get(group_key)
        if group is None or subscription not in group.members:
            return
        group.members.remove(subscription)
        if not group.members:
            del self._groups[group_key]
            self._index.remove(subscription.pattern, group.key)

    async def delete_group(self, subscription: Subscription) -> None:
        """Forget the group: its members get nothing more. A group with no member holds
        nothing here (events published while it had none reached nobody)."""
        group_key = (subscription.group or "", subscription.pattern)
        group = self._groups.pop(group_key, None)
        if group is None:
            return
        self._index.remove(subscription.pattern, group.key)

    async def delete_topology(self) -> None:
        """Nothing to delete: ``memory://`` keeps nothing outside the process (a no-op)."""

    def abandon(self) -> None:
        self._in_progress.clear()  # tasks of a loop that ended: nothing to wait for
        self._tails.clear()

    async def close(self) -> None:
        self._closed = True
        while self._in_progress:
            await asyncio.wait(list(self._in_progress))


def _turn_over(
    turn: asyncio.Future[None], previous: asyncio.Future[None] | None, _: asyncio.Future[Any]
) -> None:
    """A keyed delivery is done: its turn is over once its predecessor's is too."""
    if previous is None or previous.done():
        if not turn.done():
            turn.set_result(None)
    else:
        previous.add_done_callback(functools.partial(_turn_over, turn, None))
