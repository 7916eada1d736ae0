"""A reader that goes away (``| head``) and Ctrl-C, on the real command in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pepperpy.event import Event

from .conftest import Cli, command_env, start_command
from .test_cli import ok, seed

BROKEN_PIPE = 141
INTERRUPTED = 130


def into_closed_pipe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the command with stdout a pipe whose reader is already gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "pepperpy.event", *args],
            cwd=tmp_path,
            env=command_env(),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)


def paced(store_url: str, count: int, gap: float) -> None:
    base = datetime(2024, 1, 1, tzinfo=UTC)
    seed(
        store_url,
        [
            ("tick.1", Event("tick", {"i": i}, timestamp=base + timedelta(seconds=i * gap)))
            for i in range(count)
        ],
    )


@pytest.mark.parametrize(
    "args",
    [
        ("read", "tick.1"),
        ("tail",),
        ("replay",),
        ("replay", "--stream", "tick.1"),
        ("streams",),
        ("stats",),
    ],
)
def test_a_closed_pipe_stops_the_command_quietly(
    args: tuple[str, ...], store_url: str, tmp_path: Path
) -> None:
    paced(store_url, 3, 1.0)
    done = into_closed_pipe(tmp_path, *args, "--store", store_url)
    assert done.returncode == BROKEN_PIPE, done.stderr
    assert done.stderr == ""


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("replay", "--help")])
def test_help_and_version_into_a_closed_pipe_exit_141(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    """click answered the broken pipe with status 1; the docs promise 141 like any output."""
    done = into_closed_pipe(tmp_path, *args)
    assert done.returncode == BROKEN_PIPE, done.stderr
    assert done.stderr == ""


def test_replay_checkpoint_never_passes_an_unprinted_event(
    cli: Cli, store_url: str, tmp_path: Path
) -> None:
    paced(store_url, 5, 1.0)
    s = ("--store", store_url)
    done = into_closed_pipe(tmp_path, "replay", "--checkpoint", "c", *s)
    assert done.returncode == BROKEN_PIPE and done.stderr == ""
    again = ok(cli("replay", "--checkpoint", "c", *s))
    assert [line.split()[0] for line in again.lines] == ["0", "1", "2", "3", "4"]


def test_replay_piped_into_head(cli: Cli, store_url: str, tmp_path: Path) -> None:
    paced(store_url, 20, 0.1)
    s = ("--store", store_url)
    replaying = start_command("replay", "--speed", "1", "--checkpoint", "h", *s, cwd=tmp_path)
    try:
        assert replaying.stdout is not None and replaying.stderr is not None
        assert replaying.stdout.readline().startswith("0 tick.1:0 tick")
        replaying.stdout.close()  # what head does after its first line
        replaying.wait(timeout=30)
        err = replaying.stderr.read()
    finally:
        if replaying.poll() is None:
            replaying.kill()
        replaying.communicate()
    assert replaying.returncode == BROKEN_PIPE, err
    assert "Traceback" not in err and "failed" not in err
    # the events written after head left are replayed again, not lost
    assert len(ok(cli("replay", "--checkpoint", "h", *s)).lines) >= 10


def test_ctrl_c_says_interrupted_and_exits_130(store_url: str, tmp_path: Path) -> None:
    paced(store_url, 30, 1.0)
    replaying = start_command("replay", "--speed", "1", "--store", store_url, cwd=tmp_path)
    try:
        assert replaying.stdout is not None
        assert replaying.stdout.readline().startswith("0 tick.1:0")
        replaying.send_signal(signal.SIGINT)
        _, err = replaying.communicate(timeout=20)
    finally:
        if replaying.poll() is None:
            replaying.kill()
            replaying.communicate()
    assert replaying.returncode == INTERRUPTED, err
    assert err.strip() == "interrupted"
