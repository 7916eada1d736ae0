"""What an encrypted store authenticates: envelopes only, each bound to what it labels.

Someone who can write the database but holds no key must not get data read back as
genuine: plain data in place of an envelope, a ciphertext moved between an event and a
snapshot, or a clear label (type, schema version, timestamp, metadata, snapshot version)
changed under a ciphertext all raise :class:`EncryptionError`. ``source`` and
``subject`` travel inside the envelope, so they are not stored in clear and a shred
erases them. Row order is not authenticated (docs/security.md says so, and why).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import EncryptionError, Event, EventStore
from pepperpy.event.security import KeyRing, MemoryKeyStore, StreamEncryption
from tests.helpers import store_urls
from tests.security.test_store_security import raw_contents


class Raw:
    """Direct access to the tables of a store's database, as an attacker with the disk."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def execute(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run ``sql`` ({events}, {snapshots}; ``?`` placeholders); the rows it returned."""
        if self.url.startswith("sqlite"):
            import sqlite3

            db = sqlite3.connect(self.url.removeprefix("sqlite:///"))
            try:
                with db:
                    sql = sql.format(events="events", snapshots="snapshots")
                    return [tuple(row) for row in db.execute(sql, args).fetchall()]
            finally:
                db.close()
        import asyncpg

        base, schema = self.url.split("?schema=")
        parts = sql.split("?")
        numbered = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))
        numbered = numbered.format(
            events=f'"{schema}".pepperpy_events', snapshots=f'"{schema}".pepperpy_snapshots'
        )
        conn = await asyncpg.connect(base)
        try:
            return [tuple(row) for row in await conn.fetch(numbered, *args)]
        finally:
            await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def on_disk(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A store URL whose tables the test can rewrite between two openings."""
    async for url in store_urls(request, tmp_path, "bind"):
        yield url


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async for url in store_urls(request, tmp_path, "bind"):
        yield url


def strict() -> StreamEncryption:
    return StreamEncryption(KeyRing.generate(), MemoryKeyStore(), on_shredded="error")


async def ledger(url: str, crypto: StreamEncryption) -> list[tuple[Any, ...]]:
    """Three events and a snapshot in ``acct.1``; the stored rows, in stream order."""
    async with EventStore(url, encryption=crypto) as store:
        await store.append(
            "acct.1",
            [
                {"type": "account.credited", "data": {"amount": 5}},
                {"type": "account.debited", "data": {"amount": 900}},
                {"type": "account.credited", "data": {"amount": 7}},
            ],
        )
        await store.save_snapshot("acct.1", {"balance": 5}, 0)
    return await Raw(url).execute(
        "SELECT position, id, data FROM {events} WHERE stream = 'acct.1' ORDER BY position"
    )


# -- plain data where an envelope belongs -------------------------------------------------


@pytest.mark.parametrize("shredded", [False, True], ids=["live", "shredded"])
async def test_plain_event_data_is_refused_never_read_as_genuine(
    on_disk: str, shredded: bool
) -> None:
    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore())  # redacts when shredded
    rows = await ledger(on_disk, crypto)
    await Raw(on_disk).execute(
        "UPDATE {events} SET data = ? WHERE stream = 'acct.1' AND position = 2",
        b'{"amount": 1000000}',
    )
    async with EventStore(on_disk, encryption=crypto) as store:
        if shredded:
            await store.shred_stream("acct.1")
        message = rf"event {rows[2][1]} of 'acct.1' is not encrypted"
        with pytest.raises(EncryptionError, match=message):
            await store.get_stream("acct.1")
        with pytest.raises(EncryptionError, match=message):
            await store.read_all()
        with pytest.raises(EncryptionError, match=message):
            async with store.subscribe(0) as events:
                async for _ in events:
                    pass


@pytest.mark.parametrize("shredded", [False, True], ids=["live", "shredded"])
async def test_a_plain_snapshot_is_refused(on_disk: str, shredded: bool) -> None:
    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore())
    await ledger(on_disk, crypto)
    await Raw(on_disk).execute("UPDATE {snapshots} SET state = ?", b'{"balance": 1000000}')
    async with EventStore(on_disk, encryption=crypto) as store:
        if shredded:
            await store.shred_stream("acct.1")
        with pytest.raises(
            EncryptionError, match=r"the snapshot at version 0 of 'acct.1' is not encrypted"
        ):
            await store.load_snapshot("acct.1")


async def test_an_envelope_of_another_format_is_refused(on_disk: str) -> None:
    crypto = strict()
    rows = await ledger(on_disk, crypto)
    older = json.loads(rows[0][2])
    older["$pepperpy.encrypted"] = 1  # what the first pre-release wrote: no downgrade
    await Raw(on_disk).execute(
        "UPDATE {events} SET data = ? WHERE stream = 'acct.1' AND position = 0",
        json.dumps(older).encode(),
    )
    async with EventStore(on_disk, encryption=crypto) as store:
        with pytest.raises(EncryptionError, match="envelope of format 1; this version reads"):
            await store.get_stream("acct.1")


# -- each envelope is bound to what it labels ----------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("type", "account.credited"),  # a debit relabelled as a credit
        ("version", 7),
        ("timestamp", 1),
        ("metadata", b'{"approved": true}'),
    ],
)
async def test_a_clear_label_changed_under_a_ciphertext_fails(
    on_disk: str, column: str, value: object
) -> None:
    crypto = strict()
    rows = await ledger(on_disk, crypto)
    await Raw(on_disk).execute(
        f"UPDATE {{events}} SET {column} = ? WHERE stream = 'acct.1' AND position = 1", value
    )
    async with EventStore(on_disk, encryption=crypto) as store:
        with pytest.raises(EncryptionError, match=rf"event {rows[1][1]} .* failed authentication"):
            await store.get_stream("acct.1")


async def test_swapping_the_ids_and_data_of_two_events_fails(on_disk: str) -> None:
    crypto = strict()
    rows = await ledger(on_disk, crypto)
    raw = Raw(on_disk)
    update = "UPDATE {events} SET id = ?, data = ? WHERE stream = 'acct.1' AND position = ?"
    await raw.execute(update, rows[1][1], rows[1][2], 0)  # a credit and a debit trade places
    await raw.execute(update, rows[0][1], rows[0][2], 1)
    async with EventStore(on_disk, encryption=crypto) as store:
        with pytest.raises(EncryptionError, match="failed authentication"):
            await store.get_stream("acct.1")


async def test_reordering_whole_rows_is_not_detected_by_encryption(on_disk: str) -> None:
    """Positions are given inside the backend's write, after encryption: not bound.

    Two events alike in every clear label can trade places unnoticed (docs/security.md;
    the audit log's append entries record the ids in their order).
    """
    crypto = strict()
    rows = await ledger(on_disk, crypto)  # positions 0 and 2 are both account.credited v1
    stamp = (await Raw(on_disk).execute("SELECT timestamp FROM {events} LIMIT 1"))[0][0]
    update = "UPDATE {events} SET id = ?, data = ? WHERE stream = 'acct.1' AND position = ?"
    await Raw(on_disk).execute(update, rows[2][1], rows[2][2], 0)
    await Raw(on_disk).execute(update, rows[0][1], rows[0][2], 2)
    async with EventStore(on_disk, encryption=crypto) as store:
        events = await store.get_stream("acct.1")
    assert [event.data["amount"] for event in events] == [7, 900, 5]
    assert {int(event.timestamp.timestamp() * 1e6) for event in events} == {stamp}


async def test_a_snapshot_relabelled_to_a_later_version_fails(on_disk: str) -> None:
    crypto = strict()
    await ledger(on_disk, crypto)
    await Raw(on_disk).execute("UPDATE {snapshots} SET version = 2")
    async with EventStore(on_disk, encryption=crypto) as store:
        with pytest.raises(
            EncryptionError, match=r"the snapshot at version 2 of 'acct.1' failed authentication"
        ):
            await store.load_snapshot("acct.1")


async def test_a_snapshot_with_another_time_or_stream_fails(on_disk: str) -> None:
    crypto = strict()
    await ledger(on_disk, crypto)
    async with EventStore(on_disk, encryption=crypto) as store:
        await store.append("acct.2", {"type": "account.credited", "data": {"amount": 1}})
        await store.save_snapshot("acct.2", {"balance": 1}, 0)
    raw = Raw(on_disk)
    await raw.execute("UPDATE {snapshots} SET taken_at = taken_at - 1 WHERE stream = 'acct.1'")
    ((state,),) = await raw.execute("SELECT state FROM {snapshots} WHERE stream = 'acct.1'")
    await raw.execute("UPDATE {snapshots} SET state = ? WHERE stream = 'acct.2'", state)
    async with EventStore(on_disk, encryption=crypto) as store:
        for stream in ("acct.1", "acct.2"):
            with pytest.raises(EncryptionError, match="failed authentication"):
                await store.load_snapshot(stream)


async def test_an_event_ciphertext_never_decrypts_as_a_snapshot(on_disk: str) -> None:
    """An event may have the id "snapshot": its ciphertext still cannot be planted."""
    crypto = strict()
    async with EventStore(on_disk, encryption=crypto) as store:
        await store.append("acct.1", {"type": "deposited", "data": {"amount": 10}})
        await store.save_snapshot("acct.1", {"balance": 10}, 0)
        await store.append("acct.1", Event("note.added", {"balance": 10**6}, id="snapshot"))
    raw = Raw(on_disk)
    ((event,),) = await raw.execute("SELECT data FROM {events} WHERE id = 'snapshot'")
    ((snapshot,),) = await raw.execute("SELECT state FROM {snapshots}")
    await raw.execute("UPDATE {snapshots} SET state = ?", event)
    await raw.execute("UPDATE {events} SET data = ? WHERE id = 'snapshot'", snapshot)
    async with EventStore(on_disk, encryption=crypto) as store:
        with pytest.raises(EncryptionError, match="snapshot at version 0 .* failed authentic"):
            await store.load_snapshot("acct.1")
        with pytest.raises(EncryptionError, match="event snapshot of 'acct.1' failed authentic"):
            await store.get_stream("acct.1")


async def test_the_kinds_are_separate_in_the_api_too() -> None:
    crypto = strict()
    event = await crypto.encrypt("acct.1", "snapshot", b"{}")
    snapshot = await crypto.encrypt_snapshot("acct.1", 0, b"{}")
    with pytest.raises(EncryptionError, match="failed authentication"):
        await crypto.decrypt_snapshot("acct.1", 0, event)
    with pytest.raises(EncryptionError, match="failed authentication"):
        await crypto.decrypt("acct.1", "snapshot", snapshot)
    assert await crypto.decrypt_snapshot("acct.1", 0, snapshot) == b"{}"


@pytest.mark.parametrize(
    ("written", "read"),
    [
        (("a", "b"), ("ab",)),  # fields are length-prefixed, not joined
        (("a", "b"), ("a", "b", None)),
        ((None,), ("",)),
        ((1,), ("1",)),
        ((b"x",), ("x", None)),
        (("x\x00y",), ("x", "y")),
        ((), ("",)),
    ],
)
async def test_a_context_decrypts_only_with_the_same_values(
    written: tuple[Any, ...], read: tuple[Any, ...]
) -> None:
    crypto = strict()
    envelope = await crypto.encrypt("s.1", "e1", b"secret", context=written)
    assert await crypto.decrypt("s.1", "e1", envelope, context=written) == b"secret"
    with pytest.raises(EncryptionError, match="failed authentication"):
        await crypto.decrypt("s.1", "e1", envelope, context=read)


@pytest.mark.parametrize("value", [{"n": 1}, [1, 2], "text", 3, None])
async def test_decrypt_refuses_what_is_not_an_envelope(value: object) -> None:
    crypto = strict()
    await crypto.encrypt("s.1", "e0", b"x")  # the stream has a key
    with pytest.raises(EncryptionError, match="event e1 of 's.1' is not encrypted"):
        await crypto.decrypt("s.1", "e1", value)


async def test_a_context_value_of_another_type_is_named() -> None:
    crypto = strict()
    with pytest.raises(TypeError, match=r"context values are str, int, bytes or None, got 1.5"):
        await crypto.encrypt("s.1", "e1", b"x", context=(1.5,))  # type: ignore[arg-type]


# -- source and subject are sealed with the data -------------------------------------------


async def test_source_and_subject_are_sealed_and_read_back(any_store: str) -> None:
    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore())
    async with EventStore(any_store, encryption=crypto) as store:
        subscription = store.subscribe(0)
        await store.append(
            "patient.7",
            [
                Event(
                    "diagnosis.recorded",
                    {"icd10": "F32.1"},
                    {"corr": "c1"},
                    subject="patient-ssn-078-05-1120",
                    source="clinic/oncology",
                ),
                Event("visit.booked", {"room": 3}, source="clinic/desk"),
                {"type": "note.added", "data": None},
            ],
        )
        expected = [
            ("clinic/oncology", "patient-ssn-078-05-1120", {"icd10": "F32.1"}),
            ("clinic/desk", None, {"room": 3}),
            (None, None, None),
        ]
        for events in (await store.get_stream("patient.7"), await store.read_all()):
            assert [(e.source, e.subject, e.data) for e in events] == expected
        backwards = await store.get_stream("patient.7", backwards=True)
        assert [(e.source, e.subject) for e in backwards] == [t[:2] for t in expected][::-1]
        live = [await anext(subscription) for _ in expected]
        assert [(e.source, e.subject, e.data) for e in live] == expected
        await subscription.aclose()
        if any_store != "memory://":
            dump = await raw_contents(any_store)
            assert "patient-ssn" not in dump and "oncology" not in dump
            assert (await Raw(any_store).execute("SELECT subject, source FROM {events}")) == [
                (None, None)
            ] * 3
        await store.shred_stream("patient.7")
        gone = await store.get_stream("patient.7")
        assert [(e.source, e.subject, e.data) for e in gone] == [(None, None, None)] * 3
        assert gone[0].metadata == {"corr": "c1", "pepperpyshredded": True}


async def test_an_appended_event_is_read_back_whole(any_store: str) -> None:
    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore())
    event = Event(
        "user.renamed", {"name": "Ada"}, {"by": "ops"}, version=3, subject="user-9", source="hr"
    )
    async with EventStore(any_store, encryption=crypto) as store:
        await store.append("user.9", event)
        await store.append("user.9", event)  # a retry: still one event
        (stored,) = await store.get_stream("user.9")
    assert (stored.id, stored.type, stored.version, stored.timestamp) == (
        event.id,
        event.type,
        event.version,
        event.timestamp,
    )
    assert (stored.data, stored.metadata, stored.source, stored.subject) == (
        {"name": "Ada"},
        {"by": "ops"},
        "hr",
        "user-9",
    )


async def test_a_subject_written_in_clear_is_refused(on_disk: str) -> None:
    crypto = strict()
    rows = await ledger(on_disk, crypto)
    await Raw(on_disk).execute(
        "UPDATE {events} SET subject = 'forged' WHERE stream = 'acct.1' AND position = 0"
    )
    async with EventStore(on_disk, encryption=crypto) as store:
        with pytest.raises(
            EncryptionError, match=rf"event {rows[0][1]} of 'acct.1' has its source or subject"
        ):
            await store.get_stream("acct.1")
