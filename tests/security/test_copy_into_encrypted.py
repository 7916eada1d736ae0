"""A copy or import into a store with ``encryption=`` refuses records that are not
sealed: written as stored, a plain store's personal data would sit in clear in the
store meant to encrypt it (its file, WAL and backups), where every read refuses it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pepperpy.event import EncryptionError, Event, EventStore
from pepperpy.event.security import KeyRing, SQLiteKeyStore, StreamEncryption
from pepperpy.event.store import copy_store, export_store, import_store

SSN = "078-05-1120"


def on_disk(path: Path) -> bytes:
    """The database file and its WAL, as bytes."""
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


async def plain_store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    async with EventStore(url) as plain:
        await plain.append("user.9", Event("user.created", {"ssn": SSN}, subject="u9"))
    return url


@pytest.mark.parametrize("how", ["copy", "import"])
async def test_plain_records_are_refused_and_nothing_is_written(tmp_path: Path, how: str) -> None:
    source = await plain_store(tmp_path)
    export = tmp_path / "plain.jsonl"
    await export_store(source, export)
    target = tmp_path / "encrypted.db"
    async with SQLiteKeyStore(str(tmp_path / "keys.db")) as keys:
        crypto = StreamEncryption(KeyRing.generate(), keys)
        async with EventStore(f"sqlite:///{target}", encryption=crypto) as encrypted:
            with pytest.raises(EncryptionError, match="user.9.*not encrypted.*nothing of"):
                if how == "copy":
                    await copy_store(source, encrypted)
                else:
                    await import_store(encrypted, export)
            assert await encrypted.head() is None
    assert SSN.encode() not in on_disk(target)


async def test_a_subject_in_clear_beside_an_envelope_is_refused(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    async with SQLiteKeyStore(str(tmp_path / "keys.db")) as keys:
        crypto = StreamEncryption(KeyRing.generate(), keys)
        async with EventStore(source, encryption=crypto) as store:
            await store.append("user.9", Event("user.created", {"ssn": SSN}, subject="u9"))
        export = tmp_path / "export.jsonl"
        await export_store(source, export)
        header, line, end = export.read_text().splitlines()
        edited = {**orjson.loads(line), "subject": "alice@example.com"}  # put in clear
        export.write_text(f"{header}\n{orjson.dumps(edited).decode()}\n{end}\n")
        async with EventStore(f"sqlite:///{tmp_path / 'copy.db'}", encryption=crypto) as copy:
            with pytest.raises(EncryptionError, match="its source or subject in clear"):
                await import_store(copy, export)
            assert await copy.head() is None


@pytest.mark.parametrize("how", ["copy", "import"])
async def test_sealed_records_copy_and_read_back(tmp_path: Path, how: str) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    async with SQLiteKeyStore(str(tmp_path / "keys.db")) as keys:
        crypto = StreamEncryption(KeyRing.generate(), keys)
        async with EventStore(source, encryption=crypto) as store:
            await store.append("user.9", Event("user.created", {"ssn": SSN}, subject="u9"))
        export = tmp_path / "export.jsonl"
        await export_store(source, export)
        async with EventStore("memory://", encryption=crypto) as copy:
            if how == "copy":
                report = await copy_store(source, copy)
            else:
                report = await import_store(copy, export)
            assert report.copied == 1
            (event,) = await copy.get_stream("user.9")
            assert (event.data, event.subject) == ({"ssn": SSN}, "u9")
