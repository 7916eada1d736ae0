"""SIGTERM (``kill``, ``timeout``, ``docker stop``) stops a command as Ctrl-C does.

The same cleanup runs (a replay saves its checkpoint), and the exit status is 143
(128 + SIGTERM) where Ctrl-C gives 130, or 0 for ``tail -f``, meant to be stopped so.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from .conftest import Cli, start_command
from .test_cli import ok
from .test_pipes_and_signals import paced

TERMINATED = 143


def terminated(command: subprocess.Popen[str], first_line: str) -> tuple[int, str]:
    """Wait for ``first_line`` on the command's stdout, send SIGTERM, and let it end."""
    try:
        assert command.stdout is not None
        assert command.stdout.readline().startswith(first_line)
        command.send_signal(signal.SIGTERM)
        _, err = command.communicate(timeout=30)
    finally:
        if command.poll() is None:
            command.kill()
            command.communicate()
    return command.returncode, err


def test_sigterm_stops_a_replay_with_143_and_saves_its_checkpoint(
    cli: Cli, store_url: str, tmp_path: Path
) -> None:
    paced(store_url, 30, 1.0)
    args = ("replay", "--checkpoint", "nightly", "--store", store_url)
    code, err = terminated(start_command(*args, "--speed", "1", cwd=tmp_path), "0 tick.1:0")
    assert code == TERMINATED, err
    assert err.strip() == "terminated"
    assert "replay:nightly" in ok(cli("checkpoints", "--store", store_url)).out
    rest = ok(cli(*args))  # resumes after what was printed
    assert 0 < len(rest.lines) < 30


def test_sigterm_stops_tail_f_with_0(store_url: str, tmp_path: Path) -> None:
    paced(store_url, 3, 1.0)
    tail = start_command("tail", "-f", "-n", "1", "--store", store_url, cwd=tmp_path)
    code, err = terminated(tail, "2 tick.1:2")
    assert code == 0, err
    assert "Traceback" not in err
