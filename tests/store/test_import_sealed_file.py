"""An import from a path into a store with ``encryption=`` wrote the batches before an
event in clear, then refused its batch: the file is read through before anything is
written so that a bad file writes nothing (docs/store.md), but an event in clear was
only found batch by batch. A store written now and then without ``encryption=`` exports
such a file. Now the read through the file finds it: nothing is written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pepperpy.event import EncryptionError, Event, EventStore, StoreError, import_store
from pepperpy.event.security import KeyRing, MemoryKeyStore, StreamEncryption
from pepperpy.event.store import export_store
from tests.helpers import store_urls


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async for found in store_urls(request, tmp_path, "sealedfile"):
        yield found


async def mixed_export(path: Path) -> None:
    """An export of a store whose first events are sealed and whose last is in clear."""
    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore())
    async with EventStore(encryption=crypto) as sealed:
        await sealed.append("user.1", [Event("user.created", {"n": n}) for n in range(3)])
        await EventStore(sealed.backend).append("user.2", Event("user.created", {"ssn": 9}))
        await export_store(sealed, path)


@pytest.mark.parametrize("batch_size", [1, 2])
async def test_an_event_in_clear_late_in_the_file_writes_nothing(
    url: str, tmp_path: Path, batch_size: int
) -> None:
    await mixed_export(tmp_path / "mixed.jsonl")
    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore())
    async with EventStore(url, encryption=crypto) as destination:
        with pytest.raises(EncryptionError) as caught:
            await import_store(destination, tmp_path / "mixed.jsonl", batch_size=batch_size)
        assert await destination.head() is None
        message = str(caught.value)
        assert "mixed.jsonl line 5:" in message and "'user.2'" in message
        assert "not encrypted" in message and "nothing of the file was written" in message


async def test_a_plain_destination_takes_the_file_whole(url: str, tmp_path: Path) -> None:
    await mixed_export(tmp_path / "mixed.jsonl")
    async with EventStore(url) as destination:
        report = await import_store(destination, tmp_path / "mixed.jsonl", batch_size=1)
        assert report.copied == 4 and await destination.head() == 3
    with pytest.raises(StoreError):  # the file is still checked line by line
        async with EventStore() as empty:
            (tmp_path / "bad.jsonl").write_text("{}\n")
            await import_store(empty, tmp_path / "bad.jsonl")
