"""mark_shredded never overwrites a live key stored after it looked (second review, 1).

It loaded the stream's rows, took every version without one as missing, and wrote the
tombstones with ``replace`` (``INSERT OR REPLACE``). Another instance sharing the key
store could store a live key under such a version in between: the first key of a stream
whose rows an old shred deleted is version 1 again. The tombstone then replaced that key,
and the event the other instance had just encrypted read as shredded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from pepperpy.event.security import (
    KeyRing,
    KeyStore,
    MemoryKeyStore,
    SQLiteKeyStore,
    StreamEncryption,
)

SHREDDED = ""


class RacingKeyStore(KeyStore):
    """Delegates to ``inner``; the first ``load`` after arming runs ``hook`` before it
    returns, i.e. between mark_shredded's look at the rows and its writes."""

    def __init__(self, inner: KeyStore) -> None:
        self.inner = inner
        self.hook: Callable[[], Awaitable[None]] | None = None

    async def load(self, stream: str) -> dict[int, tuple[str, bytes]]:
        rows = await self.inner.load(stream)
        if self.hook is not None:
            hook, self.hook = self.hook, None
            await hook()
        return rows

    async def save(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> bool:
        return await self.inner.save(stream, version, master_key_id, wrapped)

    async def replace(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> None:
        await self.inner.replace(stream, version, master_key_id, wrapped)

    async def delete(self, stream: str) -> int:
        return await self.inner.delete(stream)

    async def streams(self) -> list[str]:
        return await self.inner.streams()


@pytest.fixture(params=["memory", "sqlite"])
def inner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyStore]:
    if request.param == "memory":
        yield MemoryKeyStore()
    else:
        store = SQLiteKeyStore(str(tmp_path / "keys.db"))
        yield store
        store._close()


async def test_a_key_stored_between_the_load_and_the_tombstone_stays_live(
    inner: KeyStore,
) -> None:
    ring = KeyRing.generate()
    racing = RacingKeyStore(inner)
    operator = StreamEncryption(ring, racing)  # runs the migration
    app = StreamEncryption(ring, inner)  # another instance, writing to the stream
    written: dict[str, object] = {}

    async def app_encrypts_the_first_event() -> None:
        written["envelope"] = await app.encrypt("orders", "e-new", b'{"amount": 5}')

    racing.hook = app_encrypts_the_first_event
    assert await operator.mark_shredded("orders", [1, 2]) == 1  # only 2 was missing
    envelope = written["envelope"]
    assert isinstance(envelope, dict) and envelope["key"] == 1
    rows = await inner.load("orders")
    assert rows[1][0] == ring.primary  # still the live key the app made, not a tombstone
    assert rows[2] == (SHREDDED, b"")
    # the event just written reads back, from both instances
    assert await app.decrypt("orders", "e-new", envelope) == b'{"amount": 5}'
    assert await operator.decrypt("orders", "e-new", envelope) == b'{"amount": 5}'
    # and the next key of the stream skips the tombstone
    assert await app.rotate_stream("orders") == 3
