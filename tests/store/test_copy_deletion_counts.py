"""``CopyReport.deletions`` counts every stream a copy or an import deletes on the
destination, where it showed events.

An import carried a deletion over to events the destination held already, but always
reported 0 (``import`` said nothing of it); a copy left out a stream whose hidden rows
were in the batch it copied (deleted after the rows the destination showed).
"""

from __future__ import annotations

from pathlib import Path

from pepperpy.event import NO_STREAM, Event, EventStore, copy_store, export_store, import_store


async def test_an_import_counts_the_deletion_it_carries_over(
    any_store_url: str, tmp_path: Path
) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    async with EventStore(source) as store:
        await store.append("acct.1", [Event("a.opened", {}), Event("a.credited", {})])
        await store.append("acct.2", Event("a.opened", {}))
    await export_store(source, str(tmp_path / "first.jsonl"))
    async with EventStore(any_store_url) as destination:
        first = await import_store(destination, str(tmp_path / "first.jsonl"))
        assert (first.copied, first.deletions) == (3, 0)
        async with EventStore(source) as store:
            await store.delete_stream("acct.2")  # a deletion, no new event
        await export_store(source, str(tmp_path / "second.jsonl"))
        second = await import_store(destination, str(tmp_path / "second.jsonl"))
        assert await destination.streams() == ["acct.1"]
        assert (second.copied, second.deletions) == (0, 1)
        again = await import_store(destination, str(tmp_path / "second.jsonl"))
        assert again.deletions == 0  # nothing left to delete


async def test_a_deletion_whose_hidden_rows_are_copied_is_counted(
    any_store_url: str, tmp_path: Path
) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    async with EventStore(source) as store:
        await store.append("acct.1", [Event("a.opened", {}), Event("a.credited", {})])
    async with EventStore(any_store_url) as destination:
        assert (await copy_store(source, destination)).deletions == 0
        async with EventStore(source) as store:
            await store.delete_stream("acct.1")
            await store.append("acct.1", Event("a.opened", {}), expected_version=NO_STREAM)
            await store.delete_stream("acct.1")  # its hidden rows: 0 to 2
            await store.append("acct.2", Event("a.opened", {}))
        report = await copy_store(source, destination)
        assert await destination.streams() == ["acct.2"]
        assert (report.copied, report.deletions) == (2, 1)


async def test_an_import_counts_it_too(any_store_url: str, tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    async with EventStore(source) as store:
        await store.append("acct.1", [Event("a.opened", {}), Event("a.credited", {})])
    await export_store(source, str(tmp_path / "first.jsonl"))
    async with EventStore(any_store_url) as destination:
        await import_store(destination, str(tmp_path / "first.jsonl"))
        async with EventStore(source) as store:
            await store.delete_stream("acct.1")
            await store.append("acct.1", Event("a.opened", {}), expected_version=NO_STREAM)
            await store.delete_stream("acct.1")
            await store.append("acct.2", Event("a.opened", {}))
        await export_store(source, str(tmp_path / "second.jsonl"))
        report = await import_store(destination, str(tmp_path / "second.jsonl"))
        assert await destination.streams() == ["acct.2"]
        assert (report.copied, report.deletions) == (2, 1)
