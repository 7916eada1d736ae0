"""Crypto-shredding: version numbers are never reused, and every instance sees a shred."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from pepperpy.event import ConfigurationError, EncryptionError, EventStore
from pepperpy.event.security import (
    KeyRing,
    KeyStore,
    SQLiteKeyStore,
    StreamEncryption,
)


async def test_writing_after_a_shred_gets_a_new_key_version(key_store: KeyStore) -> None:
    crypto = StreamEncryption(KeyRing.generate(), key_store)
    old = await crypto.encrypt("user.1", "e1", b"ssn")
    assert await crypto.shred("user.1") is True
    new = await crypto.encrypt("user.1", "e2", b"erased")
    assert new["key"] > old["key"]
    assert await crypto.decrypt("user.1", "e1", old) is None  # still shredded
    assert await crypto.decrypt("user.1", "e2", new) == b"erased"
    strict = StreamEncryption(crypto.keyring, key_store, on_shredded="error")
    with pytest.raises(EncryptionError, match="shredded"):
        await strict.decrypt("user.1", "e1", old)
    assert await crypto.shred("user.1") is True  # the new key goes too
    assert await crypto.shred("user.1") is False  # nothing live is left
    assert await crypto.rotate() == 0  # tombstones are not re-wrapped
    assert await crypto.rotate_stream("user.1") == new["key"] + 1
    await key_store.close()


async def test_the_store_reads_old_events_redacted_and_new_ones_after_a_shred(
    tmp_path: Path,
) -> None:
    keys = SQLiteKeyStore(str(tmp_path / "keys.db"))
    crypto = StreamEncryption(KeyRing.generate(), keys)
    async with EventStore(f"sqlite:///{tmp_path}/events.db", encryption=crypto) as store:
        await store.append("user.9", {"type": "user.created", "data": {"ssn": "078"}})
        await store.shred_stream("user.9")
        await store.append("user.9", {"type": "user.erased", "data": {}})
        events = await store.get_stream("user.9")
        assert [(e.type, e.data) for e in events] == [("user.created", None), ("user.erased", {})]
        assert events[0].metadata["pepperpyshredded"] is True
    await keys.close()


async def test_a_shred_reaches_other_instances_at_once(tmp_path: Path) -> None:
    ring = KeyRing.generate()
    path = str(tmp_path / "keys.db")
    a = StreamEncryption(ring, SQLiteKeyStore(path))
    b = StreamEncryption(ring, SQLiteKeyStore(path))
    envelope = await a.encrypt("user.7", "e1", b"secret")
    assert await b.decrypt("user.7", "e1", envelope) == b"secret"  # b caches the key
    await a.shred("user.7")
    assert await b.decrypt("user.7", "e1", envelope) is None  # reads the key store each time
    await a.key_store.close()
    await b.key_store.close()


async def test_no_instance_writes_with_a_key_shredded_elsewhere(tmp_path: Path) -> None:
    ring = KeyRing.generate()
    path = str(tmp_path / "keys.db")
    a = StreamEncryption(ring, SQLiteKeyStore(path))
    b = StreamEncryption(ring, SQLiteKeyStore(path))
    first = await b.encrypt("user.7", "e1", b"before")
    await b.preload(["user.7"])  # b caches the key
    await a.shred("user.7")
    later = await b.encrypt("user.7", "e2", b"written by b after the shred")
    assert later["key"] > first["key"]
    assert await a.decrypt("user.7", "e2", later) == b"written by b after the shred"
    assert await a.decrypt("user.7", "e1", first) is None
    await a.key_store.close()
    await b.key_store.close()


async def test_paged_reads_see_a_shred_within_the_cache_ttl(tmp_path: Path) -> None:
    ring = KeyRing.generate()
    path = str(tmp_path / "keys.db")
    a = StreamEncryption(ring, SQLiteKeyStore(path))
    b = StreamEncryption(ring, SQLiteKeyStore(path), key_cache_ttl=0.05)
    envelope = await a.encrypt("user.7", "e1", b"secret")
    await b.preload(["user.7"])
    assert b.decrypt_loaded("user.7", "e1", envelope) == b"secret"
    await a.shred("user.7")
    await asyncio.sleep(0.06)
    await b.preload(["user.7"])  # what the event store does before each page
    assert b.decrypt_loaded("user.7", "e1", envelope) is None
    await a.key_store.close()
    await b.key_store.close()


async def test_a_page_meeting_a_key_made_elsewhere_reloads_it(tmp_path: Path) -> None:
    ring = KeyRing.generate()
    path = str(tmp_path / "keys.db")
    a = StreamEncryption(ring, SQLiteKeyStore(path))
    b = StreamEncryption(ring, SQLiteKeyStore(path))
    await a.encrypt("user.7", "e1", b"one")
    await b.preload(["user.7"])
    await a.shred("user.7")
    second = await a.encrypt("user.7", "e2", b"two")  # a new version b has not seen
    page = [("user.7", json.dumps(second)), ("user.7", b'{"plain": 1}')]
    await b.preload_page(page)  # fresh, but the page names a newer version: reloaded
    assert b.decrypt_loaded("user.7", "e2", second) == b"two"
    await a.key_store.close()
    await b.key_store.close()


@pytest.mark.parametrize(
    ("stored", "version"),
    [
        ('{"$pepperpy.encrypted": 2, "key": 3, "blob": "AA=="}', 3),
        (b'{"blob":"AA==","key":12,"$pepperpy.encrypted":2}', 12),
        (bytearray(b'{"$pepperpy.encrypted":2,"key":2}'), 2),
        ('{"n": 1}', 0),  # plain data
        (b'{"note": "$pepperpy.encrypted"}', 0),  # the marker as a value
        ('{"$pepperpy.encrypted": 1, "key": 3}', 0),  # another format: left to decrypting
        ('{"$pepperpy.encrypted": true, "key": 3}', 0),
        ('{"$pepperpy.encrypted": 2, "key": "3"}', 0),  # malformed: left to decrypting
        ('{"$pepperpy.encrypted": 2, "key": true}', 0),
        ('{"$pepperpy.encrypted": 2, "key"', 0),  # not JSON: left to decoding
    ],
)
def test_the_key_version_of_stored_data(stored: str | bytes, version: int) -> None:
    assert StreamEncryption.key_version(stored) == version


@pytest.mark.parametrize("version", ["1", None, True, 0, 1.0])
async def test_a_malformed_envelope_is_named_not_read_as_shredded(version: object) -> None:
    crypto = StreamEncryption(KeyRing.generate())
    envelope = dict(await crypto.encrypt("user.1", "e1", b"x"), key=version)
    await crypto.preload(["user.1"])
    with pytest.raises(EncryptionError, match=r"event e1 of 'user.1' has a malformed encryption"):
        crypto.decrypt_loaded("user.1", "e1", envelope)


async def test_a_version_the_key_store_never_held_is_an_error_not_shredded(
    key_store: KeyStore,
) -> None:
    """A forged envelope must not pass for shredded data: only versions shred() marked read
    as gone; any other missing version is an EncryptionError, whatever on_shredded says."""
    message = "names data key 5, which the key store never held"
    keyring = KeyRing.generate()
    for mode in ("redact", "error"):
        crypto = StreamEncryption(keyring, key_store, on_shredded=mode)
        stray = dict(await crypto.encrypt("user.1", "e1", b"x"), key=5)  # never stored
        with pytest.raises(EncryptionError, match=message):
            await crypto.decrypt("user.1", "e1", stray)
        await crypto.preload_page([("user.1", json.dumps(stray))])  # looked for, not there
        with pytest.raises(EncryptionError, match=message):
            crypto.decrypt_loaded("user.1", "e1", stray)
    await key_store.close()


async def test_a_master_key_rotation_keeps_a_preloaded_page_readable(tmp_path: Path) -> None:
    crypto = StreamEncryption(KeyRing.generate("k1"), SQLiteKeyStore(str(tmp_path / "k.db")))
    envelope = await crypto.encrypt("user.1", "e1", b"x")
    await crypto.preload(["user.1"])  # a page about to be decoded
    crypto.keyring.add("k2", os.urandom(32), primary=True)
    assert await crypto.rotate() == 1
    assert crypto.decrypt_loaded("user.1", "e1", envelope) == b"x"  # not read as shredded
    await crypto.preload(["user.1"])  # reloaded: the rows wrapped under k2
    assert crypto.decrypt_loaded("user.1", "e1", envelope) == b"x"
    await crypto.key_store.close()


async def test_a_failing_key_store_names_its_file(tmp_path: Path) -> None:
    path = str(tmp_path / "keys.db")
    keys = SQLiteKeyStore(path)
    with closing(sqlite3.connect(path)) as other, other:
        other.execute("DROP TABLE data_keys")
    with pytest.raises(EncryptionError, match=rf"the key store '{path}' failed: no such table"):
        await keys.load("user.1")
    await keys.close()


async def test_a_rewrap_never_brings_back_a_shredded_key(key_store: KeyStore) -> None:
    crypto = StreamEncryption(KeyRing.generate(), key_store)
    envelope = await crypto.encrypt("user.3", "e1", b"x")
    rows = await key_store.load("user.3")
    master_id, wrapped = rows[1]
    await crypto.shred("user.3")
    await key_store.replace("user.3", 1, master_id, wrapped)  # a rotation that raced the shred
    await key_store.replace("user.3", 2, master_id, wrapped)  # nor creates a version
    assert await key_store.load("user.3") == {1: ("", b"")}
    assert await crypto.decrypt("user.3", "e1", envelope) is None
    await key_store.close()


async def test_a_batch_is_checked_once_and_reads_back() -> None:
    crypto = StreamEncryption(KeyRing.generate())
    envelopes = await crypto.encrypt_many("s.1", [("e1", b"one", ()), ("e2", b"two", ())])
    assert [await crypto.decrypt("s.1", f"e{n}", e) for n, e in enumerate(envelopes, 1)] == [
        b"one",
        b"two",
    ]


@pytest.mark.parametrize(
    ("ttl", "error"),
    [
        (-1, ConfigurationError),
        (float("nan"), ConfigurationError),
        (float("inf"), ConfigurationError),
        (True, TypeError),  # no number: a wrong type
        ("1", TypeError),
    ],
)
def test_the_cache_ttl_is_checked(ttl: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="key_cache_ttl"):
        StreamEncryption(KeyRing.generate(), key_cache_ttl=ttl)  # type: ignore[arg-type]
