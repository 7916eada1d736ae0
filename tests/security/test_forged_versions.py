"""Only a shredded data key version reads as shredded: a version never stored is forged.

An attacker who can write the event database but holds no key used to rewrite an event
with any type and metadata and an envelope naming a key version that never existed: it
read back as "shredded" (data None), with no error, in a stream never shredded.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from pepperpy.event import EncryptionError, EventStore
from pepperpy.event.security import (
    KeyRing,
    KeyStore,
    StreamEncryption,
)

FORGED = {"$pepperpy.encrypted": 2, "key": 7, "blob": "AAAA"}


async def read_every_way(store: EventStore, stream: str) -> None:
    """get_stream, read_all and subscribe must each raise EncryptionError."""
    with pytest.raises(EncryptionError, match="never held"):
        await store.get_stream(stream)
    with pytest.raises(EncryptionError, match="never held"):
        await store.read_all()
    subscription = store.subscribe(0)
    with pytest.raises(EncryptionError, match="never held"):
        async for event in subscription:
            if event.stream == stream and event.data is None:
                break  # read as shredded instead of refused


@pytest.mark.parametrize("mode", ["redact", "error"])
async def test_an_envelope_naming_a_version_never_stored_is_refused(
    tmp_path: Path, key_store: KeyStore, mode: str
) -> None:
    db = tmp_path / "events.db"
    crypto = StreamEncryption(KeyRing.generate(), key_store)
    async with EventStore(f"sqlite:///{db}", encryption=crypto) as store:
        await store.append("account.1", {"type": "account.opened", "data": {"owner": "ann"}})
        await store.append("account.1", {"type": "account.credited", "data": {"amount": 5}})
    with (
        closing(sqlite3.connect(db)) as attacker,
        attacker,
    ):  # no key: relabels event 1, points it at key 7
        attacker.execute(
            "UPDATE events SET type = 'account.closed', metadata = ?, data = ? WHERE position = 1",
            (b'{"approved_by":"cfo"}', json.dumps(FORGED).encode()),
        )
    attacker.close()
    reader = StreamEncryption(crypto.keyring, key_store, on_shredded=mode)
    async with EventStore(f"sqlite:///{db}", encryption=reader) as store:
        await read_every_way(store, "account.1")
    await key_store.close()


@pytest.mark.parametrize("mode", ["redact", "error"])
async def test_events_of_a_stream_without_keys_are_refused(
    tmp_path: Path, key_store: KeyStore, mode: str
) -> None:
    # what injecting rows into a stream that has no keys gives (here: its keys deleted,
    # which KeyStore.delete documents as not a shred)
    url = f"sqlite:///{tmp_path / 'events.db'}"
    crypto = StreamEncryption(KeyRing.generate(), key_store)
    async with EventStore(url, encryption=crypto) as store:
        await store.append("user.1", {"type": "user.created", "data": {"ssn": "x"}})
    assert await key_store.delete("user.1") == 1
    reader = StreamEncryption(crypto.keyring, key_store, on_shredded=mode)
    async with EventStore(url, encryption=reader) as store:
        await read_every_way(store, "user.1")
    await key_store.close()


async def test_a_shredded_version_still_reads_as_shredded(
    tmp_path: Path, key_store: KeyStore
) -> None:
    crypto = StreamEncryption(KeyRing.generate(), key_store)
    async with EventStore(f"sqlite:///{tmp_path / 'events.db'}", encryption=crypto) as store:
        await store.append("user.1", {"type": "user.created", "data": {"ssn": "x"}})
        assert await store.shred_stream("user.1") is True
        [event] = await store.get_stream("user.1")
        assert event.data is None and event.metadata["pepperpyshredded"] is True
        crypto.on_shredded = "error"
        with pytest.raises(EncryptionError, match="data key 1 of stream 'user.1' was shredded"):
            await store.get_stream("user.1")
    await key_store.close()


@pytest.mark.parametrize("mode", ["redact", "error"])
async def test_a_version_between_stored_ones_is_refused(key_store: KeyStore, mode: str) -> None:
    crypto = StreamEncryption(KeyRing.generate(), key_store, on_shredded=mode)
    envelope = await crypto.encrypt("user.1", "e1", b"x")
    master, wrapped = crypto._wrap("user.1", 3, os.urandom(32))
    assert await key_store.save("user.1", 3, master, wrapped)  # versions 1 and 3, no 2
    gap = dict(envelope, key=2)
    with pytest.raises(EncryptionError, match="names data key 2, which the key store never"):
        await crypto.decrypt("user.1", "e1", gap)
    await crypto.preload_page([("user.1", json.dumps(gap))])
    with pytest.raises(EncryptionError, match="names data key 2, which the key store never"):
        crypto.decrypt_loaded("user.1", "e1", gap)
    assert await crypto.decrypt("user.1", "e1", envelope) == b"x"
    await key_store.close()


async def test_decrypting_without_preloading_is_refused_not_redacted() -> None:
    crypto = StreamEncryption(KeyRing.generate())
    envelope = await crypto.encrypt("user.1", "e1", b"x")
    other = StreamEncryption(crypto.keyring, crypto.key_store)  # nothing loaded yet
    with pytest.raises(EncryptionError, match="were not loaded here: preload the page"):
        other.decrypt_loaded("user.1", "e1", envelope)


async def test_mark_shredded_migrates_a_stream_shredded_before_tombstones(
    key_store: KeyStore,
) -> None:
    crypto = StreamEncryption(KeyRing.generate(), key_store)
    old = await crypto.encrypt("user.1", "e1", b"ssn")
    await key_store.delete("user.1")  # how shredding worked before it kept tombstones
    with pytest.raises(EncryptionError, match="never held"):
        await crypto.decrypt("user.1", "e1", old)
    assert await crypto.mark_shredded("user.1", [1]) == 1
    assert await crypto.decrypt("user.1", "e1", old) is None
    assert await crypto.mark_shredded("user.1", [1]) == 0  # already a tombstone
    new = await crypto.encrypt("user.1", "e2", b"later")  # gets version 2, not 1
    assert new["key"] == 2
    assert await crypto.mark_shredded("user.1", [2]) == 0  # never over a live key
    assert await crypto.decrypt("user.1", "e2", new) == b"later"
    with pytest.raises(ValueError, match="an int >= 1, got 0"):
        await crypto.mark_shredded("user.1", [0])
    await key_store.close()
