"""A data key wrapped under a master key the ring lacks: the error says which and what to do.

Before, reading (or writing to, or rotating) such a stream raised EncryptionError
"master key 'k1' is not in the key ring" and nothing more: not which stream or data
key needed it, which keys the ring held, nor that the key was retired too early.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pepperpy.event import EncryptionError, EventStore
from pepperpy.event.security import KeyRing, SQLiteKeyStore, StreamEncryption

OLD, NEW = b"o" * 32, b"n" * 32
EXPECTED = (
    "cannot unwrap data key 1 of 'user.1': it is wrapped under master key 'k1', which is"
    " not in the key ring (it holds ['k2']); add that key to the ring (ring.add('k1', key)):"
    " retire a master key only once rotate() re-wrapped every data key under its successor"
    " (see 'Keeping the master key' in docs/security.md)"
)


async def test_a_retired_master_key_is_named_with_the_stream_and_the_remedy(
    tmp_path: Path,
) -> None:
    url, keys = f"sqlite:///{tmp_path}/events.db", str(tmp_path / "keys.db")
    async with (
        SQLiteKeyStore(keys) as key_store,
        EventStore(url, encryption=StreamEncryption(KeyRing({"k1": OLD}), key_store)) as store,
    ):
        await store.append("user.1", {"type": "user.created", "data": {"n": 1}})
    async with SQLiteKeyStore(keys) as key_store:
        crypto = StreamEncryption(KeyRing({"k2": NEW}), key_store)
        async with EventStore(url, encryption=crypto) as store:
            for attempt in (
                store.get_stream("user.1"),
                store.append("user.1", {"type": "user.created", "data": {"n": 2}}),
                crypto.rotate(),
            ):
                with pytest.raises(EncryptionError) as refused:
                    await attempt
                assert str(refused.value) == EXPECTED
        # the remedy the message gives works
        crypto.keyring.add("k1", OLD)
        assert await crypto.rotate() == 1
        async with EventStore(url, encryption=crypto) as store:
            assert [event.data for event in await store.get_stream("user.1")] == [{"n": 1}]
