"""What ``export FILE`` writes to when FILE is not a plain new file.

A symbolic link is followed (its target is replaced, atomically, and the link stays);
a FIFO, a device or a process substitution's ``/dev/fd/N`` is written as a stream (it
stays what it is); a directory is refused before anything is written; and a failure
leaves no ``.partial`` file behind.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pepperpy.event import Event
from pepperpy.event.store import export_store

from .conftest import Cli, command_env
from .test_cli import ok, one_line_error, seed

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_a_symlink_is_followed_and_stays_a_link(cli: Cli, store_url: str, tmp_path: Path) -> None:
    seed(store_url, [("s.1", Event("t.x", {"i": i})) for i in range(3)])
    (tmp_path / "real").mkdir()
    link = tmp_path / "backup.jsonl"
    link.symlink_to(tmp_path / "real" / "backup.jsonl")
    ok(cli("export", "backup.jsonl", "--store", store_url))
    assert link.is_symlink()
    assert len(lines_of(tmp_path / "real" / "backup.jsonl")) == 5  # header, 3 events, end line
    assert sorted(os.listdir(tmp_path / "real")) == ["backup.jsonl"]
    ok(cli("export", "backup.jsonl", "--store", store_url))  # replaces the target again
    assert link.is_symlink()


@needs_fifo
def test_a_fifo_is_written_as_a_stream_and_stays_a_fifo(
    cli: Cli, store_url: str, tmp_path: Path
) -> None:
    seed(store_url, [("s.1", Event("t.x", {"i": i})) for i in range(3)])
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    read: list[str] = []

    def reader() -> None:
        with open(fifo, encoding="utf-8") as stream:
            read.extend(stream.read().splitlines())

    thread = threading.Thread(target=reader, daemon=True)  # blocks for good if FIFO replaced
    thread.start()
    try:
        ok(cli("export", "pipe", "--store", store_url))
    finally:
        thread.join(timeout=30)
    assert len(read) == 5  # header, 3 events, end line
    assert fifo.is_fifo()
    assert not (tmp_path / "pipe.partial").exists()


def test_a_process_substitution_is_written(store_url: str, tmp_path: Path) -> None:
    seed(store_url, [("s.1", Event("t.x", {}))])
    # $! is the substituted process (bash 4.4+): wait for cat to have written it all
    script = f'"$@" export >(cat > {tmp_path}/got.jsonl) --store {store_url} && wait $!'
    done = subprocess.run(
        ["bash", "-c", script, "bash", sys.executable, "-m", "pepperpy.event"],
        cwd=tmp_path,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "exported 1 event to /dev/fd/" in done.stderr
    assert len(lines_of(tmp_path / "got.jsonl")) == 3  # header, the event, end line


def test_a_directory_is_refused_and_nothing_is_left(
    cli: Cli, store_url: str, tmp_path: Path
) -> None:
    seed(store_url, [("s.1", Event("t.x", {}))])
    (tmp_path / "out").mkdir()
    one_line_error(cli("export", "out", "--store", store_url), "'out' is a directory")
    assert sorted(os.listdir(tmp_path / "out")) == []
    assert not (tmp_path / "out.partial").exists()


def test_the_library_refuses_a_directory_before_reading(store_url: str, tmp_path: Path) -> None:
    seed(store_url, [("s.1", Event("t.x", {}))])
    with pytest.raises(IsADirectoryError, match="is a directory"):
        asyncio.run(export_store(store_url, tmp_path))
    assert not Path(f"{tmp_path}.partial").exists()


def test_a_failed_rename_removes_the_partial_file(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(store_url, [("s.1", Event("t.x", {}))])

    def refuse(source: str, destination: str) -> None:
        raise PermissionError(13, "Permission denied", destination)

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        asyncio.run(export_store(store_url, tmp_path / "backup.jsonl"))
    assert os.listdir(tmp_path) == ["store.db"]
