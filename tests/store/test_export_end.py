"""An export file cut off at a line break (an interrupted copy, ``head -n``, an export
killed while writing to a pipe) imported without an error, short of the events after
the cut: the format (version 1) had no end marker. Version 2 ends with an end line
(``{"end":true,"events":N}``); a file without it is refused, nothing written from a
path. Version 1 files still import (a cut in one cannot be seen)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from pepperpy.event import Event, EventStore, StoreError, export_store, import_store
from pepperpy.event.store.base import NO_STREAM
from tests.cli.conftest import command_env

#: header, 4 events, end line
LINES = 6


async def exported() -> list[str]:
    """The lines (with their line breaks) of an export of a store of 4 events in 2
    streams, one of them deleted after its first event."""
    async with EventStore("memory://") as source:
        await source.append("a.1", [Event("t.x", {"n": 0}), Event("t.x", {"n": 1})])
        await source.append("b.1", Event("t.x", {"n": 2}))
        await source.delete_stream("a.1")
        await source.append("a.1", Event("t.x", {"n": 3}), expected_version=NO_STREAM)
        stream = io.StringIO()
        await export_store(source, stream)
    lines = stream.getvalue().splitlines(keepends=True)
    assert len(lines) == LINES
    return lines


async def stored(url: str) -> list[tuple[object, ...]]:
    async with EventStore(url) as store:
        return [tuple(row[:13]) for row in await store.backend.read_stored(0, 100)]


async def test_the_file_ends_with_its_end_line() -> None:
    lines = await exported()
    assert orjson.loads(lines[0]) == {"format": "pepperpy-event-export", "version": 2}
    assert orjson.loads(lines[-1]) == {"end": True, "events": 4}


@pytest.mark.parametrize("kept", range(1, LINES))
async def test_a_file_cut_at_a_line_break_writes_nothing(tmp_path: Path, kept: int) -> None:
    lines = await exported()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(lines[:kept]), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'copy.db'}"
    with pytest.raises(StoreError) as raised:
        await import_store(url, cut, batch_size=1)
    assert str(raised.value) == (
        f"{cut}: the file ends after line {kept} without its end line: it was cut off "
        f"({kept - 1} event{'' if kept == 2 else 's'} read); nothing was written"
    )
    assert not (tmp_path / "copy.db").exists()  # read through before the store opens


@pytest.mark.parametrize("kept", range(1, LINES))
async def test_a_stream_cut_at_a_line_break_is_refused_and_resumable(
    tmp_path: Path, kept: int
) -> None:
    lines = await exported()
    url = f"sqlite:///{tmp_path / 'copy.db'}"
    with pytest.raises(StoreError, match=f"ends after line {kept} without its end line") as raised:
        await import_store(url, io.StringIO("".join(lines[:kept])), batch_size=1)
    written = kept - 1  # batches of one event: every one read before the cut
    message = str(raised.value)
    if written:
        assert f"; {written} event{'' if written == 1 else 's'} of it " in message
        assert "import the whole file to go on after them" in message
    else:
        assert message.endswith("; nothing was written")
    assert len(await stored(url)) == written
    report = await import_store(url, io.StringIO("".join(lines)))  # resumes after them
    assert report.copied == 4 - written
    whole = tmp_path / "whole.jsonl"
    whole.write_text("".join(lines), encoding="utf-8")
    await import_store(f"sqlite:///{tmp_path / 'at_once.db'}", whole)
    assert await stored(url) == await stored(f"sqlite:///{tmp_path / 'at_once.db'}")


async def test_a_whole_file_without_its_last_line_break_imports(tmp_path: Path) -> None:
    lines = await exported()
    whole = tmp_path / "whole.jsonl"
    whole.write_text("".join(lines).rstrip("\n"), encoding="utf-8")
    assert (await import_store("memory://", whole)).copied == 4


async def test_a_version_1_file_still_imports(tmp_path: Path) -> None:
    lines = await exported()
    old = tmp_path / "old.jsonl"
    header = '{"format":"pepperpy-event-export","version":1}\n'
    old.write_text(header + "".join(lines[1:-1]), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'copy.db'}"
    assert (await import_store(url, old)).copied == 4
    assert [row[12] for row in await stored(url)] == [False, False, True, True]
    with_end = tmp_path / "with_end.jsonl"  # an end line is no version 1 line
    with_end.write_text(header + "".join(lines[1:]), encoding="utf-8")
    with pytest.raises(StoreError, match="line 6: missing global_position, "):
        await import_store("memory://", with_end)


def _edited(lines: list[str], how: str) -> str:
    body, end = lines[:-1], lines[-1]
    if how == "count":
        return "".join(body) + '{"end":true,"events":3}\n'
    if how == "not last":  # its count right for the lines before it
        return "".join(body[:-1]) + '{"end":true,"events":3}\n' + body[-1]
    if how == "twice":
        return "".join(lines) + end
    if how == "shape":
        return "".join(body) + '{"end":true}\n'
    assert how == "after"
    return "".join(lines) + "\n"


@pytest.mark.parametrize(
    ("how", "said"),
    [
        ("count", "line 6: the end line counts 3 event lines, the file has 4 before it"),
        ("not last", "line 6: a line after the end line (line 5)"),
        ("twice", "line 7: a line after the end line (line 6)"),
        ("after", "line 7: a line after the end line (line 6)"),
        ("shape", 'line 6: an end line must be {"end":true,"events":4}'),
    ],
)
async def test_a_bad_end_line_is_refused(tmp_path: Path, how: str, said: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(_edited(await exported(), how), encoding="utf-8")
    with pytest.raises(StoreError) as raised:
        await import_store(f"sqlite:///{tmp_path / 'copy.db'}", bad, batch_size=1)
    assert str(raised.value).startswith(f"{bad} {said}"), raised.value
    assert str(raised.value).endswith("; nothing was written")
    assert not (tmp_path / "copy.db").exists()


#: the header's version as JSON, each refused: only the integers 1 and 2 are versions.
#: true and 1.0 equal 1 in Python (and 2.0 equals 2): they were taken for versions
NOT_VERSIONS = ["3", "0", "true", "false", "1.0", "2.0", '"2"', "null", "[2]", None]


@pytest.mark.parametrize("version", NOT_VERSIONS)
async def test_a_header_version_not_the_integer_1_or_2_is_refused(
    tmp_path: Path, any_store_url: str, version: str | None
) -> None:
    lines = await exported()
    header = '{"format":"pepperpy-event-export"}\n'
    if version is not None:  # None: no version field at all
        header = lines[0].replace('"version":2', f'"version":{version}')
    odd = tmp_path / "odd.jsonl"
    odd.write_text(header + "".join(lines[1:]), encoding="utf-8")
    got = "no such field" if version is None else version
    said = (
        f'{odd} line 1: the header\'s "version" must be the integer 1 or 2 (the export '
        f"format versions this pepperpy-event reads), got {got}; "
    )
    async with EventStore(any_store_url) as store:
        with pytest.raises(StoreError) as raised:
            await import_store(store, odd, batch_size=1)
        assert str(raised.value) == said + "nothing was written"
        with pytest.raises(StoreError) as raised:  # a stream: read once, batch by batch
            await import_store(store, io.StringIO(odd.read_text()), batch_size=1)
        assert str(raised.value).startswith(said.replace(str(odd), "<stream>"))
        assert await store.backend.read_stored(0, 10) == []
        await import_store(store, io.StringIO("".join(lines)))  # the file as exported
        assert len(await store.backend.read_stored(0, 10)) == 4


async def test_the_command_refuses_a_cut_file_in_one_line(tmp_path: Path) -> None:
    lines = await exported()
    (tmp_path / "cut.jsonl").write_text("".join(lines[:3]), encoding="utf-8")
    command = [sys.executable, "-m", "pepperpy.event", "import", "cut.jsonl"]
    done = subprocess.run(
        [*command, "--store", "sqlite:///copy.db"],
        cwd=tmp_path,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        "pepperpy-event: error: cut.jsonl: the file ends after line 3 without its end line: "
        "it was cut off (2 events read); nothing was written"
    ]
    assert not (tmp_path / "copy.db").exists()


async def test_the_command_refuses_a_float_version_in_one_line(tmp_path: Path) -> None:
    lines = await exported()  # 1.0 was taken for 1 (a failed assertion, or, with -O, read)
    header = lines[0].replace('"version":2', '"version":1.0')
    (tmp_path / "odd.jsonl").write_text(header + "".join(lines[1:]), encoding="utf-8")
    for optimized in ([], ["-O"]):
        done = subprocess.run(
            [sys.executable, *optimized, "-m", "pepperpy.event", "import", "odd.jsonl"]
            + ["--store", "sqlite:///copy.db"],
            cwd=tmp_path,
            env=command_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, done.stderr
        assert done.stderr.splitlines() == [
            'pepperpy-event: error: odd.jsonl line 1: the header\'s "version" must be the '
            "integer 1 or 2 (the export format versions this pepperpy-event reads), got 1.0; "
            "nothing was written"
        ]
        assert not (tmp_path / "copy.db").exists()


@pytest.mark.parametrize("batch_size", [1, 2, 3])
async def test_a_bad_line_of_a_stream_says_what_was_written_before_it(
    any_store_url: str, batch_size: int
) -> None:
    """A stream is read once: the batches before a bad line's are written. The error
    said only 'nothing of its batch was written', so whether anything else was, and
    what to do, was left to guess."""
    lines = await exported()
    lines[4] = lines[4].replace('"t.x"', '"t..x"')  # line 5, the 4th event: a bad type
    async with EventStore(any_store_url) as store:
        with pytest.raises(StoreError) as raised:
            await import_store(store, io.StringIO("".join(lines)), batch_size=batch_size)
        written = [row[0] for row in await store.backend.read_stored(0, 100)]
        assert len(written) == 3 // batch_size * batch_size  # whole batches before line 5
        count = len(written)
        message = str(raised.value)
        assert message.startswith("<stream> line 5: type 't..x': ")
        assert message.endswith(
            f"; nothing of its batch was written; {count} event{'' if count == 1 else 's'} "
            f"of it {'was' if count == 1 else 'were'} written before (up to global position "
            f"{written[-1]}): fix the file and import it again to go on after them (an "
            "import resumes after the destination's newest event)"
        )
        lines[4] = lines[4].replace('"t..x"', '"t.x"')
        report = await import_store(store, io.StringIO("".join(lines)))  # goes on after them
        assert report.copied == 4 - len(written)
