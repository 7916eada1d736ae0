"""Encryption at rest, access control and audit, enforced by the event store on every backend."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pepperpy.event import AccessDenied, ConfigurationError, EncryptionError, EventStore
from pepperpy.event.security import (
    AccessControl,
    AuditLog,
    KeyRing,
    MemoryKeyStore,
    StreamEncryption,
    acting_as,
)
from tests.helpers import store_urls

SECRET = "078-05-1120"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async for url in store_urls(request, tmp_path, "sec"):
        yield url


async def raw_contents(url: str) -> str:
    """Everything the backend stored, as text (what an attacker with the disk sees)."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        db = sqlite3.connect(path)
        dump = "\n".join(db.iterdump())
        db.close()
        return dump
    import asyncpg

    base, schema = url.split("?schema=")
    conn = await asyncpg.connect(base)
    try:
        rows = await conn.fetch(f'SELECT data::text AS d FROM "{schema}".pepperpy_events')
        snaps = await conn.fetch(f'SELECT state::text AS s FROM "{schema}".pepperpy_snapshots')
    finally:
        await conn.close()
    return "\n".join([r["d"] for r in rows] + [r["s"] for r in snaps])


async def test_data_is_encrypted_at_rest_and_readable_through_the_store(store_url: str) -> None:
    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore())
    async with EventStore(store_url, encryption=crypto) as store:
        await store.append("user.1", {"type": "user.created", "data": {"ssn": SECRET}})
        await store.append("user.2", {"type": "user.created", "data": {"ssn": "other"}})
        await store.save_snapshot("user.1", {"ssn": SECRET}, 0)
        events = await store.get_stream("user.1")
        assert events[0].data == {"ssn": SECRET}
        everything = [e.data async for e in store.read_all()]
        assert everything == [{"ssn": SECRET}, {"ssn": "other"}]
        snapshot = await store.load_snapshot("user.1")
        assert snapshot is not None and snapshot.state == {"ssn": SECRET}
        if store_url != "memory://":
            assert SECRET not in await raw_contents(store_url)

        # a subscription decrypts too, also for events appended after it started
        subscription = store.subscribe(0)
        seen = []
        async for event in subscription:
            seen.append(event.data)
            if len(seen) == 2:
                await store.append("user.3", {"type": "user.created", "data": {"ssn": "late"}})
            if len(seen) == 3:
                break
        assert seen[-1] == {"ssn": "late"}


async def test_shredding_a_stream_makes_only_that_stream_unreadable(store_url: str) -> None:
    audit = AuditLog()
    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore())
    async with EventStore(store_url, encryption=crypto, audit=audit) as store:
        await store.append("user.1", {"type": "user.created", "data": {"ssn": SECRET}})
        await store.append("user.2", {"type": "user.created", "data": {"ssn": "kept"}})
        await store.save_snapshot("user.1", {"ssn": SECRET}, 0)
        assert await store.shred_stream("user.1") is True
        gone = (await store.get_stream("user.1"))[0]
        assert gone.data is None and gone.metadata["pepperpyshredded"] is True
        assert gone.type == "user.created"  # types and positions stay
        assert (await store.get_stream("user.2"))[0].data == {"ssn": "kept"}
        assert await store.load_snapshot("user.1") is None
    if store_url != "memory://":  # a new process with the same keys still cannot read it
        strict = StreamEncryption(crypto.keyring, crypto.key_store, on_shredded="error")
        async with EventStore(store_url, encryption=strict) as reopened:
            with pytest.raises(EncryptionError, match="shredded"):
                await reopened.get_stream("user.1")
            assert (await reopened.get_stream("user.2"))[0].data == {"ssn": "kept"}
    assert [e.action for e in audit.entries()] == ["append", "append", "snapshot", "shred"]
    assert audit.verify().ok


async def test_access_rules_guard_reads_appends_and_deletes(store_url: str) -> None:
    audit = AuditLog()
    acl = AccessControl(audit=audit)
    acl.allow("svc.orders", "*", "order.#")
    acl.allow("#", "read", "order.#")
    acl.allow("admin", "*", "#")
    async with EventStore(store_url, access=acl, audit=audit) as store:
        with acting_as("svc.orders"):
            await store.append("order.1", {"type": "order.placed", "data": {"total": 3}})
            with pytest.raises(AccessDenied):
                await store.append("user.1", {"type": "user.created", "data": {}})
        with acting_as("svc.reporting"):
            assert len(await store.get_stream("order.1")) == 1
            assert len(await store.read_all(streams="order.*")) == 1
            with pytest.raises(AccessDenied):
                await store.read_all()  # the whole log includes streams it may not read
            with pytest.raises(AccessDenied):
                store.subscribe(0)
            with pytest.raises(AccessDenied):
                await store.delete_stream("order.1")
        assert await store.stream_version("order.1") == 0  # "#" includes anonymous callers
        with pytest.raises(AccessDenied):  # ...but no rule lets them read user streams
            await store.stream_version("user.1")
        with acting_as("admin"):
            assert await store.delete_stream("order.1") is True
    denied = [(e.principal, e.action) for e in audit.entries() if e.outcome == "denied"]
    assert denied == [
        ("svc.orders", "append"),
        ("svc.reporting", "read"),
        ("svc.reporting", "read"),
        ("svc.reporting", "delete"),
        (None, "read"),
    ]
    actions = [e.action for e in audit.entries() if e.outcome == "ok"]
    assert actions.count("append") == 1 and actions.count("delete") == 1
    assert audit.verify().ok


async def test_a_ciphertext_moved_to_another_event_fails(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore(), on_shredded="error")
    async with EventStore(url, encryption=crypto) as store:
        await store.append("s.1", [{"type": "a", "data": 1}, {"type": "b", "data": 2}])
    db = sqlite3.connect(f"{tmp_path}/events.db")
    first = db.execute("SELECT data FROM events ORDER BY global_position LIMIT 1").fetchone()[0]
    moved = db.execute("UPDATE events SET data = ? WHERE position = 1", (first,))
    assert moved.rowcount == 1
    db.commit()
    db.close()
    async with EventStore(url, encryption=crypto) as store:
        with pytest.raises(EncryptionError, match="tampered or moved"):
            await store.get_stream("s.1")


async def test_shredding_needs_encryption() -> None:
    async with EventStore() as store:
        with pytest.raises(ConfigurationError, match="encryption"):
            await store.shred_stream("s.1")


async def test_concurrent_appends_to_one_new_encrypted_stream(tmp_path: Path) -> None:
    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore())
    async with EventStore(f"sqlite:///{tmp_path}/e.db", encryption=crypto) as store:
        await asyncio.gather(*(store.append("s.1", {"type": "n", "data": n}) for n in range(20)))
        assert sorted(e.data for e in await store.get_stream("s.1")) == list(range(20))
