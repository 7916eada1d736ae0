"""Driving a follower through faults of its state store, one at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol

import pytest

from pepperpy.event import Event, EventStore
from tests.helpers import eventually
from tests.store.pgfaultproxy import Link, PgFaultProxy


@pytest.fixture
async def store(direct: str) -> AsyncIterator[EventStore]:
    """The followed store, straight to the server in this test's schema (the store tests'
    ``direct`` fixture), holding five ``acc.add`` events in ``acc.1``."""
    async with EventStore(direct) as events:
        await events.append("acc.1", [Event("acc.add", {"n": n}) for n in range(5)])
        yield events


class Fault(Protocol):
    """A fault injector that counts the faults it has caused."""

    fired: int


async def append_until_fired(
    store: EventStore, fault: Fault, fired: int, follower: asyncio.Future[Any]
) -> None:
    """Append events one by one (each a commit of the follower's own) until ``fault``
    has fired ``fired`` times; then check the follower is still going a moment later."""
    for _ in range(50):
        await store.append("acc.1", Event("acc.add"))
        await asyncio.sleep(0.02)
        if fault.fired == fired:
            break
    assert fault.fired == fired
    await asyncio.sleep(0.2)
    assert not follower.done(), follower.exception()


async def catches_up(store: EventStore, follower: Any) -> int:
    """Append three more events (no fault armed) and wait until the projection
    ``follower`` has applied up to the head: it rode out the faults and goes on. Returns
    that head's global position."""
    await store.append("acc.2", [Event("acc.add") for _ in range(3)])
    head = (await store.read_all())[-1].global_position
    await eventually(lambda: follower.position == head, timeout=15)
    return head


class LoseNextSave:
    """Reset the state store's connection at its next statement (once armed), either as
    the statement goes out (it never reaches the server: nothing is saved) or as the
    server answers it (it ran and was saved; the answer is lost). Both leave the save's
    outcome unknown to the projection (``written=None``)."""

    def __init__(self, proxy: PgFaultProxy) -> None:
        self.armed: str | None = None
        self.fired = 0
        proxy.on_client = self._client  # type: ignore[assignment]
        proxy.on_server = self._server  # type: ignore[assignment]

    def arm(self, at: str) -> None:
        """``"sent"``: lose the next statement; ``"answer"``: lose the answer to it."""
        self.armed = at

    def aimed_at(self, data: bytes) -> bool:
        """Whether the chunk ``data`` from the client is the statement to lose."""
        return data[:1] == b"B"  # a statement's execution (Bind)

    def _client(self, link: Link, data: bytes) -> str | None:
        if self.armed is None or not self.aimed_at(data):
            return None
        at, self.armed = self.armed, None
        if at == "sent":
            self.fired += 1
            return "drop"
        link.marks.add("lose-answer")
        return None

    def _server(self, link: Link, data: bytes) -> str | None:
        if "lose-answer" in link.marks:
            link.marks.discard("lose-answer")
            self.fired += 1
            return "drop"
        return None


class LoseNextCommit(LoseNextSave):
    """:class:`LoseNextSave` aimed at the next ``COMMIT`` (a transaction's last statement,
    sent as a simple query): lost as it goes out the server rolls back; lost as the
    answer comes back it has committed."""

    def aimed_at(self, data: bytes) -> bool:
        return data[:1] == b"Q" and b"COMMIT" in data
