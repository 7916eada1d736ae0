"""Key rotation and shredding cancelled at every await point (cancellation audit).

Each case blocks one key store call on an asyncio.Event (before or after it writes),
cancels the caller there, then checks: every stream still reads (no event under a key
that is not stored), the retried operation completes, and after a retried rotation the
old master key can go (no half-rotated key table).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event.security import KeyRing, SQLiteKeyStore, StreamEncryption
from pepperpy.event.security._keys import Rewrap

K1, K2 = os.urandom(32), os.urandom(32)


class Gated(SQLiteKeyStore):
    """Blocks the first ``method`` call once armed: ``entered`` is set there, and it goes
    on when ``gate`` is set. ``when`` is ``"before"`` or ``"after"`` the real call."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.method: str | None = None
        self.when = "before"
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    def arm(self, method: str, when: str) -> None:
        self.method, self.when = method, when

    async def _gated(self, name: str, call: Callable[[], Awaitable[Any]]) -> Any:
        if name != self.method or self.entered.is_set():
            return await call()
        if self.when == "before":
            self.entered.set()
            await self.gate.wait()
            return await call()
        result = await call()
        self.entered.set()
        await self.gate.wait()
        return result

    async def load(self, stream: str) -> dict[int, tuple[str, bytes]]:
        return await self._gated("load", lambda: super(Gated, self).load(stream))  # type: ignore[no-any-return]

    async def save(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> bool:
        return await self._gated(  # type: ignore[no-any-return]
            "save", lambda: super(Gated, self).save(stream, version, master_key_id, wrapped)
        )

    async def replace(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> None:
        await self._gated(
            "replace", lambda: super(Gated, self).replace(stream, version, master_key_id, wrapped)
        )

    async def load_many(self, streams: Sequence[str]) -> dict[str, dict[int, tuple[str, bytes]]]:
        return await self._gated("load_many", lambda: super(Gated, self).load_many(streams))  # type: ignore[no-any-return]

    async def tombstone(self, stream: str, versions: Sequence[int]) -> None:
        await self._gated("tombstone", lambda: super(Gated, self).tombstone(stream, versions))

    async def rewrap(self, keys: Sequence[tuple[str, int, str, bytes]]) -> None:
        await self._gated("rewrap", lambda: super(Gated, self).rewrap(keys))

    async def rewrap_all(self, rewrap: Rewrap, *, page: int | None = None) -> int:
        return await self._gated(  # type: ignore[no-any-return]
            "rewrap_all", lambda: super(Gated, self).rewrap_all(rewrap, page=page)
        )

    async def streams(self) -> list[str]:
        return await self._gated("streams", lambda: super(Gated, self).streams())  # type: ignore[no-any-return]


async def _written(enc: StreamEncryption) -> list[tuple[str, str, dict[str, Any]]]:
    """Events on two streams, stream 'a' under two data key versions."""
    written = []
    for n in range(2):
        written.append(("a", f"a{n}", await enc.encrypt("a", f"a{n}", b"A%d" % n)))
    await enc.rotate_stream("a")
    written.append(("a", "a2", await enc.encrypt("a", "a2", b"A2")))
    written.append(("b", "b0", await enc.encrypt("b", "b0", b"B0")))
    return written


async def _cancelled_at(store: Gated, method: str, when: str, operation: Awaitable[Any]) -> None:
    store.arm(method, when)
    task = asyncio.ensure_future(operation)
    await store.entered.wait()
    task.cancel()
    store.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    store.arm("", "before")


async def _all_read(
    keyring: KeyRing, store: SQLiteKeyStore, written: list[tuple[str, str, dict[str, Any]]]
) -> None:
    fresh = StreamEncryption(keyring, store)
    for stream, event_id, envelope in written:
        assert await fresh.decrypt(stream, event_id, envelope) is not None, (stream, event_id)


#: rotate() is one KeyStore.rewrap_all (its pages read, re-wrapped and written in one
#: transaction): cancelled before it starts, or once it is over
POINTS = [("rewrap_all", "before"), ("rewrap_all", "after")]


@pytest.mark.parametrize(("method", "when"), POINTS)
async def test_a_cancelled_master_key_rotation_keeps_every_stream_readable(
    tmp_path: Path, method: str, when: str
) -> None:
    keyring = KeyRing({"k1": K1})
    store = Gated(str(tmp_path / "keys.db"))
    enc = StreamEncryption(keyring, store)
    written = await _written(enc)
    keyring.add("k2", K2, primary=True)

    await _cancelled_at(store, method, when, enc.rotate())

    await _all_read(keyring, store, written)
    for stream, event_id, envelope in written:  # the cancelled instance too
        assert await enc.decrypt(stream, event_id, envelope) is not None
    assert await enc.rotate() == 3  # the retry completes: every live key
    for stream in await store.streams():
        assert {master for master, _ in (await store.load(stream)).values()} == {"k2"}
    await _all_read(KeyRing({"k2": K2}), store, written)  # k1 can go now
    await store.close()


@pytest.mark.parametrize(
    ("method", "when"), [("load", "before"), ("save", "before"), ("save", "after")]
)
async def test_a_cancelled_data_key_rotation_keeps_the_stream_readable(
    tmp_path: Path, method: str, when: str
) -> None:
    keyring = KeyRing({"k1": K1})
    store = Gated(str(tmp_path / "keys.db"))
    enc = StreamEncryption(keyring, store)
    written = await _written(enc)

    await _cancelled_at(store, method, when, enc.rotate_stream("a"))

    await _all_read(keyring, store, written)
    version = await enc.rotate_stream("a")  # the retry completes
    assert version >= 3
    envelope = await enc.encrypt("a", "a3", b"A3")  # under a key that is stored
    stored = await store.load("a")
    assert envelope["key"] in stored and envelope["key"] >= version
    await _all_read(keyring, store, [*written, ("a", "a3", envelope)])
    await store.close()


@pytest.mark.parametrize(
    ("method", "when"), [("load", "before"), ("tombstone", "before"), ("tombstone", "after")]
)
async def test_a_cancelled_shred_still_shreds_the_whole_stream(
    tmp_path: Path, method: str, when: str
) -> None:
    """Before, a shred cancelled between its writes left some versions live: part of
    the stream still read, until someone shredded it again."""
    keyring = KeyRing({"k1": K1})
    store = Gated(str(tmp_path / "keys.db"))
    enc = StreamEncryption(keyring, store, key_cache_ttl=0)
    written = await _written(enc)

    await _cancelled_at(store, method, when, enc.shred("a"))

    fresh = StreamEncryption(keyring, store)
    for stream, event_id, envelope in written:
        for reader in (enc, fresh):
            plain = await reader.decrypt(stream, event_id, envelope)
            assert (plain is None) == (stream == "a"), (stream, event_id)
    assert await enc.shred("a") is False  # nothing was left to shred
    after = await enc.encrypt("a", "later", b"L")  # a new key above the tombstones
    assert await enc.decrypt("a", "later", after) == b"L"
    await store.close()


async def test_a_cancelled_rotation_writes_nothing_after_it_returned(tmp_path: Path) -> None:
    """SQLite's writes run on a worker thread, which a cancellation does not stop: the
    rotation under way there must be over by the time rotate() raises CancelledError, so
    that what the caller sees then (and retries from) is the key table as it stays.
    Cancelled before its first page, it writes none: every key stays as it was."""
    keyring = KeyRing({"k1": K1})
    store = SQLiteKeyStore(str(tmp_path / "keys.db"))
    enc = StreamEncryption(keyring, store)
    written = await _written(enc)
    keyring.add("k2", K2, primary=True)
    entered, gate = threading.Event(), threading.Event()
    run = store._rewrap_all
    finished: list[bool] = []  # per rotation: was the rotate() task over when it ended

    task: asyncio.Future[int] | None = None

    def gated(rewrap: Rewrap, size: int) -> int:
        entered.set()
        gate.wait()
        try:
            return run(rewrap, size)
        finally:
            assert task is not None
            finished.append(task.done())

    store._rewrap_all = gated  # type: ignore[method-assign]
    task = asyncio.ensure_future(enc.rotate())
    assert await asyncio.to_thread(entered.wait, 10), "the rotation never reached its write"
    task.cancel()
    # the rotation is held back until the task had every chance to end without it
    await asyncio.wait((task,), timeout=0.5)
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == [False], "rotate() raised while its rotation was still under way"
    for stream in await store.streams():
        assert {master for master, _ in (await store.load(stream)).values()} == {"k1"}
    await _all_read(keyring, store, written)
    await store.close()
