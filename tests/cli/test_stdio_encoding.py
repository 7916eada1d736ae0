"""``export -`` and ``import -`` read and write UTF-8, whatever the locale's encoding.

An export file is UTF-8 (a FILE is written and read so), but stdout and stdin went
through the locale's encoding: in a Latin-1 or cp1252 locale (PYTHONIOENCODING, an old
LANG, Windows), ``export -`` wrote a stream named ``café.1`` as Latin-1, a file
``import`` then refused as not UTF-8, and ``import -`` read an export's ``café.1`` as
``cafÃ©.1`` and stored it so, silently.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from pepperpy.event import Event, EventStore

from .conftest import Cli, command_env
from .test_cli import ok, seed

NAMES = ["café.1", "ünïcødé.2"]


def _run(args: list[str], cwd: Path, encoding: str, given: bytes = b"") -> bytes:
    done = subprocess.run(
        [sys.executable, "-m", "pepperpy.event", *args],
        cwd=cwd,
        env=command_env({"PYTHONIOENCODING": encoding}),
        input=given,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    return done.stdout


def _streams(url: str) -> list[str]:
    async def names() -> list[str]:
        async with EventStore(url) as store:
            return sorted(await store.streams())

    return asyncio.run(names())


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252"])
def test_export_to_stdout_writes_utf8(
    cli: Cli, store_url: str, tmp_path: Path, encoding: str
) -> None:
    seed(store_url, [(name, Event("t.x", {"k": "é"}, source="sé")) for name in NAMES])
    ok(cli("export", "file.jsonl", "--store", store_url))
    written = _run(["export", "-", "--store", store_url], tmp_path, encoding)
    assert written == (tmp_path / "file.jsonl").read_bytes()
    assert "café.1".encode() in written


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252"])
def test_import_from_stdin_reads_utf8(
    cli: Cli, store_url: str, tmp_path: Path, encoding: str
) -> None:
    seed(store_url, [(name, Event("t.x", {"k": "é"}, source="sé")) for name in NAMES])
    ok(cli("export", "file.jsonl", "--store", store_url))
    copy = f"sqlite:///{tmp_path}/copy.db"
    _run(
        ["import", "-", "--store", copy], tmp_path, encoding, (tmp_path / "file.jsonl").read_bytes()
    )
    assert _streams(copy) == sorted(NAMES)
    ok(cli("export", "again.jsonl", "--store", copy))
    assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "file.jsonl").read_bytes()
