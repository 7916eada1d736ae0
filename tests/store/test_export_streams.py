"""``export_store`` to a binary stream, and an empty path, for export and import alike.

An import read a binary stream (``gzip.open(path, "rb")``, ``sys.stdin.buffer``) already,
but an export to one (``gzip.open(path, "wb")``, ``sys.stdout.buffer``) read the store
and then failed with ``TypeError: a bytes-like object is required, not 'str'``. An empty
path named the working directory: the export read the whole store, wrote ``DIR.partial``
and failed renaming it over the directory.
"""

from __future__ import annotations

import gzip
import io
import pathlib

import pytest

from pepperpy.event import Event, EventStore, export_store, import_store


async def filled() -> EventStore:
    store = EventStore()
    await store.append("order.1", [Event("order.placed", {"n": n}) for n in range(3)])
    await store.append("order.2", Event("order.placed", b"\x00\xff"))
    return store


async def copied(file: object) -> list[object]:
    restored = EventStore()
    report = await import_store(restored, file)  # type: ignore[arg-type]
    assert report.copied == 4
    return [event.data for event in await restored.read_all()]


async def test_an_export_to_a_binary_stream_imports_back(tmp_path: pathlib.Path) -> None:
    store = await filled()
    expected = [event.data for event in await store.read_all()]

    buffer = io.BytesIO()
    assert (await export_store(store, buffer)).copied == 4
    assert buffer.getvalue().startswith(b'{"format":"pepperpy-event-export"')
    assert buffer.getvalue().endswith(b'{"end":true,"events":4}\n')
    buffer.seek(0)
    assert await copied(buffer) == expected

    with gzip.open(tmp_path / "backup.jsonl.gz", "wb") as packed:
        await export_store(store, packed)
    with gzip.open(tmp_path / "backup.jsonl.gz", "rb") as unpacked:
        assert await copied(unpacked) == expected

    with open(tmp_path / "raw.jsonl", "wb", buffering=0) as raw:  # a RawIOBase
        await export_store(store, raw)
    assert await copied(tmp_path / "raw.jsonl") == expected
    text = io.StringIO()
    await export_store(store, text)
    assert text.getvalue().encode() == buffer.getvalue()


async def test_an_empty_path_is_refused_before_anything_is_read(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = await filled()
    with pytest.raises(ValueError, match="file is an empty path"):
        await export_store(store, "")
    with pytest.raises(ValueError, match="file is an empty path"):
        await import_store(EventStore(), "")
    assert list(tmp_path.iterdir()) == []
    assert list(tmp_path.parent.glob(f"{tmp_path.name}.partial")) == []
