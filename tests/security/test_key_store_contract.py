"""The KeyStore contract, on every key store: memory, SQLite and PostgreSQL.

One suite (``key_store``, see conftest): what StreamEncryption relies on, and the
rotation's single write (``rewrap``): all of a rotation's keys or none, where the key
store has transactions (SQLite and PostgreSQL). A rotation wrote one key per
transaction, so a failure half-way left keys under both master keys."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing

import pytest

from pepperpy.event import ClosedError, EncryptionError, EventStore
from pepperpy.event.security import (
    KeyRing,
    KeyStore,
    MemoryKeyStore,
    PostgresKeyStore,
    SQLiteKeyStore,
    StreamEncryption,
)
from tests.conftest import unique_name

TOMBSTONE = ("", b"")


async def test_a_version_is_stored_once(key_store: KeyStore) -> None:
    assert await key_store.load("s.1") == {}
    assert await key_store.save("s.1", 1, "k1", b"first") is True
    assert await key_store.save("s.1", 1, "k1", b"second") is False  # another writer's
    assert await key_store.save("s.1", 2, "k1", b"\x00two") is True
    assert await key_store.load("s.1") == {1: ("k1", b"first"), 2: ("k1", b"\x00two")}
    assert await key_store.load("s.2") == {}


async def test_a_tombstone_overwrites_anything_a_rewrap_only_a_live_key(
    key_store: KeyStore,
) -> None:
    await key_store.save("s.1", 1, "k1", b"one")
    await key_store.save("s.1", 2, "k1", b"two")
    await key_store.replace("s.1", 1, "", b"")
    await key_store.replace("s.1", 5, "", b"")  # a version with no row yet: tombstoned too
    await key_store.replace("s.1", 2, "k2", b"two again")
    await key_store.replace("s.1", 1, "k2", b"back")  # never over a tombstone
    await key_store.replace("s.1", 3, "k2", b"new")  # nor makes a version
    assert await key_store.load("s.1") == {1: TOMBSTONE, 2: ("k2", b"two again"), 5: TOMBSTONE}


async def test_rewrap_writes_live_keys_only(key_store: KeyStore) -> None:
    await key_store.save("a", 1, "k1", b"a1")
    await key_store.save("a", 2, "k1", b"a2")
    await key_store.save("b", 1, "k1", b"b1")
    await key_store.replace("a", 2, "", b"")
    await key_store.rewrap([])
    await key_store.rewrap(
        [("a", 1, "k2", b"A1"), ("a", 2, "k2", b"A2"), ("b", 1, "k2", b"B1"), ("c", 1, "k2", b"C")]
    )
    assert await key_store.load("a") == {1: ("k2", b"A1"), 2: TOMBSTONE}
    assert await key_store.load("b") == {1: ("k2", b"B1")}
    assert await key_store.load("c") == {}


async def test_load_many_reads_each_stream_named(key_store: KeyStore) -> None:
    """What rotate() reads, a thousand streams at a time: it loaded each stream with a
    query of its own (20,000 keys took 13 s to rotate on SQLite, 26 s on PostgreSQL;
    now 2 s and 3 s, the re-wrapping itself)."""
    names = [f"s.{n}" for n in range(1200)]  # more than one query's worth
    for n, name in enumerate(names):
        await key_store.save(name, 1, "k1", b"%d" % n)
    await key_store.save("s.7", 2, "k1", b"7b")
    await key_store.replace("s.8", 1, "", b"")
    assert await key_store.load_many([]) == {}
    loaded = await key_store.load_many([*names, "none", "s.7"])
    assert list(loaded) == [*names, "none"]
    assert loaded["s.7"] == {1: ("k1", b"7"), 2: ("k1", b"7b")}
    assert loaded["s.8"] == {1: TOMBSTONE}
    assert loaded["s.1199"] == {1: ("k1", b"1199")}
    assert loaded["none"] == {}
    for name in names[::97]:
        assert loaded[name] == await key_store.load(name)


async def test_delete_forgets_a_stream_and_its_versions(key_store: KeyStore) -> None:
    await key_store.save("s.1", 1, "k1", b"one")
    await key_store.replace("s.1", 2, "", b"")
    await key_store.save("s.2", 1, "k1", b"other")
    assert await key_store.delete("s.1") == 2  # tombstones too
    assert await key_store.delete("s.1") == 0
    assert await key_store.load("s.1") == {}
    assert await key_store.streams() == ["s.2"]
    assert await key_store.save("s.1", 1, "k1", b"again") is True  # the number is free


async def test_streams_are_listed_once_in_code_point_order(key_store: KeyStore) -> None:
    names = ["user.9", "user.10", "Zed", "a", "é", "z", "日本"]
    for name in names:
        await key_store.save(name, 1, "k1", b"x")
        await key_store.save(name, 2, "k1", b"y")
    await key_store.replace("tomb", 1, "", b"")
    assert await key_store.streams() == sorted([*names, "tomb"])


async def test_concurrent_first_writes_agree_on_one_key(
    key_store: KeyStore, key_store_place: str | None
) -> None:
    other = _another(key_store, key_store_place)
    try:
        ring = KeyRing.generate()
        writers = [StreamEncryption(ring, store) for store in (key_store, other) * 3]
        envelopes = await asyncio.gather(
            *(writer.encrypt("s.x", f"e{n}", b"v") for n, writer in enumerate(writers))
        )
        assert {envelope["key"] for envelope in envelopes} == {1}
        reader = StreamEncryption(ring, other)
        for n, envelope in enumerate(envelopes):
            assert await reader.decrypt("s.x", f"e{n}", envelope) == b"v"
        assert list(await key_store.load("s.x")) == [1]
    finally:
        if other is not key_store:
            await other.close()


async def test_rotate_rewraps_every_live_key_and_counts_them(key_store: KeyStore) -> None:
    ring = KeyRing({"old": os.urandom(32)})
    crypto = StreamEncryption(ring, key_store)
    written = {}
    for stream in ("a", "b", "c"):
        written[stream] = await crypto.encrypt(stream, "e1", stream.encode())
    await crypto.rotate_stream("a")
    written["a2"] = await crypto.encrypt("a", "e2", b"a2")
    await crypto.shred("c")
    ring.add("new", os.urandom(32), primary=True)
    assert await crypto.rotate() == 3  # a (two versions) and b; c is shredded
    assert await crypto.rotate() == 3  # again: the same keys, under "new" already
    for stream in ("a", "b", "c"):
        masters = {master for master, _ in (await key_store.load(stream)).values()}
        assert masters == ({""} if stream == "c" else {"new"})
    fresh = StreamEncryption(KeyRing({"new": ring.key("new")}), key_store)
    assert await fresh.decrypt("a", "e1", written["a"]) == b"a"
    assert await fresh.decrypt("a", "e2", written["a2"]) == b"a2"
    assert await fresh.decrypt("b", "e1", written["b"]) == b"b"
    assert await fresh.decrypt("c", "e1", written["c"]) is None


async def test_a_rotation_failing_half_way_rewraps_nothing(
    key_store: KeyStore, key_store_place: str | None
) -> None:
    if isinstance(key_store, MemoryKeyStore):
        pytest.skip("a memory key store cannot fail half-way")
    ring = KeyRing({"old": os.urandom(32)})
    crypto = StreamEncryption(ring, key_store)
    for stream in ("s.1", "s.2", "s.3", "s.4"):
        await crypto.encrypt(stream, "e1", b"x")
    assert key_store_place is not None
    await _refuse_updates_of(key_store, key_store_place, "s.3")
    ring.add("new", os.urandom(32), primary=True)
    with pytest.raises(EncryptionError, match="refused by the test"):
        await crypto.rotate()
    for stream in ("s.1", "s.2", "s.3", "s.4"):  # all under the old key: nothing written
        assert [master for master, _ in (await key_store.load(stream)).values()] == ["old"]


async def test_a_shred_failing_half_way_shreds_nothing(
    key_store: KeyStore, key_store_place: str | None
) -> None:
    """Its tombstones were written one at a time, so a shred failing at the second
    version (a lock another process held, a full disk) left the first shredded and the
    others readable: half a stream erased, which the caller could not tell."""
    if isinstance(key_store, MemoryKeyStore):
        pytest.skip("a memory key store cannot fail half-way")
    crypto = StreamEncryption(KeyRing.generate(), key_store)
    envelopes = [await crypto.encrypt("s.1", "e1", b"one")]
    for n in (2, 3):
        await crypto.rotate_stream("s.1")
        envelopes.append(await crypto.encrypt("s.1", f"e{n}", b"%d" % n))
    assert key_store_place is not None
    await _refuse_tombstone(key_store, key_store_place, version=2)
    with pytest.raises(EncryptionError, match="refused by the test"):
        await crypto.shred("s.1")
    rows = await key_store.load("s.1")
    assert sorted(rows) == [1, 2, 3] and "" not in {master for master, _ in rows.values()}
    fresh = StreamEncryption(crypto.keyring, key_store)
    for n, envelope in enumerate(envelopes, 1):  # the stream reads as it did
        assert await fresh.decrypt("s.1", f"e{n}", envelope) is not None


async def test_a_closed_key_store_refuses_calls(key_store: KeyStore) -> None:
    await key_store.save("s.1", 1, "k1", b"x")
    await key_store.close()
    await key_store.close()  # idempotent
    for call in (
        key_store.load("s.1"),
        key_store.save("s.1", 2, "k1", b"y"),
        key_store.streams(),
        key_store.rewrap_all(lambda page: page),
    ):
        with pytest.raises(ClosedError, match="closed"):
            await call


async def test_an_encrypted_store_reads_shreds_and_rotates(url: str, key_store: KeyStore) -> None:
    ring = KeyRing({"old": os.urandom(32)})
    crypto = StreamEncryption(ring, key_store)
    async with EventStore(url, encryption=crypto) as store:
        await store.append("user.1", {"type": "user.created", "data": {"ssn": "1"}})
        await store.append("user.2", {"type": "user.created", "data": {"ssn": "2"}})
        await store.shred_stream("user.1")
        ring.add("new", os.urandom(32), primary=True)
        assert await crypto.rotate() == 1
        assert await key_store.load("user.1") == {1: TOMBSTONE}
        assert [master for master, _ in (await key_store.load("user.2")).values()] == ["new"]
        events = await store.read_all()
        assert [event.data for event in events] == [None, {"ssn": "2"}]
        assert events[0].metadata == {"pepperpyshredded": True}


# -- PostgreSQL's own ---------------------------------------------------------------------


async def test_postgres_key_stores_set_up_at_once_in_a_schema(postgres_url: str) -> None:
    url = f"{postgres_url}?schema={unique_name('keys')}"
    stores = [PostgresKeyStore(url) for _ in range(4)]
    try:
        saved = await asyncio.gather(
            *(store.save("s.1", 1, f"k{n}", b"x") for n, store in enumerate(stores))
        )
        assert sorted(saved) == [False, False, False, True]
        async with PostgresKeyStore(postgres_url) as default:
            assert await default.streams() == []  # the table is in the schema only
    finally:
        for store in stores:
            await store.close()


async def test_a_postgres_failure_names_the_store_not_the_password(postgres_url: str) -> None:
    url = postgres_url.replace("postgres@", "postgres:s3cret@").rsplit("/", 1)[0]
    keys = PostgresKeyStore(f"{url}/{unique_name('missing')}")
    try:
        with pytest.raises(EncryptionError, match="PostgresKeyStore.*failed saving") as caught:
            await keys.save("s.1", 1, "k1", b"x")
        assert "s3cret" not in str(caught.value)
        assert "nothing was written" in str(caught.value)
    finally:
        await keys.close()


def _another(key_store: KeyStore, place: str | None) -> KeyStore:
    """A second key store on the same keys (another process's, say)."""
    if place is None:
        return key_store
    if isinstance(key_store, PostgresKeyStore):
        return PostgresKeyStore(place)
    return SQLiteKeyStore(place)


async def _refuse_tombstone(key_store: KeyStore, place: str, version: int) -> None:
    """A trigger making a tombstone of ``version`` fail (SQLite's REPLACE inserts it,
    PostgreSQL's upsert tries an insert first)."""
    if isinstance(key_store, SQLiteKeyStore):
        with closing(sqlite3.connect(place)) as db, db:
            db.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON data_keys"
                f" WHEN NEW.version = {version} AND NEW.master_key = ''"
                " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
        return
    import asyncpg

    connection = await asyncpg.connect(place)
    try:
        await connection.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.version = {version} AND NEW.master_key = '' THEN"
            " RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$"
        )
        await connection.execute(
            "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON pepperpy_data_keys"
            " FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    finally:
        await connection.close()


async def _refuse_updates_of(key_store: KeyStore, place: str, stream: str) -> None:
    """A trigger making every update of ``stream``'s keys fail."""
    if isinstance(key_store, SQLiteKeyStore):
        with closing(sqlite3.connect(place)) as db, db:
            db.execute(
                "CREATE TRIGGER refuse BEFORE UPDATE ON data_keys WHEN OLD.stream = ?"
                " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END".replace("?", f"'{stream}'")
            )
        return
    import asyncpg

    connection = await asyncpg.connect(place)
    try:
        await connection.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF OLD.stream = '{stream}' THEN RAISE EXCEPTION 'refused by the test'; END IF;"
            " RETURN NEW; END $$"
        )
        await connection.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE ON pepperpy_data_keys"
            " FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    finally:
        await connection.close()


async def test_a_postgres_key_store_opens_a_new_connection_once_its_own_was_ended(
    postgres_url: str,
) -> None:
    """A restart, a failover or an admin's pg_terminate_backend ends the connection
    while it is idle: the call meeting it is done once more on a new one. It raised
    asyncpg's own InternalClientError (the server's FATAL message read as the call
    began), or EncryptionError (connection closed in the middle of the call)."""
    async with PostgresKeyStore(postgres_url) as keys:
        await keys.save("s.1", 1, "k1", b"x")
        # this loop is blocked meanwhile, so the key store has not seen its connection
        # end when the next call begins (as after a restart while nothing was called)
        ender = threading.Thread(target=_end_other_sessions, args=(postgres_url,))
        ender.start()
        ender.join(timeout=30)
        assert not ender.is_alive()
        assert await keys.load("s.1") == {1: ("k1", b"x")}  # once more, on a new one
        assert await keys.save("s.1", 2, "k1", b"y") is True


def _end_other_sessions(url: str) -> None:
    """pg_terminate_backend every other session of the database, and wait (bounded)
    until the server reports them gone; on a loop of its own."""
    import asyncpg

    others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"

    async def end() -> None:
        admin = await asyncpg.connect(url)
        try:
            assert await admin.fetchval(f"SELECT count(pg_terminate_backend(pid)) {others}") == 1
            for _ in range(200):  # the server ends them at once; bounded at 10 s
                if not await admin.fetchval(f"SELECT count(*) {others}"):
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("the session was not ended")
        finally:
            await admin.close()

    asyncio.run(end())


async def test_a_postgres_rotation_may_outlast_one_command_timeout(postgres_url: str) -> None:
    """A rotation's write was bounded by command_timeout as a whole, so a key store
    with many keys (a million take about half a minute) could never be rotated: it
    timed out, rolled back, every time. Each batch of 10,000 is bounded instead; here
    each of three batches waits 2 s (a trigger) under a 5 s bound, 6 s in all."""
    import asyncpg

    count = 25_000
    async with PostgresKeyStore(f"{postgres_url}?command_timeout=5") as keys:
        await keys.streams()  # the table
        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.copy_records_to_table(
                "pepperpy_data_keys", records=[(f"s.{n}", 1, "k1", b"w") for n in range(count)]
            )
            await admin.execute(
                "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " IF OLD.stream IN ('s.0', 's.10000', 's.20000') THEN PERFORM pg_sleep(2);"
                " END IF; RETURN NEW; END $$"
            )
            await admin.execute(
                "CREATE TRIGGER slow BEFORE UPDATE ON pepperpy_data_keys"
                " FOR EACH ROW EXECUTE FUNCTION slow()"
            )
        finally:
            await admin.close()
        await keys.rewrap([(f"s.{n}", 1, "k2", b"W") for n in range(count)])
        assert await keys.load("s.24999") == {1: ("k2", b"W")}
        assert await keys.load("s.0") == {1: ("k2", b"W")}


async def test_a_postgres_key_store_outlives_asyncio_run(postgres_url: str) -> None:
    """Used under one asyncio.run and then another, a key store left the first loop's
    connection to the garbage collector: an unclosed transport and socket
    (ResourceWarning). The connection is now dropped as its loop shuts down, and the
    key store works on the next loop."""
    script = f"""
import asyncio, gc
from pepperpy.event.security import PostgresKeyStore

keys = PostgresKeyStore({postgres_url!r})
asyncio.run(keys.save("s.1", 1, "k1", b"x"))
gc.collect()

async def then():
    try:
        return await keys.load("s.1")
    finally:
        await keys.close()

print(asyncio.run(then()))
gc.collect()
"""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-X", "dev", "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{1: ('k1', b'x')}"
    assert "ResourceWarning" not in done.stderr, done.stderr


async def test_a_postgres_key_store_dropped_unclosed_closes_with_its_loop(
    postgres_url: str,
) -> None:
    """A key store dropped without close() left its connection to the garbage
    collector (ResourceWarning: unclosed transport); it is closed as its loop ends."""
    script = f"""
import asyncio, gc
from pepperpy.event.security import PostgresKeyStore

async def main():
    keys = PostgresKeyStore({postgres_url!r})
    await keys.save("s.1", 1, "k1", b"x")
    del keys
    gc.collect()
    print("dropped")

asyncio.run(main())
gc.collect()
"""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-X", "dev", "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "dropped"
    assert "ResourceWarning" not in done.stderr, done.stderr
