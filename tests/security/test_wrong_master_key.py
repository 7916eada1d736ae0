"""A store opened with another master key than the one that wrapped its data keys says so.

The encryption examples build their ring with ``KeyRing.generate()``, a new random key on
every run; a second run then met "cannot unwrap data key 1 of 'user.9'", which did not
say which master key was tried nor that it is most likely the wrong one (user audit).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pepperpy.event import EncryptionError, EventStore
from pepperpy.event.security import KeyRing, SQLiteKeyStore, StreamEncryption


async def _write(tmp_path: Path, keyring: KeyRing) -> None:
    with SQLiteKeyStore(str(tmp_path / "keys.db")) as keys:
        crypto = StreamEncryption(keyring, keys)
        async with EventStore(f"sqlite:///{tmp_path}/events.db", encryption=crypto) as store:
            await store.append("user.9", {"type": "user.created", "data": {"ssn": "123"}})


async def test_the_error_names_the_master_key_and_says_it_is_likely_not_the_one(
    tmp_path: Path,
) -> None:
    await _write(tmp_path, KeyRing({"k1": os.urandom(32)}))
    with SQLiteKeyStore(str(tmp_path / "keys.db")) as keys:
        other = StreamEncryption(KeyRing({"k1": os.urandom(32)}), keys)
        async with EventStore(f"sqlite:///{tmp_path}/events.db", encryption=other) as store:
            with pytest.raises(EncryptionError) as raised:
                await store.get_stream("user.9")
    message = str(raised.value)
    assert message.startswith("cannot unwrap data key 1 of 'user.9' with master key 'k1': ")
    assert "the key ring's 'k1' is probably not the key that wrapped it" in message
    assert "KeyRing.generate()" in message  # the usual cause, named


async def test_the_same_master_key_reads_the_events_back(tmp_path: Path) -> None:
    key = os.urandom(32)
    await _write(tmp_path, KeyRing({"k1": key}, primary="k1"))
    with SQLiteKeyStore(str(tmp_path / "keys.db")) as keys:
        same = StreamEncryption(KeyRing({"k1": key}), keys)
        async with EventStore(f"sqlite:///{tmp_path}/events.db", encryption=same) as store:
            (event,) = await store.get_stream("user.9")
    assert event.data == {"ssn": "123"}
