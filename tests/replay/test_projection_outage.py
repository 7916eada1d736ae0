"""A projection's ``follow()`` rides out an outage of its state store, exactly once.

``follow()`` commits every live event. A connection lost while one of those commits was
in flight (or while the checkpoint store was being opened) ended ``follow()`` with
``StoreError``, although the subscription under it rode out outages: a soak saw 8 of 10
restarts of its follower caused by that, in 16 minutes. It now reloads state and position
from disk (a commit whose answer was lost may have gone through: only the disk knows),
waits the subscription's backoff and catches up from there, for up to ``retry_for``
seconds; past that it raises an error naming where it stands. No event is applied twice
to the stored state, and none is skipped.

PostgreSQL, the state store reached through the fault proxy (the events straight from
the server), so that every fault hits a load or a save of the projection.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pepperpy.event import Event, EventStore, Projection, ReplayError, StoreError
from tests.helpers import eventually
from tests.replay import faults
from tests.replay.faults import LoseNextSave, append_until_fired, catches_up
from tests.store import conftest as store_fixtures
from tests.store.pgfaultproxy import PgFaultProxy, proxied

LOGGER = "pepperpy.event.replay"

#: the store tests' PostgreSQL fixtures: a database for the module, a schema per test
#: (``direct``), the fault proxy
database, direct, proxy = store_fixtures.database, store_fixtures.direct, store_fixtures.proxy
#: the followed store, five events in (tests/replay/faults.py)
store = faults.store


def ledger(store: EventStore, state_store: Any) -> Projection:
    """Records every position it applies: a position applied twice shows, as does one
    skipped."""
    projection = Projection(
        "ledger",
        store,
        initial=lambda: {"applied": []},
        state_store=state_store,
        batch_size=3,
    )

    @projection.on("acc.#")
    def record(state: dict[str, Any], event: Event) -> None:
        state["applied"].append(event.global_position)

    return projection


def state_url(direct: str, proxy: PgFaultProxy) -> str:
    return proxied(direct, proxy.port, command_timeout=3, connect_timeout=2)


async def expect_each_event_once(store: EventStore, projection: Projection) -> None:
    """The state in memory and on disk holds every position of the log once, in order."""
    positions = [event.global_position async for event in store.read_all()]
    assert projection.state["applied"] == positions
    assert projection.position == positions[-1]
    fresh = ledger(store, projection.state_store)
    assert (await fresh.load())["applied"] == positions


@pytest.mark.postgres
async def test_follow_rides_out_saves_lost_in_flight_and_applies_each_event_once(
    proxy: PgFaultProxy, direct: str, store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    projection = ledger(store, state_url(direct, proxy))
    cut = LoseNextSave(proxy)
    follower = asyncio.ensure_future(projection.follow())
    try:
        await eventually(lambda: projection.position == 4, timeout=15)
        with caplog.at_level(logging.INFO, logger=LOGGER):
            # the answer lost (the save went through), then the statement lost (it did not)
            for fired, at in enumerate(["answer", "sent", "answer", "sent"], start=1):
                cut.arm(at)
                await append_until_fired(store, cut, fired, follower)
            await catches_up(store, projection)
        assert not follower.done()
        await expect_each_event_once(store, projection)
        warnings = [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING and r.getMessage().startswith("projection 'ledger'")
        ]
        assert len(warnings) == 4, warnings  # one per lost save
        assert all(m.startswith("projection 'ledger' at global position") for m in warnings)
        assert all("trying again for up to 60 s" in m for m in warnings)
        assert any("the store can be reached again" in r.getMessage() for r in caplog.records)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await projection.close()


@pytest.mark.postgres
async def test_follow_waits_for_a_state_store_that_cannot_be_opened_yet(
    proxy: PgFaultProxy, direct: str, store: EventStore
) -> None:
    """The soak's other failure: 'cannot open PostgreSQL checkpoint store ...'."""
    projection = ledger(store, state_url(direct, proxy))
    proxy.refuse()  # the server is down as the follower starts
    follower = asyncio.ensure_future(projection.follow())
    try:
        await eventually(lambda: proxy.accepted >= 3, timeout=15)  # tried, and again
        assert not follower.done(), follower.exception()
        proxy.heal()
        await eventually(lambda: projection.position == 4, timeout=15)
        await store.append("acc.1", Event("acc.add"))
        await eventually(lambda: projection.position == 5, timeout=15)
        await expect_each_event_once(store, projection)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await projection.close()


@pytest.mark.postgres
async def test_past_retry_for_follow_raises_where_it_stands_and_resumes_once(
    proxy: PgFaultProxy, direct: str, store: EventStore
) -> None:
    projection = ledger(store, state_url(direct, proxy))
    follower = asyncio.ensure_future(projection.follow(retry_for=1))
    try:
        await eventually(lambda: projection.position == 4, timeout=15)
        proxy.refuse()  # down for longer than the bound
        proxy.drop()
        await store.append("acc.1", Event("acc.add"))
        async with asyncio.timeout(30):
            with pytest.raises(StoreError) as caught:
                await follower
        message = str(caught.value)
        # its last try was a load of state and position, which failed: the save of 5 may
        # have gone through, for all the projection knows
        assert message.startswith(
            "projection 'ledger' at global position 4, or later if its last save went "
            "through: the store could not be reached for"
        )
        assert "retry_for=1)" in message and "call follow() again to resume" in message
        assert isinstance(caught.value.__cause__, StoreError)
        proxy.heal()
        follower = asyncio.ensure_future(projection.follow())
        await eventually(lambda: projection.position == 5, timeout=15)
        await expect_each_event_once(store, projection)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await projection.close()


@pytest.mark.postgres
async def test_closing_the_store_ends_a_follow_riding_out_an_outage(
    proxy: PgFaultProxy, direct: str, store: EventStore
) -> None:
    projection = ledger(store, state_url(direct, proxy))
    proxy.refuse()
    follower = asyncio.ensure_future(projection.follow(retry_for=None))
    try:
        await eventually(lambda: proxy.accepted >= 2, timeout=15)
        assert not follower.done(), follower.exception()
        await store.close()
        async with asyncio.timeout(10):
            await follower  # ends without an error, as a subscription does
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await projection.close()


async def test_handler_errors_are_not_tried_again() -> None:
    """Only store outages are ridden out: a handler's error ends follow() at once."""
    async with EventStore() as store:
        await store.append("acc.1", Event("acc.add"))
        projection = Projection("failing", store)
        calls: list[int | None] = []

        @projection.on("acc.#")
        def fail(state: dict[str, Any], event: Event) -> None:
            calls.append(event.global_position)
            raise RuntimeError("bug")

        async with asyncio.timeout(10):
            with pytest.raises(ReplayError, match="handler .*fail.* failed"):
                await projection.follow(retry_for=None)
        assert calls == [0]
        assert projection.position is None


@pytest.mark.parametrize(
    ("bad", "error"),
    [(-1, ValueError), (float("nan"), ValueError), (True, TypeError), ("5", TypeError)],
)
async def test_a_bad_retry_for_is_refused_naming_it(bad: object, error: type[Exception]) -> None:
    async with EventStore() as store:
        with pytest.raises(error, match="retry_for must be a finite number of seconds"):
            await Projection("p", store).follow(retry_for=bad)  # type: ignore[arg-type]
