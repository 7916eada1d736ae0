"""``import_store`` from a path that is no regular file: a pipe's ``/dev/fd/N`` (a
shell's ``<(zcat backup.jsonl.gz)``), a FIFO, a device.

Such a path was read through to check it, which consumed the pipe, then opened again
for the import: ``/dev/fd/N`` then read as empty ('is empty: an export starts with its
header line'), and a FIFO's second open waited for a writer that had gone, forever,
blocking the event loop. It is now read once, as a stream is (as ``export_store``
writes such a path directly).
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pepperpy.event import Event, EventStore, StoreError, export_store, import_store

pytestmark = pytest.mark.skipif(not Path("/dev/fd").is_dir(), reason="needs /dev/fd")

EVENTS = 2000  # an export of well over a pipe's buffer (64 KiB)


async def exported() -> str:
    async with EventStore("memory://") as source:
        await source.append(
            "a.1", [Event("t.x", {"n": n, "pad": "x" * 100}) for n in range(EVENTS)]
        )
        await source.delete_stream("a.1")
        await source.append("b.1", Event("t.x", {"n": -1}))
        text = io.StringIO()
        await export_store(source, text)
    return text.getvalue()


@contextlib.contextmanager
def fed(path_of: str | None, text: str) -> Iterator[str]:
    """A path reading ``text`` through a pipe, written by a thread: ``/dev/fd/N`` of a
    pipe (``path_of`` None), or the FIFO at ``path_of``."""
    if path_of is None:
        reading, writing = os.pipe()
        path = f"/dev/fd/{reading}"

        def feed() -> None:
            with contextlib.suppress(BrokenPipeError), open(writing, "w", encoding="utf-8") as pipe:
                pipe.write(text)  # an import that stops reading breaks the pipe
    else:
        os.mkfifo(path_of)
        path, reading = path_of, -1

        def feed() -> None:
            with contextlib.suppress(BrokenPipeError), open(path_of, "w", encoding="utf-8") as pipe:
                pipe.write(text)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        yield path
    finally:
        if reading >= 0:
            os.close(reading)
        feeder.join(30)
        assert not feeder.is_alive()


@pytest.mark.parametrize("kind", ["dev-fd", "fifo"])
async def test_a_pipe_path_is_imported_read_once(
    any_store_url: str, tmp_path: Path, kind: str
) -> None:
    text = await exported()
    fifo = None if kind == "dev-fd" else str(tmp_path / "fifo")
    async with EventStore(any_store_url) as store:
        with fed(fifo, text) as path:
            report = await import_store(store, path, batch_size=500)
        assert report.copied == EVENTS + 1
        assert [event.data["n"] async for event in store.read_all()] == [-1]  # a.1 deleted
        assert len(await store.backend.read_stored(0, EVENTS + 10)) == EVENTS + 1


async def test_a_bad_line_of_a_pipe_path_says_what_was_written(any_store_url: str) -> None:
    lines = (await exported()).splitlines(keepends=True)
    lines[1001] = lines[1001].replace('"t.x"', '"t..x"')  # the 1001st event
    async with EventStore(any_store_url) as store:
        with fed(None, "".join(lines)) as path, pytest.raises(StoreError) as raised:
            await import_store(store, path, batch_size=500)
        assert str(raised.value).startswith(f"{path} line 1002: type 't..x'")
        assert "; 1000 events of it were written before (up to global position 999)" in str(
            raised.value
        )
        assert len(await store.backend.read_stored(0, EVENTS + 10)) == 1000


async def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="is a directory: give the path of an export"):
        await import_store("memory://", tmp_path)
