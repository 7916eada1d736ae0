"""A reader that goes away while the command prints nothing: ``tail -f`` on an idle store,
``replay --speed`` in a long pause. The command notices without writing and exits 141."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pepperpy.event import Event

from .conftest import Cli, start_command
from .test_cli import ok, seed

BROKEN_PIPE = 141
#: generous: the command checks its stdout a few times a second
BOUND = 10


def _close_after_first_line(command: subprocess.Popen[str]) -> tuple[str, int | None, str]:
    """Read one line, close stdout as ``head -1`` does, then wait up to BOUND seconds.

    The line read, the exit status (None: still running when the bound passed) and
    stderr.
    """
    assert command.stdout is not None and command.stderr is not None
    try:
        line = command.stdout.readline()
        command.stdout.close()
        try:
            command.wait(timeout=BOUND)
        except subprocess.TimeoutExpired:
            return line, None, ""
        return line, command.returncode, command.stderr.read()
    finally:
        if command.poll() is None:
            command.kill()
        command.communicate()


def test_tail_follow_on_an_idle_store_stops_when_the_reader_goes(
    store_url: str, tmp_path: Path
) -> None:
    seed(store_url, [("a.1", Event("t.x", {"n": 1})), ("a.1", Event("t.x", {"n": 2}))])
    following = start_command("tail", "-f", "-n", "2", "--store", store_url, cwd=tmp_path)
    line, code, err = _close_after_first_line(following)
    assert line.startswith("0 a.1:0 t.x")
    assert code == BROKEN_PIPE, "tail -f still ran, with nothing appended, after its reader left"
    assert err == ""


def test_replay_speed_stops_in_a_pause_when_the_reader_goes(
    cli: Cli, store_url: str, tmp_path: Path
) -> None:
    base = datetime(2024, 1, 1, tzinfo=UTC)
    seed(
        store_url,
        [("p.1", Event("tick", {"i": i}, timestamp=base + timedelta(hours=i))) for i in range(3)],
    )
    s = ("--store", store_url)
    replaying = start_command("replay", "--speed", "1", "--checkpoint", "c", *s, cwd=tmp_path)
    line, code, err = _close_after_first_line(replaying)
    assert line.startswith("0 p.1:0 tick")
    assert code == BROKEN_PIPE, "replay --speed sat out its hour-long pause after its reader left"
    assert err == ""
    # the checkpoint holds the printed event: the next run goes on after it
    again = ok(cli("replay", "--checkpoint", "c", *s))
    assert [text.split()[0] for text in again.lines] == ["1", "2"]
