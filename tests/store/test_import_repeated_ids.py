"""An export file (edited, or damaged into other valid JSON) holding one id twice among a
stream's visible events was imported as it was, on every backend: the stream then held
two events with one id, and an append retrying that id was answered with the position of
the second (appends skip a retried event by its id). ``write_stored`` now refuses such a
row, the batch it is in written not at all; an id that comes back after a deletion (the
first one hidden) is imported as before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from pepperpy.event import (
    CopyProgress,
    Event,
    EventStore,
    StoreError,
    copy_store,
    export_store,
    import_store,
)
from pepperpy.event.store.base import NO_STREAM
from tests.helpers import store_urls


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async for found in store_urls(request, tmp_path, "repeatedids"):
        yield found


async def export_with_a_repeated_id(path: Path) -> None:
    """Four events of stream ``a`` (ids e0 to e3), the fourth edited to have id e0."""
    async with EventStore() as source:
        await source.append("a", [Event("t.x", {"n": n}, id=f"e{n}") for n in range(4)])
        await export_store(source, path)
    header, *lines = path.read_text(encoding="utf-8").splitlines()
    edited = {**orjson.loads(lines[3]), "id": "e0"}
    lines[3] = orjson.dumps(edited).decode()
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")


@pytest.mark.parametrize(("batch_size", "kept"), [(1000, None), (2, 1), (1, 2)])
async def test_an_id_twice_in_a_stream_is_refused_with_its_batch(
    url: str, tmp_path: Path, batch_size: int, kept: int | None
) -> None:
    await export_with_a_repeated_id(tmp_path / "x.jsonl")
    async with EventStore(url) as destination:
        with pytest.raises(StoreError, match=r"id 'e0'.*holds already at position 0") as caught:
            await import_store(destination, tmp_path / "x.jsonl", batch_size=batch_size)
        assert "global position 3" in str(caught.value)
        # the batch was refused before any of it was written, and the error says so in
        # ``written`` too (it was None: 'cannot tell', which asks the caller to read back)
        assert caught.value.written is False
        assert await destination.head() == kept  # the batches before the bad row's
        retried = await destination.append("a", Event("t.x", {"n": 0}, id="e0"))
        assert retried.next_expected_version == 0  # the retry finds the one e0


@pytest.mark.parametrize("batch_size", [1, 3])  # the hidden e0 apart from the visible or not
async def test_an_id_back_after_a_deletion_is_imported(
    url: str, tmp_path: Path, batch_size: int
) -> None:
    async with EventStore() as source:
        await source.append("a", [Event("t.x", {}, id="e0"), Event("t.x", {}, id="e1")])
        await source.delete_stream("a")
        await source.append("a", Event("t.x", {}, id="e0"), expected_version=NO_STREAM)
        await source.append("a", Event("t.x", {}, id="e1"))
        await export_store(source, tmp_path / "x.jsonl")
    async with EventStore(url) as destination:
        report = await import_store(destination, tmp_path / "x.jsonl", batch_size=batch_size)
        assert report.copied == 4
        events = await destination.get_stream("a")
        assert [(event.id, event.position) for event in events] == [("e0", 2), ("e1", 3)]
        again = await destination.append("a", Event("t.x", {}, id="e0"))
        assert again.next_expected_version == 2


async def test_a_copy_brought_up_to_date_after_a_delete_and_an_id_back(url: str) -> None:
    """The source deleted a stream the destination has a copy of, and started it again
    with an id it had: the next copy carries the deletion with the new events, so even
    one interrupted after its first batch never shows the stream with the id twice."""

    class Interrupted(Exception):
        pass

    def interrupt(progress: CopyProgress) -> None:
        raise Interrupted

    async with EventStore() as source, EventStore(url) as destination:
        await source.append("a", Event("t.x", {}, id="e0"))
        await copy_store(source, destination)
        await source.delete_stream("a")
        await source.append("a", Event("t.x", {}, id="e0"), expected_version=NO_STREAM)
        await source.append("b", Event("t.x", {}))
        with pytest.raises(Interrupted):
            await copy_store(source, destination, batch_size=1, progress=interrupt)
        assert [(e.id, e.position) for e in await destination.get_stream("a")] == [("e0", 1)]
        report = await copy_store(source, destination, batch_size=1)
        assert report.copied == 1 and await destination.head() == 2
        assert [(e.id, e.position) for e in await destination.get_stream("a")] == [("e0", 1)]


@pytest.mark.parametrize(("batch_size", "kept"), [(1, 2), (2, 1)])
async def test_a_batch_refused_says_what_the_batches_before_wrote(
    url: str, tmp_path: Path, batch_size: int, kept: int
) -> None:
    """A path is checked whole first, but an id twice in a stream is found only as its
    batch is written: the error said 'nothing of this batch was written', with nothing
    about the batches before it, which were (the docs say a bad file writes nothing)."""
    await export_with_a_repeated_id(tmp_path / "x.jsonl")
    async with EventStore(url) as destination:
        with pytest.raises(StoreError) as caught:
            await import_store(destination, tmp_path / "x.jsonl", batch_size=batch_size)
        assert await destination.head() == kept
    assert type(caught.value) is StoreError  # the same error, its message added to
    assert str(caught.value).endswith(
        f"nothing of this batch was written; {kept + 1} events of it were written before "
        f"(up to global position {kept}): fix what refused this batch and import the file "
        "again to go on after them (an import resumes after the destination's newest event)"
    )
