"""An in-memory ``SQLiteKeyStore(":memory:")`` in a forked child.

Its keys live in the parent's connection; the child opened a new one, found no keys,
read the parent's events as forged, and wrote new keys under the versions already taken,
so what the child encrypted into a shared event store no other process could read (nor
the child what the others wrote). The child now gets an EncryptionError saying so, and
nothing is written; a key store in a file works in the child as before."""

from __future__ import annotations

import asyncio
import os
import pathlib

import pytest

from pepperpy.event import EncryptionError
from pepperpy.event.security import KeyRing, SQLiteKeyStore, StreamEncryption
from tests.store.test_fork import in_child

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only"),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


@pytest.mark.parametrize("path", [":memory:", ""])
async def test_an_in_memory_key_store_is_refused_in_a_forked_child(path: str) -> None:
    ring = KeyRing.generate()
    with SQLiteKeyStore(path) as keys:
        crypto = StreamEncryption(ring, keys)
        envelope = await crypto.encrypt("user.1", "e1", b"parent")

        def child() -> str:
            async def run() -> str:
                here = StreamEncryption(ring, keys)
                for attempt in (
                    here.decrypt("user.1", "e1", envelope),
                    here.encrypt("user.1", "e2", b"child"),
                ):
                    try:
                        await attempt
                    except EncryptionError as exc:
                        assert "in memory" in str(exc) and "nothing was read or written" in str(exc)
                    else:
                        return "the child used an empty key store"
                return "refused"

            return asyncio.run(run())

        assert in_child(child) == "refused"
        # the parent's key store is as it was
        assert await crypto.decrypt("user.1", "e1", envelope) == b"parent"
        assert list(await keys.load("user.1")) == [1]


async def test_a_key_store_in_a_file_is_shared_with_the_child(tmp_path: pathlib.Path) -> None:
    ring = KeyRing.generate()
    with SQLiteKeyStore(str(tmp_path / "keys.db")) as keys:
        envelope = await StreamEncryption(ring, keys).encrypt("user.1", "e1", b"parent")

        def child() -> bytes | None:
            return asyncio.run(StreamEncryption(ring, keys).decrypt("user.1", "e1", envelope))

        assert in_child(child) == b"parent"
