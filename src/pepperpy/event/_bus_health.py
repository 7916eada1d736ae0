"""What :meth:`EventBus.health` reports: a snapshot of one bus, for a readiness or
liveness check.

It asks nothing of the broker: it reads the state the bus and its transport already
keep (whether the bus runs, whether the transport's connections currently fail, the
handler calls in progress), so a probe can call it every second at no cost, from the
bus's loop or from another thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ._bus import EventBus

__all__ = ["BusHealth", "health"]

BusState = Literal["new", "starting", "running", "closing", "closed"]


@dataclass(frozen=True, slots=True)
class BusHealth:
    """A snapshot of an :class:`EventBus`, from :meth:`EventBus.health`.

    ``state``: ``"new"`` (not started), ``"starting"`` (connecting, registering its
    subscriptions), ``"running"``, ``"closing"`` (finishing the deliveries in progress)
    or ``"closed"``. ``outage``: seconds since the transport found its broker
    unreachable, None while it is reachable as far as the transport knows (it learns
    from its own connections, so a publish-only bus on Redis notices an outage at its
    next publish); always None on ``memory://``. ``subscriptions``: handlers registered
    with the broker; ``unregistered``: subscriptions not registered yet (added to a
    running bus a moment ago, or whose registration failed: ``start()`` raises why;
    one the transport refused with ``ConfigurationError`` is removed, not counted).
    ``in_progress``: handler calls running now; ``longest_in_progress``: seconds the
    oldest of them has run (None if none), to spot a handler that hangs.
    ``dead_letters``: events this bus dead-lettered since it was made (its handlers
    failed them after the retries; ``EventBus.dead_letters`` keeps the latest ones).
    ``outage_reason``: why the broker is out of reach while ``outage`` is not None,
    from the transport's latest failure: ``"credentials refused"`` (the broker answered
    and refused the user and password or token), ``"access refused"`` (RabbitMQ: the
    virtual host), ``"unreachable"`` (the connection lost, refused, timed out or
    silent) or ``"consumer failed"`` (Redis: the broker answers, but a consumer of the
    transport's own keeps failing or ended unexpectedly: the shared reader of the
    ungrouped subscriptions, a group's lease heartbeat or partition worker, a catch-up;
    ``outage`` counts from then, so ``ready`` is False until it runs again); None while
    reachable, or from a transport that does not say.
    ``outage_message``: the same for a person (the server, without its password, and
    what the broker or the network said).
    """

    state: BusState
    transport: str
    outage: float | None
    subscriptions: int
    unregistered: int
    in_progress: int
    longest_in_progress: float | None
    dead_letters: int
    outage_reason: str | None = None
    outage_message: str | None = None

    @property
    def ready(self) -> bool:
        """Running, its broker reachable and every subscription registered."""
        return self.state == "running" and self.outage is None and not self.unregistered


def health(bus: EventBus) -> BusHealth:
    """See :meth:`EventBus.health`."""
    from ._bus_serve import where

    if bus._closed:
        closing = bus._closing
        state: BusState = "closing" if closing is not None and not closing.done() else "closed"
    elif bus._started:
        state = "running"
    elif bus._start_lock is not None and bus._start_lock.locked():
        state = "starting"
    else:
        state = "new"
    # tuple() copies the set in one step under the GIL: a probe's thread (an HTTP
    # server's) may ask while the bus's loop adds and removes deliveries
    running = [d for d in tuple(bus._deliveries) if d.active]
    longest = None
    if running:  # loop.time() is time.monotonic(): the same clock from any thread
        longest = max(0.0, time.monotonic() - min(d.began for d in running))
    unregistered = len(bus._unregistered)
    outage = bus.transport.outage() if state in ("running", "closing") else None
    why = bus.transport.outage_reason() if outage is not None else None
    return BusHealth(
        state=state,
        transport=where(bus.transport),
        outage=outage,
        subscriptions=len(bus._subscriptions) - unregistered,
        unregistered=unregistered,
        in_progress=len(running),
        longest_in_progress=longest,
        dead_letters=bus._dead_letter_count,
        outage_reason=None if why is None else why[0],
        outage_message=None if why is None else why[1],
    )
