"""A stdout that cannot take what the command prints: a narrow encoding, a full disk.

``PYTHONIOENCODING=cp1252`` stands for a redirected stdout on Windows without
``PYTHONUTF8=1``; ``/dev/full`` for a disk that filled up under ``replay > export.txt``.
What the command did must be what its exit status says, and a checkpointed replay must
never move past an event it did not print.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pepperpy.event import Event

from .conftest import Cli, Result, command_env
from .test_cli import ok, one_line_error, seed
from .test_pipes_and_signals import into_closed_pipe

CP1252 = {"PYTHONIOENCODING": "cp1252"}
needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")


def into_full_disk(tmp_path: Path, *args: str) -> Result:
    """Run the command with stdout on ``/dev/full``: every write fails with ENOSPC."""
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "pepperpy.event", *args],
            cwd=tmp_path,
            env=command_env(),
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    return Result(done.returncode, "", done.stderr)


def in_cp1252(tmp_path: Path, *args: str) -> Result:
    """Run the command with stdout in cp1252, what Windows gives a redirected stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "pepperpy.event", *args],
        cwd=tmp_path,
        env=command_env(CP1252),
        capture_output=True,
        encoding="cp1252",
        timeout=60,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def stored(cli: Cli, stream: str, store_url: str) -> list[str]:
    return ok(cli("read", stream, "--store", store_url)).lines


def test_append_of_an_unencodable_name_succeeds_once(
    cli: Cli, store_url: str, tmp_path: Path
) -> None:
    """It wrote the event, then failed to print and said error: the retry wrote it twice."""
    done = ok(
        in_cp1252(tmp_path, "append", "注文.1", "order.placed", '{"n":1}', "--store", store_url)
    )
    assert done.out == "appended \\u6ce8\\u6587.1:0 order.placed (global position 0)\n"
    assert done.err == ""
    assert stored(cli, "注文.1", store_url) == ['0 order.placed {"n":1}']


@needs_dev_full
def test_append_whose_confirmation_cannot_be_printed_exits_0(
    cli: Cli, store_url: str, tmp_path: Path
) -> None:
    done = into_full_disk(tmp_path, "append", "s.1", "t.x", "{}", "--store", store_url)
    assert done.code == 0, done.err
    assert done.err.strip().splitlines() == [
        "pepperpy-event: warning: appended s.1:0 t.x (global position 0), but stdout "
        "could not print this (No space left on device)"
    ]
    assert stored(cli, "s.1", store_url) == ["0 t.x {}"]


def test_append_into_a_closed_pipe_exits_0_once_written(
    cli: Cli, store_url: str, tmp_path: Path
) -> None:
    done = into_closed_pipe(tmp_path, "append", "s.1", "t.x", "{}", "--store", store_url)
    assert done.returncode == 0, done.stderr
    assert "appended s.1:0 t.x" in done.stderr and "its reader closed it" in done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert stored(cli, "s.1", store_url) == ["0 t.x {}"]


@pytest.mark.parametrize("as_json", [False, True])
def test_replay_into_a_narrow_encoding_prints_every_event_as_json(
    cli: Cli, store_url: str, tmp_path: Path, as_json: bool
) -> None:
    """Unencodable text was a handler failure: a traceback each, exit 0, and the
    checkpoint moved past the events that were never printed."""
    data = [{"item": "coffee"}, {"item": "お茶"}, {"note": "café ☕ 😀", "q": '"\\'}]
    seed(store_url, [("orders.1", Event("order.placed", data[0]))])
    seed(store_url, [("注文.1", Event("order.placed", item)) for item in data[1:]])
    s = ("--checkpoint", "export", "--store", store_url, *(["--json"] if as_json else []))
    done = ok(in_cp1252(tmp_path, "replay", *s))
    assert "failed 0" in done.err, done.err
    if as_json:
        printed = [json.loads(line) for line in done.lines]
        assert [event["data"] for event in printed] == data
        assert [event["stream"] for event in printed] == ["orders.1", "注文.1", "注文.1"]
    else:
        assert [json.loads(line.split(" ", 3)[3]) for line in done.lines] == data
        assert "café \\u2615 \\ud83d\\ude00" in done.lines[2]  # é is in cp1252, ☕ and 😀 not
        assert done.lines[1].split(" ")[1] == "\\u6ce8\\u6587.1:0"
    # the checkpoint is after the last event: nothing was skipped past
    assert ok(cli("replay", *s)).lines == []


@pytest.mark.parametrize(
    "args",
    [("read", "注文.1"), ("read", "注文.1", "--json"), ("tail",), ("streams",), ("stats",)],
)
def test_reading_commands_print_unencodable_text_escaped(
    cli: Cli, store_url: str, args: tuple[str, ...]
) -> None:
    seed(store_url, [("注文.1", Event("order.受注", {"item": "お茶"}))])
    done = ok(cli(*args, "--store", store_url, env={"PYTHONIOENCODING": "ascii"}))
    assert done.lines and done.err == ""
    # the stream's name, or the event type's for stats
    assert "\\u6ce8\\u6587.1" in done.out or "order.\\u53d7\\u6ce8" in done.out, done.out


@needs_dev_full
@pytest.mark.parametrize("checkpoint", [True, False])
def test_replay_stops_at_the_first_event_it_cannot_print(
    cli: Cli, store_url: str, tmp_path: Path, checkpoint: bool
) -> None:
    seed(store_url, [("orders.1", Event("order.placed", {"n": n})) for n in range(3)])
    s = ("--checkpoint", "export", "--store", store_url) if checkpoint else ("--store", store_url)
    done = into_full_disk(tmp_path, "replay", *s)
    one_line_error(
        done,
        "could not print the event at global position 0 (orders.1:0) to stdout",
        "No space left on device",
    )
    assert ("checkpoint 'export' resumes at it" in done.err) is checkpoint
    assert "Exception ignored" not in done.err
    # the next run starts with the event that could not be printed
    assert [line.split(" ")[0] for line in ok(cli("replay", *s)).lines] == ["0", "1", "2"]


def test_escaped_writes_json_escapes_for_what_the_encoding_lacks() -> None:
    from pepperpy.event.cli._output import escaped

    line = 'x.1 {"a":"é😀\\u0007"}'
    assert escaped(line, "ascii") == 'x.1 {"a":"\\u00e9\\ud83d\\ude00\\u0007"}'
    assert escaped(line, "cp1252") == 'x.1 {"a":"é\\ud83d\\ude00\\u0007"}'
    assert escaped(line, "utf-8") == line
    assert json.loads(escaped(line, "ascii").split(" ", 1)[1]) == json.loads(line.split(" ", 1)[1])
