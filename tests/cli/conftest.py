"""Run the real command in a subprocess, against a temporary SQLite store."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


Cli = Callable[..., Result]


_PYCACHE = Path(tempfile.gettempdir()) / "pepperpy-event-cli-tests-pycache"


def start_command(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """Start ``python -m pepperpy.event ARGS`` in ``cwd``, reading its output as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "pepperpy.event", *args],
        cwd=cwd,
        env=command_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def thread_waits_in(pid: int, matches: Callable[[str], bool]) -> bool:
    """Whether a thread of process ``pid`` waits in a kernel function (its
    ``/proc/PID/task/TID/wchan``) that ``matches`` accepts."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/wchan", encoding="ascii") as wchan:
                if matches(wchan.read()):
                    return True
        except OSError:
            continue
    return False


def command_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The command's environment: no inherited PEPPERPY_EVENT_* settings.

    Byte code is cached in a private temporary folder, so the many short-lived
    processes of these tests do not each compile the standard library again when the
    environment sets PYTHONDONTWRITEBYTECODE.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEPPERPY_EVENT")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(_PYCACHE)
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "200"
    env.update(extra or {})
    return env


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """``cli("read", "user.1")`` runs ``python -m pepperpy.event`` in ``tmp_path``;
    ``stdin="..."`` pipes that text to it."""

    def run(
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 60,
        stdin: str | None = None,
    ) -> Result:
        done = subprocess.run(
            [sys.executable, "-m", "pepperpy.event", *args],
            cwd=tmp_path,
            env=command_env(env),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/store.db"


@dataclass
class TerminalRun:
    code: int
    out: str  # stdout, a pipe
    terminal: str  # what stderr, a pseudo-terminal, showed


def run_with_terminal_stderr(*args: str, cwd: Path, timeout: float = 60) -> TerminalRun:
    """Run the command with stderr on a pseudo-terminal (as at a shell) and stdout a pipe.

    The terminal is read while the command runs, so a chatty progress bar cannot fill
    its buffer and stall the command.
    """
    import pty
    import threading

    leader, follower = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pepperpy.event", *args],
            cwd=cwd,
            env=command_env({"TERM": "xterm", "COLUMNS": "100"}),
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=timeout,
        )
    finally:
        os.close(follower)
        reader.join(timeout)
        os.close(leader)
    return TerminalRun(done.returncode, done.stdout, b"".join(chunks).decode(errors="replace"))
