"""Closing ends a follower's backoff at once.

While ``follow()`` rode out an outage it slept its backoff (up to 1 s) deaf to
``Projection.close()`` and to the store's ``close()``, which then waited it out. The
backoff here is stretched to 60 s, so the old code shows as a timeout; the state store
is reached through the fault proxy, refusing connections (PostgreSQL down)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pepperpy.event import EventStore, Projection
from pepperpy.event.store import _reader
from tests.helpers import eventually
from tests.replay import faults
from tests.store import conftest as store_fixtures
from tests.store.pgfaultproxy import PgFaultProxy, proxied

LOGGER = "pepperpy.event.replay"

database, direct, proxy = store_fixtures.database, store_fixtures.direct, store_fixtures.proxy
store = faults.store


class LongBackoff:
    """Every pause of an outage lasts a minute: far longer than any close may take."""

    def delay(self, attempt: int) -> float:
        return 60.0


async def riding_out(
    projection: Projection, proxy: PgFaultProxy, caplog: pytest.LogCaptureFixture
) -> asyncio.Future[None]:
    """``projection.follow()``, once it failed to reach its state store and is waiting
    its backoff (the warning is logged just before it)."""
    proxy.refuse()
    follower = asyncio.ensure_future(projection.follow(retry_for=None))
    await eventually(lambda: "trying again until it works" in caplog.text, timeout=15)
    assert proxy.accepted >= 1
    assert not follower.done(), follower.exception()
    return follower


@pytest.fixture(autouse=True)
def long_backoff(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(_reader, "_BACKOFF", LongBackoff())
    caplog.set_level(logging.WARNING, logger=LOGGER)


@pytest.mark.postgres
async def test_closing_the_projection_ends_the_backoff_at_once(
    proxy: PgFaultProxy, direct: str, store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    projection = Projection("ledger", store, state_store=proxied(direct, proxy.port))
    follower = await riding_out(projection, proxy, caplog)
    try:
        async with asyncio.timeout(10):
            await projection.close()  # waited out the 60 s pause
        assert follower.done()
        assert follower.result() is None  # it returns, as when the store is closed
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await projection.close()


@pytest.mark.postgres
async def test_closing_the_store_ends_the_backoff_at_once(
    proxy: PgFaultProxy, direct: str, store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    projection = Projection("ledger", store, state_store=proxied(direct, proxy.port))
    follower = await riding_out(projection, proxy, caplog)
    try:
        await store.close()
        async with asyncio.timeout(10):
            await follower  # returns without an error, as a subscription ends
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await projection.close()
