"""StreamEncryption's cache of unwrapped data keys is bounded.

It kept every stream it ever touched (about 2.5 KB each: an AES-GCM context per key), so
a process writing or reading millions of streams (one per user, as crypto-shredding
suggests; a projection over the whole log) grew without end. It now keeps the streams
used last; a page being decoded holds its own keys, so eviction never leaves a page,
or a live subscription's buffered page, without them."""

from __future__ import annotations

from pathlib import Path

import pytest

from pepperpy.event import Event, EventStore
from pepperpy.event.security import KeyRing, SQLiteKeyStore, StreamEncryption, _encryption

SIZE = 4  # the cache's bound in these tests (10,000 by default)


@pytest.fixture
def small_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_encryption, "_CACHE_SIZE", SIZE, raising=False)


async def test_the_cache_keeps_the_streams_used_last(tmp_path: Path, small_cache: None) -> None:
    async with SQLiteKeyStore(str(tmp_path / "keys.db")) as keys:
        crypto = StreamEncryption(KeyRing.generate(), keys)
        async with EventStore(f"sqlite:///{tmp_path}/events.db", encryption=crypto) as store:
            for n in range(40):
                await store.append(f"user.{n}", Event("user.created", {"n": n}))
            assert len(crypto._cache) <= SIZE
            # a page of more streams than the cache holds reads whole, in both forms
            assert [e.data["n"] for e in await store.read_all()] == list(range(40))
            assert [e.data["n"] async for e in store.read_all()] == list(range(40))
            # the streams used last, one at a time: user.1 is evicted whatever order the
            # pages above loaded their keys in (that follows str hashes, which vary by run)
            for n in (0, 2, 3, 4, 5):
                assert (await store.get_stream(f"user.{n}"))[0].data == {"n": n}
            assert len(crypto._cache) <= SIZE
            assert "user.1" not in crypto._cache
            # an evicted stream is read from the key store again: a shred is seen
            await StreamEncryption(crypto.keyring, keys).shred("user.1")
            assert (await store.get_stream("user.1"))[0].data is None


async def test_a_buffered_page_keeps_its_keys_while_others_are_used(
    tmp_path: Path, small_cache: None
) -> None:
    """A subscription decodes its page one event at a time, as it is iterated: keys the
    cache evicted meanwhile (other streams written and read) stay held by the page."""
    async with SQLiteKeyStore(str(tmp_path / "keys.db")) as keys:
        crypto = StreamEncryption(KeyRing.generate(), keys, key_cache_ttl=0)
        async with EventStore(f"sqlite:///{tmp_path}/events.db", encryption=crypto) as store:
            for n in range(20):
                await store.append(f"user.{n}", Event("user.created", {"n": n}))
            seen = []
            subscription = store.subscribe(0, streams="user.#")
            async for event in subscription:
                seen.append(event.data["n"])
                # meanwhile the process touches many other streams
                await store.append(f"other.{event.data['n']}", Event("x", {}))
                for m in range(SIZE * 2):
                    await store.get_stream(f"other.{m}")
                if len(seen) == 20:
                    break
            await subscription.aclose()
            assert seen == list(range(20))
            assert len(crypto._cache) <= SIZE
