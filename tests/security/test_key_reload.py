"""A page that needs a data key made elsewhere loads it with ``await``, never on the loop.

Two instances share one SQLite key file; one starts a new data key version, the other
reads a page written with it. The key store's query runner is instrumented to fail when
it runs on the event loop's thread: every key store read must go through a worker
thread, including the reload for a key version the cache does not have yet.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import EncryptionError, EventStore
from pepperpy.event.security import KeyRing, SQLiteKeyStore, StreamEncryption


class LoopGuard:
    """Wraps a key store's query runner: refuses calls from the loop thread, logs the rest."""

    def __init__(self, key_store: SQLiteKeyStore) -> None:
        self.loop_thread = threading.get_ident()
        self.on_loop: list[tuple[str, tuple[Any, ...]]] = []
        self.off_loop: list[tuple[str, tuple[Any, ...]]] = []
        run: Callable[[str, tuple[Any, ...]], list[Any]] = key_store._run

        def guarded(sql: str, args: tuple[Any, ...]) -> list[Any]:
            if threading.get_ident() == self.loop_thread:
                self.on_loop.append((sql, args))
                raise AssertionError(f"blocking key store query on the event loop: {sql}")
            self.off_loop.append((sql, args))
            return run(sql, args)

        key_store._run = guarded  # type: ignore[method-assign]

    def loads_of(self, stream: str) -> int:
        selects = [args for sql, args in self.off_loop if sql.startswith("SELECT")]
        return sum(1 for args in selects if args[0] == stream)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/events.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


async def test_a_page_with_a_key_version_made_elsewhere_loads_it_off_the_loop(
    store_url: str, tmp_path: Path
) -> None:
    ring = KeyRing.generate()
    keys_a = SQLiteKeyStore(str(tmp_path / "keys.db"))
    keys_b = SQLiteKeyStore(str(tmp_path / "keys.db"))
    writer = StreamEncryption(ring, keys_a)
    reader = StreamEncryption(ring, keys_b, key_cache_ttl=3600)  # the cache stays fresh
    async with (
        EventStore(store_url, encryption=writer) as store_a,
        EventStore(store_url, encryption=reader) as store_b,
    ):
        await store_a.append("user.7", {"type": "user.created", "data": {"n": 1}})
        assert [e.data for e in await store_b.get_stream("user.7")] == [{"n": 1}]  # cached: v1
        assert await writer.rotate_stream("user.7") == 2  # another instance's new key
        await store_a.append("user.7", {"type": "user.renamed", "data": {"n": 2}})
        guard = LoopGuard(keys_b)

        events = await store_b.get_stream("user.7")
        assert [(e.type, e.data) for e in events] == [
            ("user.created", {"n": 1}),
            ("user.renamed", {"n": 2}),
        ]
        assert guard.on_loop == []
        assert guard.loads_of("user.7") == 1  # the page's preload, awaited on a thread

        live = [e.data async for e in store_b.read_all(streams="user.*")]
        assert live == [{"n": 1}, {"n": 2}]
        assert guard.on_loop == []
        assert guard.loads_of("user.7") == 1  # v2 is cached now: nothing read again
    await keys_a.close()
    await keys_b.close()


async def test_decrypting_a_version_the_page_did_not_preload_says_so(tmp_path: Path) -> None:
    ring = KeyRing.generate()
    keys_a = SQLiteKeyStore(str(tmp_path / "keys.db"))
    keys_b = SQLiteKeyStore(str(tmp_path / "keys.db"))
    writer = StreamEncryption(ring, keys_a)
    reader = StreamEncryption(ring, keys_b, key_cache_ttl=3600)
    await writer.encrypt("user.7", "e1", b"one")
    await reader.preload(["user.7"])
    await writer.rotate_stream("user.7")
    second = await writer.encrypt("user.7", "e2", b"two")
    guard = LoopGuard(keys_b)
    with pytest.raises(EncryptionError, match=r"data key 2 of stream 'user.7' is newer than"):
        reader.decrypt_loaded("user.7", "e2", second)  # no key store query on the loop
    await reader.preload(["user.7"])  # the failed read made the cached keys stale
    assert reader.decrypt_loaded("user.7", "e2", second) == b"two"
    assert guard.on_loop == []
    await keys_a.close()
    await keys_b.close()
