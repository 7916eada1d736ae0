"""docs/cli.md: the session runs in order and exits 0; the error examples print what is shown."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from .conftest import Cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def _commands(fence: str) -> list[tuple[list[str], list[str]]]:
    """(argv after the program name, the lines shown below it) for each ``$`` line."""
    text = DOC.read_text()
    block = re.search(rf"^```{fence}\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    assert block is not None, f"no ```{fence} block in {DOC.name}"
    found: list[tuple[list[str], list[str]]] = []
    for line in block.group(1).splitlines():
        if line.startswith("$ "):
            argv = shlex.split(line[2:])
            assert argv[0] == "pepperpy-event"
            found.append((argv[1:], []))
        elif found:
            found[-1][1].append(line)
    return found


def test_the_session_runs_in_order(cli: Cli) -> None:
    session = _commands("console")
    assert len(session) >= 8
    for argv, shown in session:
        result = cli(*argv)
        assert result.code == 0, f"pepperpy-event {shlex.join(argv)}: {result.err}"
        assert "Traceback" not in result.err
        # lines shown in full (no "..." elision) are exactly what the command prints
        exact = [line for line in shown if "..." not in line and not line.startswith("replayed")]
        printed = result.out.splitlines() + result.err.splitlines()
        for line in exact:
            assert line in printed, f"pepperpy-event {shlex.join(argv)}: missing {line!r}"
    errors = _commands("text")
    assert len(errors) >= 5
    for argv, shown in errors:
        result = cli(*argv)
        assert result.code == 1 and "Traceback" not in result.err
        assert result.err.strip().splitlines() == shown, shlex.join(argv)
