"""An event store opened with another key store than its events were written with (a
typo in the key file's path, a relative path from another working directory, a volume
not mounted: SQLite makes an empty file there) reads every event as "never held" or,
once the empty key store made a key for the stream, as "failed authentication
(tampered or moved)". The error named tampering only; it now names the key store and
says it may not be the one the events were written with."""

from __future__ import annotations

from pathlib import Path

from pepperpy.event import EncryptionError, Event, EventStore
from pepperpy.event.security import KeyRing, SQLiteKeyStore, StreamEncryption

RING = {"k1": bytes(range(32))}


async def test_the_error_names_the_key_store_that_may_be_the_wrong_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    async with (
        SQLiteKeyStore(str(tmp_path / "keys.db")) as keys,
        EventStore(url, encryption=StreamEncryption(KeyRing(RING), keys)) as store,
    ):
        await store.append("customer.1", Event("customer.registered", {"ssn": "078-05-1120"}))
    other_path = str(tmp_path / "keys-typo.db")
    async with (
        SQLiteKeyStore(other_path) as other,
        EventStore(url, encryption=StreamEncryption(KeyRing(RING), other)) as store,
    ):
        try:
            await store.get_stream("customer.1")
        except EncryptionError as exc:
            never = str(exc)
        else:
            raise AssertionError("read with another key store")
        assert "never held" in never and other_path in never
        assert "not the key store the events were written with" in never
        await store.append("customer.1", Event("customer.updated", {"ssn": "x"}))
        try:
            await store.get_stream("customer.1")
        except EncryptionError as exc:
            failed = str(exc)
        else:
            raise AssertionError("read with another key store")
        assert "failed authentication" in failed and other_path in failed
        assert "not the key store the events were written with" in failed
