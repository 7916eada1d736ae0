"""An export line whose event no store could have written, and no read could return, is
refused by the import, naming its line, before anything is written.

Data or metadata nested more than MAX_DEPTH (253) lists and objects deep was imported
(the line's JSON was only parsed, which orjson does to 1,024 levels), and every read
over the event then failed with SerializationError: read_all, the stream, a projection
catching up, an export of the copy. Metadata that is no JSON object (a list, a number)
was imported too, and read back as an event's metadata, which is always a dict; and so
was metadata marking data as a bytes payload where the data was no base64 text, every
read of the event then failing.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import orjson
import pytest

from pepperpy.event import Event, EventStore, StoreError, export_store, import_store
from pepperpy.event._frozen import MAX_DEPTH


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _nested(levels: int) -> bytes:
    """A JSON object with ``levels`` lists and objects nested, itself included."""
    return b'{"a":' + b"[" * (levels - 1) + b"1" + b"]" * (levels - 1) + b"}"


def export_of(**second: object) -> str:
    """An export of two events of s.1, the second with ``second``'s fields."""
    rows = [
        {
            "global_position": n,
            "stream": "s.1",
            "position": n,
            "id": f"e{n}",
            "type": "t.x",
            "version": 1,
            "data": "e30=",
            "metadata": None,
            "timestamp": 0,
            "source": None,
            "subject": None,
            "recorded_at": 0,
            "visible": True,
            **(second if n else {}),
        }
        for n in range(2)
    ]
    lines = [{"format": "pepperpy-event-export", "version": 2}, *rows, {"end": True, "events": 2}]
    return "".join(orjson.dumps(line).decode() + "\n" for line in lines)


async def refused(store_url: str, tmp_path: Path, text: str, said: str) -> None:
    """Importing ``text`` from a path and from a stream is refused with ``said`` (of
    line 3), and writes nothing."""
    path = tmp_path / "odd.jsonl"
    path.write_text(text, encoding="utf-8")
    async with EventStore(store_url) as store:
        with pytest.raises(StoreError) as raised:
            await import_store(store, path, batch_size=1)
        assert str(raised.value) == f"{path} line 3: {said}; nothing was written"
        with pytest.raises(StoreError) as raised:
            await import_store(store, io.StringIO(text), batch_size=2)
        assert str(raised.value).startswith(f"<stream> line 3: {said}")
        assert [event async for event in store.read_all()] == []


@pytest.mark.parametrize("key", ["data", "metadata"])
@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1000])
async def test_json_nested_deeper_than_an_event_may_be_is_refused(
    any_store_url: str, tmp_path: Path, key: str, levels: int
) -> None:
    await refused(
        any_store_url,
        tmp_path,
        export_of(**{key: _b64(_nested(levels))}),
        f"{key} is nested more than {MAX_DEPTH} levels of lists and objects deep, deeper "
        f"than an event's {key} may be",
    )


@pytest.mark.parametrize("key", ["data", "metadata"])
async def test_json_as_deep_as_an_event_may_be_imports_and_reads_back(
    any_store_url: str, key: str
) -> None:
    deepest = _nested(MAX_DEPTH)
    async with EventStore(any_store_url) as store:
        await import_store(store, io.StringIO(export_of(**{key: _b64(deepest)})))
        events = [event async for event in store.read_all()]
    assert len(events) == 2
    assert orjson.dumps(getattr(events[1], key)) == deepest


@pytest.mark.parametrize(
    ("raw", "kind"),
    [(b"[]", "array"), (b'["a"]', "array"), (b"3", "number"), (b'"x"', "string")]
    + [(b"null", "null"), (b"true", "boolean")],
)
async def test_metadata_that_is_no_json_object_is_refused(
    any_store_url: str, tmp_path: Path, raw: bytes, kind: str
) -> None:
    """Every store writes an event's metadata as a JSON object (or no metadata at all);
    a line with other JSON was imported, and read back as the event's metadata: a list
    or a number where Event.metadata is always a dict."""
    await refused(
        any_store_url,
        tmp_path,
        export_of(metadata=_b64(raw)),
        f"metadata must be null or base64 of a JSON object, got base64 of a JSON {kind}",
    )


async def test_metadata_as_a_json_object_or_null_imports(any_store_url: str) -> None:
    async with EventStore(any_store_url) as store:
        await import_store(store, io.StringIO(export_of(metadata=_b64(b'{"k":[1]}'))))
        events = [event async for event in store.read_all()]
    assert [event.metadata for event in events] == [{}, {"k": [1]}]


@pytest.mark.parametrize(
    ("marker", "data", "said"),
    [
        (1, b'"YWJj"', "metadata's 'pepperpybytes' must be true, got '1'"),
        (False, b'"YWJj"', "metadata's 'pepperpybytes' must be true, got 'false'"),
        (True, b"{}", "metadata marks data as bytes ('pepperpybytes'), but it holds a JSON "),
        (True, b"[1]", "metadata marks data as bytes ('pepperpybytes'), but it holds a JSON "),
        (True, b"3", "metadata marks data as bytes ('pepperpybytes'), but it holds a JSON "),
        (True, b'"a b!"', "metadata marks data as bytes ('pepperpybytes'), but it is not "),
    ],
)
async def test_a_bytes_marker_on_data_no_bytes_payload_has_is_refused(
    any_store_url: str, tmp_path: Path, marker: object, data: bytes, said: str
) -> None:
    """A bytes payload is stored as base64 text, its metadata marked; a line marked so
    whose data is anything else was imported, and every read of the event then failed
    (SerializationError: 'its metadata marks its data as bytes ...')."""
    metadata = orjson.dumps({"pepperpybytes": marker})
    text = export_of(data=_b64(data), metadata=_b64(metadata))
    path = tmp_path / "odd.jsonl"
    path.write_text(text, encoding="utf-8")
    async with EventStore(any_store_url) as store:
        with pytest.raises(StoreError) as raised:
            await import_store(store, path, batch_size=1)
        assert str(raised.value).startswith(f"{path} line 3: {said}"), raised.value
        assert str(raised.value).endswith("; nothing was written")
        with pytest.raises(StoreError, match="<stream> line 3: "):
            await import_store(store, io.StringIO(text), batch_size=2)
        assert [event async for event in store.read_all()] == []


async def test_a_bytes_payload_exported_imports_as_bytes(any_store_url: str) -> None:
    async with EventStore("memory://") as source:
        await source.append("s.1", [Event("t.x", {}), Event("t.x", b"\x00abc")])
        exported = io.StringIO()
        await export_store(source, exported)
    async with EventStore(any_store_url) as store:
        await import_store(store, io.StringIO(exported.getvalue()))
        events = [event async for event in store.read_all()]
    assert events[1].data == b"\x00abc"


async def test_an_encrypted_bytes_payload_exported_imports_into_the_sealed_copy(
    tmp_path: Path,
) -> None:
    """Encrypted, a bytes payload's data is its envelope (the marker stays in the
    metadata, bound to it): the line is taken."""
    from pepperpy.event.security import KeyRing, SQLiteKeyStore, StreamEncryption

    async with SQLiteKeyStore(str(tmp_path / "keys.db")) as keys:
        crypto = StreamEncryption(KeyRing.generate(), keys)
        async with EventStore(f"sqlite:///{tmp_path / 'a.db'}", encryption=crypto) as store:
            await store.append("s.1", Event("t.x", b"\x00abc", {"m": 1}))
            exported = io.StringIO()
            await export_store(store, exported)
        assert (
            "pepperpybytes"
            in base64.b64decode(
                orjson.loads(exported.getvalue().splitlines()[1])["metadata"]
            ).decode()
        )
        async with EventStore(f"sqlite:///{tmp_path / 'b.db'}", encryption=crypto) as copy:
            await import_store(copy, io.StringIO(exported.getvalue()))
            events = [event async for event in copy.read_all()]
    assert [(event.data, event.metadata) for event in events] == [(b"\x00abc", {"m": 1})]
