"""``pepperpy-event export``, ``import`` and ``copy``: the real command, in a subprocess."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from pepperpy.event import EventStore

from .conftest import Cli, command_env, run_with_terminal_stderr


def _stored(url: str) -> list[tuple[Any, ...]]:
    async def read() -> list[tuple[Any, ...]]:
        async with EventStore(url) as store:
            return [tuple(row) for row in await store.backend.read_stored(0, 10_000)]

    return asyncio.run(read())


def _demo(cli: Cli, url: str) -> list[tuple[Any, ...]]:
    """The demo's events, one stream of them deleted (its events hidden)."""
    assert cli("--store", url, "demo").code == 0

    async def delete() -> None:
        async with EventStore(url) as store:
            assert await store.delete_stream("shop.user.alice-1")

    asyncio.run(delete())
    stored = _stored(url)
    assert not all(row[12] for row in stored)
    return stored


def test_export_import_and_copy_keep_the_stored_events(cli: Cli, tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path}/source.db"
    stored = _demo(cli, source)
    exported = cli("export", "--store", source, "backup.jsonl")
    assert exported.code == 0, exported.err
    count = len(stored)
    last = stored[-1][0]
    assert exported.err.strip() == (
        f"exported {count} events to backup.jsonl; its newest event is at global position {last}"
    )
    lines = (tmp_path / "backup.jsonl").read_text().splitlines()
    assert orjson.loads(lines[0]) == {"format": "pepperpy-event-export", "version": 2}
    assert [orjson.loads(line)["global_position"] for line in lines[1:-1]] == [r[0] for r in stored]
    assert orjson.loads(lines[-1]) == {"end": True, "events": count}

    restored = f"sqlite:///{tmp_path}/restored.db"
    imported = cli("import", "--store", restored, "backup.jsonl", "--batch-size", "3")
    assert imported.code == 0, imported.err
    assert imported.err.startswith(f"imported {count} events into {restored}")
    assert _stored(restored) == stored
    again = cli("import", "--store", restored, "backup.jsonl")
    assert again.err.startswith(f"imported 0 events into {restored} (it held those up to ")

    copied = cli("copy", source, f"sqlite:///{tmp_path}/copy.db")
    assert copied.code == 0, copied.err
    assert _stored(f"sqlite:///{tmp_path}/copy.db") == stored


def test_export_to_stdout_imports_from_stdin(cli: Cli, tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path}/source.db"
    stored = _demo(cli, source)
    exported = cli("export", "--store", source, "-")
    assert exported.code == 0 and exported.out.count("\n") == len(stored) + 2
    done = subprocess.run(
        [sys.executable, "-m", "pepperpy.event", "import", "--store", "sqlite:///piped.db", "-"],
        cwd=tmp_path,
        env=command_env(),
        input=exported.out,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert _stored(f"sqlite:///{tmp_path}/piped.db") == stored


def test_a_bad_line_is_named_and_nothing_is_written(cli: Cli, tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path}/source.db"
    _demo(cli, source)
    assert cli("export", "--store", source, "backup.jsonl").code == 0
    lines = (tmp_path / "backup.jsonl").read_text().splitlines(keepends=True)
    event = orjson.loads(lines[3])
    event["data"] = "not base64!"
    lines[3] = orjson.dumps(event).decode() + "\n"
    (tmp_path / "bad.jsonl").write_text("".join(lines))
    result = cli("import", "--store", "sqlite:///bad.db", "bad.jsonl", "--batch-size", "1")
    assert result.code == 1
    assert result.err.startswith("pepperpy-event: error: bad.jsonl line 4: data is not base64")
    assert result.err.rstrip().endswith("; nothing was written")
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert not (tmp_path / "bad.db").exists() or _stored(f"sqlite:///{tmp_path}/bad.db") == []
    # from stdin the file is read once: the batches before the bad line's are written
    done = subprocess.run(
        [sys.executable, "-m", "pepperpy.event", "import", "--store", "sqlite:///bad.db", "-"]
        + ["--batch-size", "2"],
        cwd=tmp_path,
        env=command_env(),
        input="".join(lines),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("pepperpy-event: error: <stdin> line 4: data is not base64")
    assert done.stderr.rstrip().endswith(
        "; nothing of its batch was written; 2 events of it were written before (up to "
        "global position 1): fix the file and import it again to go on after them (an "
        "import resumes after the destination's newest event)"
    )
    assert len(_stored(f"sqlite:///{tmp_path}/bad.db")) == 2
    for text, why in [
        ("", "bad.jsonl is empty: an export starts with its header line"),
        ("{}\n", "bad.jsonl line 1: not a pepperpy-event export"),
        (lines[0] + "[1]\n", "bad.jsonl line 2: not a JSON object but list"),
        (lines[0] + lines[2] + lines[1], "bad.jsonl line 3: global_position 0 does not follow"),
    ]:
        (tmp_path / "bad.jsonl").write_text(text)
        result = cli("import", "--store", "sqlite:///other.db", "bad.jsonl")
        assert result.code == 1 and result.err.startswith(f"pepperpy-event: error: {why}")
        assert result.err.count("\n") == 1, result.err


def test_copy_refuses_what_it_cannot_do(cli: Cli, tmp_path: Path) -> None:
    missing = cli("copy", "sqlite:///nope.db", "sqlite:///copy.db")
    assert missing.code == 1
    assert missing.err.startswith("pepperpy-event: error: no event store at 'nope.db'")
    assert not (tmp_path / "nope.db").exists()
    source = f"sqlite:///{tmp_path}/source.db"
    _demo(cli, source)
    other = f"sqlite:///{tmp_path}/other.db"
    assert cli("--store", other, "append", "x.1", "t.y", "{}").code == 0
    diverged = cli("copy", source, other)
    assert diverged.code == 1
    assert diverged.err.startswith(
        "pepperpy-event: error: the destination is not a copy of the start of the source: "
        "its event at global position 0 is "
    )
    assert diverged.err.count("\n") == 1 and len(_stored(other)) == 1
    same = cli("copy", source, "SQLITE" + source.removeprefix("sqlite"))
    assert same.code == 1 and "are the same store" in same.err
    assert cli("export", "--store", source, "no/such/dir/backup.jsonl").code == 1
    assert cli("import", "--store", other, "missing.jsonl").err.startswith(
        "pepperpy-event: error: no export file at 'missing.jsonl'"
    )


def test_copy_from_sqlite_to_postgresql_and_back(
    cli: Cli, tmp_path: Path, postgres_url: str
) -> None:
    source = f"sqlite:///{tmp_path}/source.db"
    stored = _demo(cli, source)
    result = cli("copy", source, postgres_url, "--batch-size", "4")
    assert result.code == 0, result.err
    assert [tuple(row) for row in _stored(postgres_url)] == stored
    back = cli("copy", postgres_url, f"sqlite:///{tmp_path}/back.db")
    assert back.code == 0, back.err
    assert _stored(f"sqlite:///{tmp_path}/back.db") == stored


def test_a_terminal_shows_the_progress_and_the_summary(cli: Cli, tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path}/source.db"
    stored = _demo(cli, source)
    for bar, argv in (
        ("copying", ["copy", source, f"sqlite:///{tmp_path}/copy.db", "--batch-size", "1"]),
        ("exporting", ["export", "--store", source, "backup.jsonl", "--batch-size", "1"]),
        ("importing", ["import", "--store", f"sqlite:///{tmp_path}/restored.db", "backup.jsonl"]),
    ):
        result = run_with_terminal_stderr(*argv, cwd=tmp_path)
        assert result.code == 0, result.terminal
        assert "Traceback" not in result.terminal
        assert bar in result.terminal and f" {len(stored)} events" in result.terminal
    assert _stored(f"sqlite:///{tmp_path}/restored.db") == stored
