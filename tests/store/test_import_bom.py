"""``import_store`` of a file that starts with a UTF-8 byte order mark, as Windows tools
write one (Notepad, PowerShell's ``Out-File -Encoding utf8``, a file saved "UTF-8 with
BOM"): it was refused as 'not a pepperpy-event export' because its first line starts
with the mark. The mark is skipped at the start of the file, whether it is read from a
path or a stream, text or binary."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pepperpy.event import Event, EventStore, StoreError, export_store, import_store

BOM = "\ufeff"


async def exported() -> str:
    async with EventStore() as source:
        await source.append("a.1", [Event("t.x", {"n": n}) for n in range(3)])
        await source.append("b.1", Event("t.y", b"\x00\xff"))
        text = io.StringIO()
        await export_store(source, text)
    return text.getvalue()


async def imported(url: str, file: object) -> list[tuple[str, object]]:
    async with EventStore(url) as destination:
        report = await import_store(destination, file)  # type: ignore[arg-type]
        assert report.copied == 4
        return [(event.stream, event.data) async for event in destination.read_all()]


EXPECTED = [("a.1", {"n": 0}), ("a.1", {"n": 1}), ("a.1", {"n": 2}), ("b.1", b"\x00\xff")]


async def test_a_path_with_a_bom_imports(tmp_path: Path, any_store_url: str) -> None:
    path = tmp_path / "backup.jsonl"
    path.write_bytes((BOM + await exported()).encode("utf-8"))
    assert await imported(any_store_url, str(path)) == EXPECTED


@pytest.mark.parametrize("kind", ["text", "binary"])
async def test_a_stream_with_a_bom_imports(kind: str, sqlite_url: str) -> None:
    text = BOM + await exported()
    stream = io.StringIO(text) if kind == "text" else io.BytesIO(text.encode("utf-8"))
    assert await imported(sqlite_url, stream) == EXPECTED


async def test_a_path_opened_as_binary_with_a_bom_imports(tmp_path: Path) -> None:
    path = tmp_path / "backup.jsonl"
    path.write_bytes((BOM + await exported()).encode("utf-8"))
    with path.open("rb") as stream:
        assert await imported("memory://", stream) == EXPECTED


async def test_a_bom_elsewhere_is_still_refused(tmp_path: Path) -> None:
    """Only the start of the file may hold the mark: on a later line it is bad JSON."""
    lines = (await exported()).splitlines(keepends=True)
    lines[1] = BOM + lines[1]
    path = tmp_path / "backup.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    async with EventStore() as destination:
        with pytest.raises(StoreError, match="line 2: not JSON"):
            await import_store(destination, str(path))
        assert await destination.head() is None
