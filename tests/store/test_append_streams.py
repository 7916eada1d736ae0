"""``append_streams`` beyond the conformance suite: several stores on one database, a
process killed mid-call, a backend written before the method, and the security options
(access, encryption, audit) applied per stream."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pepperpy.event import AccessDenied, ConfigurationError, EventStore
from pepperpy.event.security import (
    AccessControl,
    AuditLog,
    KeyRing,
    MemoryKeyStore,
    StreamEncryption,
    acting_as,
)
from pepperpy.event.store import MemoryBackend
from pepperpy.event.store._records import event_records
from pepperpy.event.store.base import ANY, PendingAppend, StoreBackend
from tests.helpers import store_urls
from tests.store.conformance_multi import moved, run_transfers
from tests.store.crash import assert_multi_survives_sigkill
from tests.store.held_commit import HeldCommit, until_one_waits_for_a_lock

SECRET = "078-05-1120"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async for url in store_urls(request, tmp_path, "multi"):
        yield url


# -- several stores, crashes ------------------------------------------------------------


@pytest.mark.postgres
async def test_transfers_across_two_postgres_stores_conserve_the_total(
    postgres_url: str,
) -> None:
    stores = [EventStore(postgres_url), EventStore(postgres_url)]
    try:
        await run_transfers(stores)
    finally:
        for store in stores:
            await store.close()


async def test_transfers_across_two_sqlite_stores_conserve_the_total(sqlite_url: str) -> None:
    stores = [EventStore(sqlite_url), EventStore(sqlite_url)]
    try:
        await run_transfers(stores)
    finally:
        for store in stores:
            await store.close()


@pytest.mark.postgres
async def test_a_postgres_call_committing_late_is_not_skipped(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``append_streams`` holding its commit keeps the head below its events, a second
    writer waits behind it, and a subscription started past that head gets the call's
    events, then the other's, once each, in order (docs/store.md, "PostgreSQL: ordering,
    the hard promise")."""
    held = HeldCommit(monkeypatch)
    writer, reader = EventStore(postgres_url), EventStore(postgres_url)
    admin = await held.asyncpg.connect(postgres_url)
    try:
        async with asyncio.timeout(30):
            await writer.append("a.1", moved(1))
            held.hold()  # the writer's call: held before its COMMIT
            in_flight = asyncio.ensure_future(
                writer.append_streams({"a.1": moved(-1), "c.1": moved(1)})
            )
            await held.committing.wait()  # positions 1 and 2 taken, not committed
            head = await reader.head()
            assert head == 0
            subscription = reader.subscribe(head + 1)
            later = asyncio.ensure_future(reader.append("b.1", moved(0)))
            await until_one_waits_for_a_lock(admin)  # it waits for the head row's lock
            assert not later.done()
            assert await reader.head() == 0
            held.release.set()
            results = await in_flight
            assert [r.global_position for r in results.values()] == [1, 2]
            assert (await later).global_position == 3
            async with subscription:
                seen = [await anext(subscription) for _ in range(3)]
            assert [(e.global_position, e.stream) for e in seen] == [
                (1, "a.1"),
                (2, "c.1"),
                (3, "b.1"),
            ]
    finally:
        held.release.set()
        monkeypatch.undo()
        await admin.close()
        await writer.close()
        await reader.close()


@pytest.mark.slow
async def test_no_sqlite_call_is_half_written_after_sigkill(sqlite_url: str) -> None:
    await assert_multi_survives_sigkill(sqlite_url)


@pytest.mark.slow
@pytest.mark.postgres
async def test_no_postgres_call_is_half_written_after_sigkill(postgres_url: str) -> None:
    await assert_multi_survives_sigkill(postgres_url)


async def test_backends_refuse_two_appends_to_one_stream(store_url: str) -> None:
    """The store passes distinct streams; a backend called directly checks it too, as
    two appends to one stream planned against one state could both pass one check."""
    async with EventStore(store_url) as store:
        records = event_records(moved(1))
        twice = [PendingAppend("a.1", records, 0), PendingAppend("a.1", records, ANY)]
        for appends in (twice, []):
            with pytest.raises(ValueError, match="one append per stream"):
                await store.backend.append_streams(appends)
        assert await store.head() is None


# -- a backend written before append_streams ------------------------------------------


class OlderBackend(MemoryBackend):
    """A backend that leaves append_streams to the contract, as one written before it."""

    append_streams = StoreBackend.append_streams


async def test_a_backend_without_append_streams_refuses_it_by_name() -> None:
    async with EventStore(OlderBackend()) as store:
        with pytest.raises(ConfigurationError, match="OlderBackend does not implement"):
            await store.append_streams({"account.1": moved(1), "account.2": moved(-1)})
        assert await store.head() is None  # not appended stream by stream either
        await store.append("account.1", moved(1))  # everything else works as before
        assert await store.stream_version("account.1") == 0


def test_append_streams_is_not_abstract() -> None:
    assert "append_streams" not in StoreBackend.__abstractmethods__


# -- access, encryption, audit: per stream ----------------------------------------------


async def test_append_permission_is_checked_on_every_stream(store_url: str) -> None:
    audit = AuditLog()
    acl = AccessControl(audit=audit)
    acl.allow("svc.orders", "*", "order.#")
    acl.allow("svc.shop", "*", "order.#")
    acl.allow("svc.shop", "*", "stock.#")
    async with EventStore(store_url, access=acl) as store:
        with acting_as("svc.orders"), pytest.raises(AccessDenied):
            await store.append_streams({"order.1": moved(1), "stock.1": moved(-1)})
        with acting_as("svc.shop"):
            assert await store.stream_version("order.1") is None  # nothing was written
            await store.append_streams({"order.1": moved(1), "stock.1": moved(-1)})
            assert await store.stream_version("order.1") == 0
            assert await store.stream_version("stock.1") == 0
    denied = [(e.principal, e.action, e.target) for e in audit.entries() if e.outcome == "denied"]
    assert denied == [("svc.orders", "append", "stock.1")]


async def test_each_stream_is_sealed_with_its_own_key(store_url: str) -> None:
    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore())
    async with EventStore(store_url, encryption=crypto) as store:
        await store.append_streams(
            {
                "user.1": {"type": "user.created", "data": {"ssn": SECRET}},
                "user.2": {"type": "user.created", "data": {"ssn": "kept"}},
            }
        )
        if store_url.startswith("sqlite"):
            connection = sqlite3.connect(store_url.removeprefix("sqlite:///"))
            try:
                assert SECRET not in "\n".join(connection.iterdump())
            finally:
                connection.close()
        assert [e.data for e in await store.read_all()] == [{"ssn": SECRET}, {"ssn": "kept"}]
        assert await store.shred_stream("user.1") is True  # only that stream's key
        assert (await store.get_stream("user.1"))[0].data is None
        assert (await store.get_stream("user.2"))[0].data == {"ssn": "kept"}


async def test_the_audit_log_gets_one_append_entry_per_stream(store_url: str) -> None:
    audit = AuditLog()
    async with EventStore(store_url, audit=audit) as store:
        results = await store.append_streams(
            {"account.2": [moved(-1), moved(-2)], "account.1": moved(3)}
        )
    entries = [(e.action, e.target, dict(e.details)) for e in audit.entries()]
    assert [entry[:2] for entry in entries] == [("append", "account.2"), ("append", "account.1")]
    for (_, target, details), result in zip(entries, results.values(), strict=True):
        assert details["global_position"] == result.global_position
        assert details["streams"] == ["account.2", "account.1"]
        assert details["events"] == (2 if target == "account.2" else 1)
    assert audit.verify().ok
