"""What the library logs reaches the command's stderr as one line; -v adds the traceback.

Before, such a record went through Python's last-resort handler: the bare message, then
a traceback of thirty lines, in the middle of the command's own one-line messages.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pepperpy.event import Event, EventStore

from .conftest import Cli, command_env

#: the record the library logs when a replay that stops cannot save its checkpoint
SAVE_FAILED = (
    "pepperpy-event: error: replay: saving checkpoint 'export' at position 0 failed while "
    "the replay ended with CancelledError (ConcurrencyError: "
)


def _two_events_an_hour_apart(url: str) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)

    async def fill() -> None:
        async with EventStore(url) as events:
            first = Event("t.x", {"n": 0}, timestamp=start)
            await events.append(
                "a.1", [first, Event("t.x", {"n": 1}, timestamp=start + timedelta(hours=1))]
            )

    asyncio.run(fill())


def _interrupted_replay_whose_checkpoint_moved(
    tmp_path: Path, before: tuple[str, ...], after: tuple[str, ...], env: dict[str, str]
) -> tuple[int, str]:
    """Replay at the events' own pace, let another replay move the checkpoint, Ctrl-C.

    The paced replay prints the first event, then waits an hour for the second; a
    second replay of the same checkpoint runs to the end meanwhile. Interrupted, the
    first saves its checkpoint from where it last saved (none), which the second has
    moved: the library refuses the save and logs it, as the replay ends with Ctrl-C.
    """
    url = f"sqlite:///{tmp_path}/events.db"
    _two_events_an_hour_apart(url)
    replay = ("replay", "--store", url, "--checkpoint", "export")
    paced = subprocess.Popen(
        [sys.executable, "-m", "pepperpy.event", *before, *replay, "--speed", "1", *after],
        cwd=tmp_path,
        env=command_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert paced.stdout is not None
        assert paced.stdout.readline().startswith("0 a.1:0 t.x ")  # now waiting for the next
        other = subprocess.run(
            [sys.executable, "-m", "pepperpy.event", *replay, "--quiet"],
            cwd=tmp_path,
            env=command_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert other.returncode == 0 and "replayed 2" in other.stderr, other.stderr
        paced.send_signal(signal.SIGINT)
        _, err = paced.communicate(timeout=60)
    finally:
        if paced.poll() is None:
            paced.kill()
            paced.communicate()
    return paced.returncode, err


def test_a_logged_failure_is_one_line_without_its_traceback(tmp_path: Path) -> None:
    code, err = _interrupted_replay_whose_checkpoint_moved(tmp_path, (), (), {})
    assert code == 130, err
    lines = [line for line in err.splitlines() if line]  # click starts a line after ^C
    assert len(lines) == 2 and lines[1] == "interrupted", err
    assert lines[0].startswith(SAVE_FAILED) and lines[0].endswith(")"), err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("before", "after", "env"),
    [
        pytest.param((), ("-v",), {}, id="replay -v"),
        pytest.param(("--verbose",), (), {}, id="--verbose replay"),
        pytest.param((), (), {"PEPPERPY_EVENT_DEBUG": "1"}, id="PEPPERPY_EVENT_DEBUG"),
    ],
)
def test_verbose_adds_the_traceback(
    tmp_path: Path, before: tuple[str, ...], after: tuple[str, ...], env: dict[str, str]
) -> None:
    code, err = _interrupted_replay_whose_checkpoint_moved(tmp_path, before, after, env)
    assert code == 130, err
    assert err.startswith(SAVE_FAILED), err
    first, _, rest = err.partition("\n")
    assert first.endswith(")") and rest.startswith("Traceback (most recent call last):"), err
    assert "ConcurrencyError: stream 'checkpoint replay:export'" in rest, err
    assert err.rstrip().endswith("\ninterrupted"), err


def test_every_subcommand_takes_verbose(cli: Cli) -> None:
    """On the group and on every subcommand, as --store, nested ones too (audit verify)."""
    for args in (("tail", "-vv", "--help"), ("audit", "-v", "verify", "-v", "--help")):
        done = cli(*args)
        assert done.code == 0 and "-v, --verbose" in done.out, (args, done.err)


def test_warnings_by_default_info_with_v_debug_with_vv(capsys: pytest.CaptureFixture[str]) -> None:
    """And only while the command runs: a program calling main() keeps its own logging."""
    from pepperpy.event.cli._logs import logging_to_stderr, more_verbose

    logger = logging.getLogger("pepperpy.event.cli.test")
    tree = logging.getLogger("pepperpy.event")
    level, handlers = tree.level, list(tree.handlers)
    with logging_to_stderr():
        logger.info("not shown")
        logger.warning("shown,\n  on one line")
        more_verbose(1)
        logger.info("shown with -v")
        logger.debug("not shown with -v")
        more_verbose(1)
        logger.debug("shown with -vv")
    logger.warning("not shown: the command is over")
    assert capsys.readouterr().err.splitlines() == [
        "pepperpy-event: warning: shown, on one line",
        "pepperpy-event: info: shown with -v",
        "pepperpy-event: debug: shown with -vv",
    ]
    assert (tree.level, tree.handlers) == (level, handlers)
