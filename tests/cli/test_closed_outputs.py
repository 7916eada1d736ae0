"""A command started with stdout or stderr closed (``>&-``, a cron job, ``exec 2>&-``).

Python then has ``sys.stdout`` (or ``sys.stderr``) ``None``; the command must follow the
closed pipe's rules: ``append`` exits 0 once its event is written (so a retry cannot
write it twice), a reading command stops with 141, and a closed stderr loses its lines
without changing what was done or the exit status. A ``subprocess.DEVNULL`` output is
open (on /dev/null), so the command is started by a shell that closes the descriptor.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pepperpy.event import Event

from .conftest import Cli, Result, command_env
from .test_cli import ok, seed

BROKEN_PIPE = 141


def closed(tmp_path: Path, which: str, *args: str, timeout: float = 60) -> Result:
    """Run the command with ``which`` ("stdout" or "stderr") closed, the other captured."""
    redirect = ">&-" if which == "stdout" else "2>&-"
    done = subprocess.run(
        ["bash", "-c", f'exec "$@" {redirect}', "bash", sys.executable, "-m", "pepperpy.event"]
        + list(args),
        cwd=tmp_path,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def test_append_with_stdout_closed_exits_0_once_written(
    cli: Cli, store_url: str, tmp_path: Path
) -> None:
    done = closed(tmp_path, "stdout", "append", "s.1", "t.x", "{}", "--store", store_url)
    assert done.code == 0, done.err
    assert "appended s.1:0 t.x" in done.err and "stdout closed" in done.err
    assert "Traceback" not in done.err
    assert ok(cli("read", "s.1", "--store", store_url)).out.splitlines() == ["0 t.x {}"]


def test_append_with_stderr_closed_prints_and_exits_0(
    cli: Cli, store_url: str, tmp_path: Path
) -> None:
    done = closed(tmp_path, "stderr", "append", "s.1", "t.x", "{}", "--store", store_url)
    assert done.code == 0
    assert done.out.startswith("appended s.1:0 t.x")


@pytest.mark.parametrize(
    "args",
    [("stats",), ("read", "s.1"), ("replay",), ("export", "-"), ("tail",), ("tail", "-f")],
)
def test_reading_commands_with_stdout_closed_stop_as_on_a_closed_pipe(
    args: tuple[str, ...], store_url: str, tmp_path: Path
) -> None:
    seed(store_url, [("s.1", Event("t.x", {"i": 1}))])
    done = closed(tmp_path, "stdout", *args, "--store", store_url)
    assert done.code == BROKEN_PIPE, done.err
    assert done.err == ""


def test_demo_with_stdout_closed_stops_as_on_a_closed_pipe(tmp_path: Path) -> None:
    done = closed(tmp_path, "stdout", "demo", "--store", f"sqlite:///{tmp_path}/demo.db")
    assert done.code == BROKEN_PIPE, done.err
    assert done.err == ""


def test_replay_with_stderr_closed_saves_its_checkpoint_and_exits_0(
    cli: Cli, store_url: str, tmp_path: Path
) -> None:
    seed(store_url, [("s.1", Event("t.x", {"i": i})) for i in range(3)])
    args = ("replay", "--quiet", "--checkpoint", "nightly", "--store", store_url)
    done = closed(tmp_path, "stderr", *args)
    assert done.code == 0
    assert done.out == ""
    again = ok(cli(*args))  # resumes after the three events: nothing left
    assert again.err.startswith("replayed 0,"), again.err


def test_errors_with_stderr_closed_keep_their_status(store_url: str, tmp_path: Path) -> None:
    seed(store_url, [("s.1", Event("t.x", {}))])
    assert closed(tmp_path, "stderr", "read", "nobody.1", "--store", store_url).code == 1
    assert closed(tmp_path, "stderr", "append").code == 2  # a usage mistake


def test_help_with_stdout_closed_exits_141(tmp_path: Path) -> None:
    done = closed(tmp_path, "stdout", "--help")
    assert done.code == BROKEN_PIPE
    assert done.err == ""
