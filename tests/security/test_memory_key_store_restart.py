"""An encrypted store on disk with the default key store: a restart loses the keys.

``StreamEncryption(ring)`` without ``key_store=`` keeps data keys in a MemoryKeyStore,
which forgets them when its process ends. Before, the events of an SQLite store written
by the earlier process then raised EncryptionError "refused as tampered" (or, once the
new process had written to the stream, "failed authentication (tampered or moved)"):
the operator was sent hunting for an attacker when the keys had simply never been
kept. The error now says that a memory key store forgets its keys, and what to use.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pepperpy.event import EncryptionError, EventStore
from pepperpy.event.security import KeyRing, MemoryKeyStore, SQLiteKeyStore, StreamEncryption

RING = {"k1": b"m" * 32}
FORGETS = "keeps its data keys in a MemoryKeyStore (the default without key_store=)"


async def write(url: str, crypto: StreamEncryption) -> None:
    async with EventStore(url, encryption=crypto) as store:
        await store.append("user.1", {"type": "user.created", "data": {"ssn": "1"}})


@pytest.mark.parametrize("key_store", ["default", "memory"])
async def test_a_memory_key_store_lost_with_its_process_is_named(
    tmp_path: Path, key_store: str
) -> None:
    url = f"sqlite:///{tmp_path}/events.db"

    def crypto() -> StreamEncryption:  # a new process: a new memory key store
        if key_store == "default":
            return StreamEncryption(KeyRing(RING))
        return StreamEncryption(KeyRing(RING), MemoryKeyStore())

    await write(url, crypto())
    async with EventStore(url, encryption=crypto()) as store:
        with pytest.raises(EncryptionError, match="never held") as never:
            await store.get_stream("user.1")
        assert FORGETS in str(never.value) and "SQLiteKeyStore(path)" in str(never.value)
        # the new process writes to the stream: its new key takes the old version number
        await store.append("user.1", {"type": "user.created", "data": {"ssn": "2"}})
        with pytest.raises(EncryptionError, match="failed authentication") as other:
            await store.get_stream("user.1")
        assert FORGETS in str(other.value)


async def test_a_key_store_on_disk_is_not_blamed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    keys = str(tmp_path / "keys.db")
    async with SQLiteKeyStore(keys) as key_store:
        await write(url, StreamEncryption(KeyRing(RING), key_store))
    async with (
        SQLiteKeyStore(keys) as key_store,
        EventStore(
            url, encryption=StreamEncryption(KeyRing(RING), key_store, key_cache_ttl=0)
        ) as store,
    ):
        assert [event.data for event in await store.get_stream("user.1")] == [{"ssn": "1"}]
        await key_store.delete("user.1")  # rows deleted behind its back: no memory store
        with pytest.raises(EncryptionError, match="never held") as never:
            await store.get_stream("user.1")
        assert "MemoryKeyStore" not in str(never.value)
