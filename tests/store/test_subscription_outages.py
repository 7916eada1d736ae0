"""A subscription rides out an outage of its store, and says so when it gives up.

A read that failed with ``StoreError`` (a connection cut while PostgreSQL restarts, say)
used to end ``async for event in store.subscribe(...)`` at once: a soak with repeated
connection storms saw 54 such errors reach the caller, although iterating again lost
nothing. The subscription now tries again from its position, with backoff, for up to
``retry_for`` seconds, logging a warning when the outage begins and an info record when
it ends; past the bound the error is raised, naming where to resume. The rule lives in
the facade, the same on every backend: it is checked here on a memory backend whose
reads fail on demand, and on PostgreSQL through the fault proxy.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pepperpy.event import Event, EventStore, StoreError
from pepperpy.event.store.base import LogPage
from pepperpy.event.store.memory import MemoryBackend
from tests.helpers import eventually
from tests.store.pgfaultproxy import Link, PgFaultProxy, proxied

LISTENER = "pepperpy-event-listener"
LOGGER = "pepperpy.event.store"


class FlakyBackend(MemoryBackend):
    """A memory backend whose next ``fail_reads`` reads (and ``fail_waits`` waits) raise
    ``StoreError``, as a backend's do while its server is unreachable."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_reads = 0
        self.fail_waits = 0
        self.failed = 0

    async def read_all(self, from_position: int, limit: int) -> LogPage:
        if self.fail_reads:
            self.fail_reads -= 1
            self.failed += 1
            raise StoreError("flaky read_all failed: the connection was lost")
        return await super().read_all(from_position, limit)

    async def wait(self, position: int) -> None:
        if self.fail_waits:
            self.fail_waits -= 1
            self.failed += 1
            raise StoreError("flaky wait failed: the connection was lost")
        await super().wait(position)


async def positions(subscription: Any, count: int) -> list[int]:
    """The global positions of the next ``count`` events, bounded."""
    seen: list[int] = []
    async with asyncio.timeout(10):
        while len(seen) < count:
            event = await anext(subscription)
            seen.append(event.global_position)
    return seen


# -- the shared rule (memory backend) ---------------------------------------------------


async def test_failed_reads_and_waits_are_tried_again_and_nothing_is_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = FlakyBackend()
    async with EventStore(backend) as store:
        await store.append("s.1", [{"type": "t.x"}, {"type": "t.x"}])
        subscription = store.subscribe(0)
        with caplog.at_level(logging.INFO, logger=LOGGER):
            backend.fail_reads = 3  # catching up
            assert await positions(subscription, 2) == [0, 1]
            assert backend.failed == 3
            backend.fail_waits = 1  # following live appends
            backend.fail_reads = 2
            following = asyncio.ensure_future(positions(subscription, 2))
            await eventually(lambda: backend.failed >= 4)
            await store.append("s.1", [{"type": "t.x"}, {"type": "t.x"}])
            assert await following == [2, 3]
            assert backend.failed == 6
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        recoveries = [r for r in caplog.records if "can be read again" in r.getMessage()]
        # one warning and one recovery per outage, however many tries it took
        assert [r.getMessage() for r in warnings] == [
            "subscription at global position 0: flaky read_all failed: the connection was "
            "lost; trying again for up to 60 s",
            "subscription at global position 2: flaky wait failed: the connection was "
            "lost; trying again for up to 60 s",
        ]
        assert len(recoveries) == 2 and all(r.levelno == logging.INFO for r in recoveries)
        assert "after" in recoveries[0].getMessage()
        assert "3 failed tries" in recoveries[0].getMessage()


async def test_past_retry_for_the_error_names_the_position_and_iterating_again_resumes() -> None:
    backend = FlakyBackend()
    async with EventStore(backend) as store:
        await store.append("s.1", [{"type": "t.x"}, {"type": "t.x"}])
        subscription = store.subscribe(0, retry_for=0.3)
        assert await positions(subscription, 2) == [0, 1]
        backend.fail_reads = 10**9  # an outage longer than the bound
        await store.append("s.1", {"type": "t.x"})
        async with asyncio.timeout(10):
            with pytest.raises(StoreError) as caught:
                await anext(subscription)
        message = str(caught.value)
        assert message.startswith("subscription at global position 2: the store could not")
        assert "retry_for=0.3" in message and "from_position=2, to resume" in message
        assert "flaky read_all failed" in message
        assert isinstance(caught.value.__cause__, StoreError)
        assert backend.failed >= 2  # tried again before giving up
        assert subscription.position == 2
        backend.fail_reads = 0  # the store is back: the same subscription goes on
        assert await positions(subscription, 1) == [2]


async def test_retry_for_zero_raises_the_first_failure() -> None:
    backend = FlakyBackend()
    async with EventStore(backend) as store:
        await store.append("s.1", {"type": "t.x"})
        subscription = store.subscribe(0, retry_for=0)
        backend.fail_reads = 5
        with pytest.raises(StoreError, match=r"\(1 failed try, retry_for=0\)"):
            await anext(subscription)
        assert backend.failed == 1


async def test_closing_the_store_ends_a_subscription_that_is_trying_again() -> None:
    backend = FlakyBackend()
    store = EventStore(backend)
    subscription = store.subscribe(0, retry_for=None)
    backend.fail_reads = 10**9
    pending = asyncio.ensure_future(anext(subscription))
    await eventually(lambda: backend.failed >= 2)
    assert not pending.done()  # no bound: it goes on trying
    await store.close()
    async with asyncio.timeout(10):
        with pytest.raises(StopAsyncIteration):
            await pending


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (-1, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (True, TypeError),  # no number: a wrong type
        ("5", TypeError),
    ],
)
async def test_a_bad_retry_for_is_refused_naming_it(bad: object, error: type[Exception]) -> None:
    async with EventStore() as store:
        with pytest.raises(error, match="retry_for must be a finite number of seconds"):
            store.subscribe(0, retry_for=bad)  # type: ignore[arg-type]


# -- PostgreSQL through the fault proxy ------------------------------------------------


def cut_new_handshakes(proxy: PgFaultProxy) -> list[Link]:
    """Reset every connection, and each new one at the server's first reply, until the
    hook is removed (a connect storm: the server is restarting); returns the links cut."""
    for link in proxy.links():
        link.marks.add("old")
    cut: list[Link] = []

    def server(link: Link, data: bytes) -> str | None:
        if "old" not in link.marks:
            cut.append(link)
            return "drop"
        return None

    proxy.on_server = server  # type: ignore[assignment]
    proxy.drop()
    return cut


@pytest.mark.parametrize("filters", [{}, {"types": "t.x"}], ids=["scan", "type index"])
async def test_a_postgres_subscription_rides_out_a_connect_storm(
    proxy: PgFaultProxy, direct: str, caplog: pytest.LogCaptureFixture, filters: dict[str, Any]
) -> None:
    """The default bound (60 s) outlasts a storm of a few seconds: a plain ``async for``
    goes on, and gets every event once, in order; so does one reading through the type
    index (in a read-only transaction of its own, tried again as any read)."""
    reader = EventStore(
        proxied(direct, proxy.port, command_timeout=2, connect_timeout=1, listener_ping=0.5)
    )
    writer = EventStore(direct)
    seen: list[int] = []

    async def follow() -> None:
        async for event in reader.subscribe(0, **filters):
            assert event.global_position is not None
            seen.append(event.global_position)

    follower = asyncio.ensure_future(follow())
    try:
        await writer.append("s.1", [Event("t.x") for _ in range(3)])
        await eventually(lambda: seen == [0, 1, 2] and bool(proxy.links(LISTENER)))
        with caplog.at_level(logging.INFO, logger=LOGGER):
            cut = cut_new_handshakes(proxy)
            await writer.append("s.1", [Event("t.x") for _ in range(3)])
            # the subscription's reads (not the listener's reconnects) meet the storm
            await eventually(
                lambda: follower.done() or sum(link.application != LISTENER for link in cut) >= 3,
                timeout=20,
            )
            assert not follower.done(), follower.exception()
            proxy.on_server = None  # the server is back
            await eventually(lambda: seen == list(range(6)), timeout=15)
            await writer.append("s.1", Event("t.x"))
            await eventually(lambda: seen == list(range(7)), timeout=10)
        assert not follower.done()
        warnings = [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING and r.getMessage().startswith("subscription")
        ]
        assert len(warnings) == 1, warnings  # once for the outage, not once per try
        assert "subscription at global position 3: PostgreSQL read_all failed" in warnings[0]
        assert any("can be read again" in r.getMessage() for r in caplog.records)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await reader.close()
        await writer.close()


async def test_a_postgres_outage_past_retry_for_raises_and_the_subscription_resumes(
    proxy: PgFaultProxy, direct: str
) -> None:
    reader = EventStore(
        proxied(direct, proxy.port, command_timeout=2, connect_timeout=1, listener_ping=0.5)
    )
    writer = EventStore(direct)
    try:
        await writer.append("s.1", [Event("t.x") for _ in range(2)])
        subscription = reader.subscribe(0, retry_for=1)
        assert await positions(subscription, 2) == [0, 1]
        proxy.refuse()  # the server is down for longer than the bound
        proxy.drop()
        await writer.append("s.1", Event("t.x"))
        async with asyncio.timeout(20):
            with pytest.raises(StoreError) as caught:
                await anext(subscription)
        assert "subscription at global position 2" in str(caught.value)
        assert "from_position=2, to resume" in str(caught.value)
        proxy.heal()
        await writer.append("s.1", Event("t.x"))
        assert await positions(subscription, 2) == [2, 3]  # nothing lost, nothing twice
    finally:
        await reader.close()
        await writer.close()
