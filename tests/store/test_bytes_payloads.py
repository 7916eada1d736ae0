"""A whole-bytes payload reads back from every store as bytes, not its base64 text.

The store writes it as its base64 text (a JSON string) and marks it in the metadata it
stores (``pepperpybytes``), which reads strip: so the marker travels with copies,
exports and imports, is bound to an encrypted envelope, and rows without it read as
before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import Event, EventStore, SerializationError
from pepperpy.event.security import KeyRing, SQLiteKeyStore, StreamEncryption
from pepperpy.event.store import copy_store, export_store, import_store

PAYLOAD = b"\x00\xffhi"


async def test_an_event_with_bytes_reads_back_equal(any_store_url: str) -> None:
    appended = [Event("file.uploaded", PAYLOAD), Event("file.uploaded", b"", {"k": [1]})]
    async with EventStore(any_store_url) as store:
        await store.append("file.1", appended[0])
        await store.append("file.1", appended[1])
        got = await store.get_stream("file.1")
        streamed = [event async for event in store.read_all()]
    assert [e.data for e in got] == [PAYLOAD, b""]
    assert got == appended
    assert got[0].metadata == {} and got[1].metadata == {"k": [1]}
    assert [e.data for e in streamed] == [PAYLOAD, b""]  # read_all, iterated, too


@pytest.mark.parametrize(
    "data", [PAYLOAD, bytearray(PAYLOAD), memoryview(PAYLOAD)], ids=["bytes", "ba", "mv"]
)
async def test_dicts_with_bytes_data_read_back_as_bytes(any_store_url: str, data: Any) -> None:
    async with EventStore(any_store_url) as store:
        await store.append("f.1", {"type": "t.x", "data": data})  # one
        await store.append("f.1", [{"type": "t.x", "data": data}, {"type": "t.x", "data": "AP8="}])
        await store.append("f.1", {"type": "t.x", "data": data, "metadata": {"a": 1}})
        await store.append("f.1", [{"type": "t.x", "data": data, "metadata": {"a": 1}}])
        got = await store.get_stream("f.1")
    assert [e.data for e in got] == [PAYLOAD, PAYLOAD, "AP8=", PAYLOAD, PAYLOAD]
    assert [e.metadata for e in got] == [{}, {}, {}, {"a": 1}, {"a": 1}]


async def test_a_str_payload_and_unmarked_rows_read_as_before(sqlite_url: str) -> None:
    """Base64-looking text stays text: only the marker makes bytes."""
    async with EventStore(sqlite_url) as store:
        await store.append("f.1", Event("t.x", "AP9oaQ==", {"note": "x"}))
        await store.append("f.1", Event("t.x", {"pepperpybytes": True}))  # in data: no marker
        got = await store.get_stream("f.1")
    assert [e.data for e in got] == ["AP9oaQ==", {"pepperpybytes": True}]


async def test_the_marker_key_is_reserved_in_metadata(any_store_url: str) -> None:
    async with EventStore(any_store_url) as store:
        for given in (
            Event("t.x", "x", {"pepperpybytes": True}),
            {"type": "t.x", "data": 1, "metadata": {"pepperpybytes": True}},
            [{"type": "t.x", "data": PAYLOAD, "metadata": {"pepperpybytes": False}}],
        ):
            with pytest.raises(SerializationError, match="'pepperpybytes' is reserved"):
                await store.append("f.1", given)
        assert await store.get_stream("f.1") == []


async def test_upcasters_get_the_bytes(any_store_url: str) -> None:
    seen: list[Any] = []
    async with EventStore(any_store_url) as store:
        await store.append("f.1", Event("blob.put", PAYLOAD))

        @store.upcaster("blob.put", 1)
        def to_v2(data: Any) -> Any:
            seen.append(data)
            return {"size": len(data), "raw": data}

        (event,) = await store.get_stream("f.1")
    assert seen == [PAYLOAD]
    assert event.version == 2 and event.data["size"] == 4


async def test_copy_export_and_import_keep_the_bytes(tmp_path: Path, any_store_url: str) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    async with EventStore(source) as store:
        await store.append("f.1", [Event("t.x", PAYLOAD), Event("t.x", PAYLOAD, {"m": 1})])
        await store.append("f.2", {"type": "t.x", "data": "text"})
        expected = await store.read_all()
    async with EventStore(any_store_url) as copy:
        await copy_store(source, copy)
        assert await copy.read_all() == expected
        assert [e.data for e in await copy.read_all()] == [PAYLOAD, PAYLOAD, "text"]
    export = tmp_path / "events.jsonl"
    await export_store(source, export)
    async with EventStore(f"sqlite:///{tmp_path / 'imported.db'}") as imported:
        await import_store(imported, export)
        got = await imported.read_all()
    assert got == expected
    assert [e.data for e in got] == [PAYLOAD, PAYLOAD, "text"]
    assert [e.metadata for e in got] == [{}, {"m": 1}, {}]


async def test_an_encrypted_store_keeps_the_bytes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sealed.db'}"
    async with SQLiteKeyStore(str(tmp_path / "keys.db")) as keys:
        crypto = StreamEncryption(KeyRing.generate(), keys)
        async with EventStore(url, encryption=crypto) as store:
            await store.append("f.1", Event("t.x", PAYLOAD, source="cam", subject="s1"))
            await store.append("f.1", {"type": "t.x", "data": PAYLOAD, "metadata": {"a": 1}})
            got = await store.get_stream("f.1")
            assert [e.data for e in got] == [PAYLOAD, PAYLOAD]
            assert [e.metadata for e in got] == [{}, {"a": 1}]
            assert (got[0].source, got[0].subject) == ("cam", "s1")
            copy = f"sqlite:///{tmp_path / 'copy.db'}"
            async with EventStore(copy, encryption=crypto) as sealed_copy:
                await copy_store(store, sealed_copy)
                assert [e.data for e in await sealed_copy.read_all()] == [PAYLOAD, PAYLOAD]
            await crypto.shred("f.1")
            shredded = await store.get_stream("f.1")
    assert [e.data for e in shredded] == [None, None]
    assert [e.metadata for e in shredded] == [
        {"pepperpyshredded": True},
        {"a": 1, "pepperpyshredded": True},
    ]


async def test_a_marked_row_that_is_not_base64_is_named(sqlite_url: str) -> None:
    import sqlite3
    from contextlib import closing

    async with EventStore(sqlite_url) as store:
        await store.append("f.1", Event("t.x", PAYLOAD))
    with closing(sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))) as db:
        with db:
            db.execute("UPDATE events SET data = ?", (b'"not base64!"',))
    async with EventStore(sqlite_url) as store:
        with pytest.raises(SerializationError, match="marks its data as bytes.*not valid base64"):
            await store.get_stream("f.1")
