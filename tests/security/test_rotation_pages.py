"""A master key rotation a page of keys at a time, on every key store (memory, SQLite,
PostgreSQL): part of the key store contract (``KeyStore.rewrap_all``).

rotate() read every live data key and re-wrapped it in memory, then wrote them all with
one ``KeyStore.rewrap``: about 250 MB held at once per million keys. The key store now
reads, re-wraps (through the rotation's callback) and writes a page at a time, still in
one transaction on SQLite and PostgreSQL (all or nothing), and the memory key store puts
every key back if one page fails.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import tracemalloc
from collections.abc import Awaitable, Callable
from contextlib import closing
from typing import Any

import pytest

import pepperpy.event.security._keys as keys_module
from pepperpy.event.security import (
    KeyRing,
    KeyStore,
    MemoryKeyStore,
    PostgresKeyStore,
    SQLiteKeyStore,
    StreamEncryption,
)

TOMBSTONE = ("", b"")
Key = tuple[str, int, str, bytes]


def _other(key_store: KeyStore, place: str | None) -> KeyStore:
    """Another key store on the same keys (another connection), or the memory one."""
    if place is None:
        return key_store
    if place.startswith("postgresql://"):
        return PostgresKeyStore(place)
    return SQLiteKeyStore(place)


async def _seeded(key_store: KeyStore) -> dict[str, dict[int, tuple[str, bytes]]]:
    """Ten live keys over nine streams (two with two versions), and two tombstones."""
    for n in range(9):
        await key_store.save(f"s.{n}", 1, "k1", b"w%d" % n)
    await key_store.save("s.2", 2, "k1", b"w2b")
    await key_store.save("s.5", 2, "k1", b"w5b")
    await key_store.replace("s.3", 1, "", b"")
    await key_store.replace("s.7", 3, "", b"")  # a tombstone beside a live key
    return {stream: await key_store.load(stream) for stream in await key_store.streams()}


def _rewrapped(keys: list[Key]) -> list[Key]:
    return [(stream, version, "k2", b"R" + wrapped) for stream, version, _, wrapped in keys]


async def test_rewrap_all_rewraps_every_live_key_a_page_at_a_time(key_store: KeyStore) -> None:
    before = await _seeded(key_store)
    pages: list[list[Key]] = []

    def rewrap(keys: list[Key]) -> list[Key]:
        pages.append(list(keys))
        return _rewrapped(keys)

    assert await key_store.rewrap_all(rewrap, page=3) == 10
    assert [len(page) for page in pages] == [3, 3, 3, 1]  # never more than a page
    seen = [(stream, version) for page in pages for stream, version, _, _ in page]
    live = [
        (stream, version)
        for stream, rows in before.items()
        for version, (master, _) in rows.items()
        if master
    ]
    assert sorted(seen) == sorted(live) and len(set(seen)) == len(seen)  # each once
    for stream, rows in before.items():
        expected = {
            version: row if not row[0] else ("k2", b"R" + row[1]) for version, row in rows.items()
        }
        assert await key_store.load(stream) == expected
    assert await key_store.rewrap_all(rewrap, page=100) == 10  # one page of them all
    assert len(pages) == 5 and len(pages[-1]) == 10


async def test_rewrap_all_of_no_keys_counts_none(key_store: KeyStore) -> None:
    calls: list[int] = []

    def rewrap(keys: list[Key]) -> list[Key]:
        calls.append(len(keys))
        return keys

    assert await key_store.rewrap_all(rewrap) == 0
    await key_store.save("s.1", 1, "k1", b"x")
    await key_store.replace("s.1", 1, "", b"")
    assert await key_store.rewrap_all(rewrap, page=1) == 0
    assert calls == []
    for page in (0, -1, 1.5, "2"):
        with pytest.raises(ValueError, match="page is an int >= 1"):
            await key_store.rewrap_all(rewrap, page=page)  # type: ignore[arg-type]


async def test_a_rotation_failing_on_a_later_page_puts_every_key_back(
    key_store: KeyStore,
) -> None:
    """All or nothing across pages: the pages re-wrapped before the failure are undone
    too (one transaction on SQLite and PostgreSQL; put back by the memory key store)."""
    before = await _seeded(key_store)
    pages = 0

    def rewrap(keys: list[Key]) -> list[Key]:
        nonlocal pages
        pages += 1
        if pages == 3:
            raise RuntimeError("refused by the test on the third page")
        return _rewrapped(keys)

    with pytest.raises(RuntimeError, match="third page"):
        await key_store.rewrap_all(rewrap, page=3)
    assert pages == 3
    for stream, rows in before.items():
        assert await key_store.load(stream) == rows
    assert await key_store.rewrap_all(_rewrapped, page=3) == 10  # it can be run again


async def test_rotate_crosses_pages_and_every_key_reads_under_the_new_master_key(
    key_store: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys_module, "ROTATION_PAGE", 3)
    ring = KeyRing({"old": os.urandom(32)})
    crypto = StreamEncryption(ring, key_store)
    written = []
    for n in range(8):
        stream = f"s.{n}"
        written.append((stream, "e1", await crypto.encrypt(stream, "e1", b"%d" % n)))
    await crypto.rotate_stream("s.4")
    written.append(("s.4", "e2", await crypto.encrypt("s.4", "e2", b"4b")))
    await crypto.shred("s.6")
    pages = _spy_pages(key_store, monkeypatch)
    ring.add("new", os.urandom(32), primary=True)

    assert await crypto.rotate() == 8  # nine keys, one shredded
    assert pages == [3, 3, 2]  # page boundaries crossed, a page at a time
    for stream in await key_store.streams():
        masters = {master for master, _ in (await key_store.load(stream)).values()}
        assert masters == ({""} if stream == "s.6" else {"new"}), stream
    fresh = StreamEncryption(KeyRing({"new": ring.key("new")}), key_store)
    for stream, event_id, envelope in written:
        plain = await fresh.decrypt(stream, event_id, envelope)
        assert (plain is None) == (stream == "s.6"), stream


def _spy_pages(key_store: KeyStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each page the key store gives rotate()'s callback, in order."""
    pages: list[int] = []
    original = key_store.rewrap_all

    async def spying(rewrap: Callable[[list[Key]], list[Key]], *, page: int | None = None) -> int:
        def counted(keys: list[Key]) -> list[Key]:
            pages.append(len(keys))
            return rewrap(keys)

        return await original(counted, page=page)

    monkeypatch.setattr(key_store, "rewrap_all", spying)
    return pages


async def test_keys_shredded_during_a_rotation_stay_shredded(
    key_store: KeyStore, key_store_place: str | None
) -> None:
    """Shreds made from elsewhere while the rotation is on its second page: of a key
    already re-wrapped (PostgreSQL: it waits for the commit, then wins; SQLite: it
    waits for the rotation's write lock) and of one not read yet."""
    before = await _seeded(key_store)
    other = _other(key_store, key_store_place)
    loop = asyncio.get_running_loop()
    shreds: list[Any] = []
    pages = 0

    def rewrap(keys: list[Key]) -> list[Key]:
        nonlocal pages
        pages += 1
        if pages == 2:  # s.0 was on the first page, s.8 is on the last
            for stream in ("s.0", "s.8"):
                shred = other.replace(stream, 1, "", b"")
                shreds.append(asyncio.run_coroutine_threadsafe(shred, loop))
        return _rewrapped(keys)

    try:
        await key_store.rewrap_all(rewrap, page=3)
        await asyncio.wait_for(asyncio.gather(*map(asyncio.wrap_future, shreds)), 30)
        for stream, rows in before.items():
            now = await key_store.load(stream)
            for version, row in rows.items():
                if stream in ("s.0", "s.8") and version == 1 or not row[0]:
                    assert now[version] == TOMBSTONE, (stream, version)
                else:
                    assert now[version] == ("k2", b"R" + row[1]), (stream, version)
    finally:
        if other is not key_store:
            await other.close()


async def test_a_rotation_cancelled_between_pages_leaves_every_key_as_it_was(
    key_store: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while on its second page, a rotation stops before the next one and
    rolls back: no key is left under the new master key, and no page is written after
    rotate() raised. (A memory key store's rotation never waits: nothing can cancel it
    half-way.)"""
    if isinstance(key_store, MemoryKeyStore):
        pytest.skip("a memory key store's rotation never waits, so it is never cut off")
    monkeypatch.setattr(keys_module, "ROTATION_PAGE", 2)
    ring = KeyRing({"old": os.urandom(32)})
    crypto = StreamEncryption(ring, key_store)
    written = [(f"s.{n}", await crypto.encrypt(f"s.{n}", "e1", b"%d" % n)) for n in range(9)]
    before = {stream: await key_store.load(stream) for stream, _ in written}
    ring.add("new", os.urandom(32), primary=True)
    loop = asyncio.get_running_loop()
    here = threading.get_ident()
    task: asyncio.Task[int] | None = None
    pages = _spy_pages(key_store, monkeypatch)
    original = key_store.rewrap_all

    async def cancelling(
        rewrap: Callable[[list[Key]], list[Key]], *, page: int | None = None
    ) -> int:
        def on_page(keys: list[Key]) -> list[Key]:
            rewrapped = rewrap(keys)
            if len(pages) == 2:  # the second page re-wrapped: cancel rotate() there
                assert task is not None
                if threading.get_ident() == here:
                    task.cancel()  # takes effect at the key store's next wait
                else:  # SQLite's worker thread: wait until the cancellation landed
                    asyncio.run_coroutine_threadsafe(_cancel(task), loop).result(10)
            return rewrapped

        return await original(on_page, page=page)

    monkeypatch.setattr(key_store, "rewrap_all", cancelling)
    task = asyncio.ensure_future(crypto.rotate())
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(task), 60)
    assert task.cancelled()
    assert pages == [2, 2, 2]  # stopped at the third page (of five), not run to the end
    for stream, rows in before.items():
        assert await key_store.load(stream) == rows, stream  # every key as it was
    monkeypatch.undo()
    assert await crypto.rotate() == 9  # run again, it finishes
    fresh = StreamEncryption(KeyRing({"new": ring.key("new")}), key_store)
    for stream, envelope in written:
        assert await fresh.decrypt(stream, "e1", envelope) is not None


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel ``task``, and return once it has seen the cancellation (it was scheduled
    ahead of this coroutine's next step)."""
    task.cancel()
    await asyncio.sleep(0)


async def test_a_rotation_holds_one_page_in_memory_not_every_key(
    key_store: KeyStore, key_store_place: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The peak of memory allocated during rotate() over 4 times the keys grows by far
    less than the keys themselves take (about 250 bytes each, re-wrapped): one page is
    held at a time. (The memory key store holds every key in memory anyway.)"""
    if key_store_place is None:
        pytest.skip("a memory key store holds every key in memory anyway")
    monkeypatch.setattr(keys_module, "ROTATION_PAGE", 250)  # 16 pages, then 64
    ring = KeyRing({"old": os.urandom(32)})
    crypto = StreamEncryption(ring, key_store)
    small, large = 4_000, 16_000
    await _bulk_keys(crypto, key_store_place, 0, small)
    ring.add("new", os.urandom(32), primary=True)
    small_peak = await _peak_during(lambda: crypto.rotate(), small)
    await _bulk_keys(crypto, key_store_place, small, large)  # wrapped under "new"
    ring.add("newer", os.urandom(32), primary=True)
    large_peak = await _peak_during(lambda: crypto.rotate(), large)
    per_key = (large_peak - small_peak) / (large - small)
    # holding the re-wrapped keys costs over 200 bytes each: a page held, about nothing
    assert per_key < 20, (small_peak, large_peak)


async def _peak_during(rotation: Callable[[], Awaitable[int]], count: int) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        assert await rotation() == count
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


async def _bulk_keys(crypto: StreamEncryption, place: str, start: int, stop: int) -> None:
    """Live keys for streams ``start`` to ``stop`` under the primary master key, written
    in one go (a save each would take minutes on SQLite, fsync by fsync)."""
    rows = [
        (f"s.{n:06d}", 1, *crypto._wrap(f"s.{n:06d}", 1, os.urandom(32)))
        for n in range(start, stop)
    ]
    await crypto.key_store.streams()  # the table is there
    if place.startswith("postgresql://"):
        import asyncpg

        admin = await asyncpg.connect(place)
        try:
            await admin.copy_records_to_table("pepperpy_data_keys", records=rows)
        finally:
            await admin.close()
        return
    with closing(sqlite3.connect(place)) as db, db:
        db.executemany("INSERT INTO data_keys VALUES (?, ?, ?, ?)", rows)


class OwnKeyStore(KeyStore):
    """A key store of one's own, with the contract's required methods only: it gets the
    default ``rewrap_all`` (and ``rewrap``, ``load_many``)."""

    def __init__(self) -> None:
        self.inner = MemoryKeyStore()
        self.writes: list[int] = []  # the keys of each rewrap() call

    async def load(self, stream: str) -> dict[int, tuple[str, bytes]]:
        return await self.inner.load(stream)

    async def save(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> bool:
        return await self.inner.save(stream, version, master_key_id, wrapped)

    async def replace(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> None:
        await self.inner.replace(stream, version, master_key_id, wrapped)

    async def rewrap(self, keys: Any) -> None:
        self.writes.append(len(keys))
        await super().rewrap(keys)

    async def delete(self, stream: str) -> int:
        return await self.inner.delete(stream)

    async def streams(self) -> list[str]:
        return await self.inner.streams()


async def test_the_default_rewrap_all_writes_each_page_with_one_rewrap() -> None:
    """A key store of one's own that overrides none of it: each page is read with
    ``load_many``, re-wrapped and written with one ``rewrap`` before the next."""
    store = OwnKeyStore()
    before = await _seeded(store)
    pages: list[int] = []

    def rewrap(keys: list[Key]) -> list[Key]:
        assert len(pages) == len(store.writes)  # the page before was written already
        pages.append(len(keys))
        return _rewrapped(keys)

    assert await store.rewrap_all(rewrap, page=3) == 10
    assert pages == store.writes == [3, 3, 3, 1]
    for stream, rows in before.items():
        expected = {
            version: row if not row[0] else ("k2", b"R" + row[1]) for version, row in rows.items()
        }
        assert await store.load(stream) == expected


async def test_a_postgres_rotation_bounds_each_statement_not_the_whole(postgres_url: str) -> None:
    """Each page's statements are bounded by command_timeout, the rotation as a whole is
    not (a million keys take longer than one bound): three pages whose write waits 2 s
    each (a trigger) under a 5 s bound, 6 s in all, in one transaction."""
    import asyncpg

    async with PostgresKeyStore(f"{postgres_url}?command_timeout=5") as keys:
        for stream in ("a", "b", "c"):
            await keys.save(stream, 1, "k1", b"w")
        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.execute(
                "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " PERFORM pg_sleep(2); RETURN NEW; END $$"
            )
            await admin.execute(
                "CREATE TRIGGER slow BEFORE UPDATE ON pepperpy_data_keys"
                " FOR EACH ROW EXECUTE FUNCTION slow()"
            )
        finally:
            await admin.close()
        assert await keys.rewrap_all(_rewrapped, page=1) == 3
        for stream in ("a", "b", "c"):
            assert await keys.load(stream) == {1: ("k2", b"Rw")}
