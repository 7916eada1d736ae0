"""A closed MemoryKeyStore refuses every call, as the SQLite and PostgreSQL key stores
do: it used to go on working after close(), so code using a key store it had closed
passed its tests on memory and failed on a database."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import pytest

from pepperpy.event import ClosedError
from pepperpy.event.security import KeyRing, MemoryKeyStore, StreamEncryption

CALLS: dict[str, Callable[[MemoryKeyStore], Awaitable[object]]] = {
    "load": lambda keys: keys.load("s.1"),
    "load_many": lambda keys: keys.load_many(["s.1"]),
    "save": lambda keys: keys.save("s.1", 2, "k1", b"y"),
    "replace": lambda keys: keys.replace("s.1", 1, "k1", b"z"),
    "rewrap": lambda keys: keys.rewrap([("s.1", 1, "k1", b"z")]),
    "rewrap_all": lambda keys: keys.rewrap_all(lambda page: page),
    "tombstone": lambda keys: keys.tombstone("s.1", [1]),
    "delete": lambda keys: keys.delete("s.1"),
    "streams": lambda keys: keys.streams(),
    "purge": lambda keys: keys.purge(),
}


@pytest.mark.parametrize("call", sorted(CALLS))
async def test_each_call_on_a_closed_memory_key_store_raises_closed_error(call: str) -> None:
    async with MemoryKeyStore() as keys:
        await keys.save("s.1", 1, "k1", b"x")
    await keys.close()  # idempotent
    with pytest.raises(ClosedError, match="memory key store is closed"):
        await CALLS[call](keys)


async def test_encryption_over_a_closed_memory_key_store_raises_closed_error() -> None:
    keys = MemoryKeyStore()
    crypto = StreamEncryption(KeyRing({"k1": os.urandom(32)}), keys)
    await keys.close()
    with pytest.raises(ClosedError, match="memory key store is closed"):
        await crypto.encrypt("s.1", "e1", b"{}")
