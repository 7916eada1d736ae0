"""docs/tutorial.md part 3: the shell session runs on the database part 2 made.

Part 2's script makes ``shop.db`` in its working directory; each ``$ pepperpy-event``
line of the page's ``console`` block then runs there, in order, must exit 0, and must
print every line shown below it that does not elide with ``...``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import command_env
from tests.test_docs_blocks import parse

DOC = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"
TIMEOUT = 60


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=command_env(), capture_output=True, text=True, timeout=TIMEOUT
    )


def _session(text: str) -> list[tuple[list[str], list[str]]]:
    """(argv after the program name, the lines shown below it) for each ``$`` line."""
    block = re.search(r"^```console\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    assert block is not None, "no ```console block in docs/tutorial.md"
    found: list[tuple[list[str], list[str]]] = []
    for line in block.group(1).splitlines():
        if line.startswith("$ "):
            argv = shlex.split(line[2:])
            assert argv[0] == "pepperpy-event"
            found.append((argv[1:], []))
        elif found:
            found[-1][1].append(line)
    return found


def _make_the_shop(text: str, cwd: Path) -> None:
    (shop,) = [block for block in parse(text) if 'EventStore("sqlite:///shop.db")' in block.code]
    script = cwd / "shop.py"
    script.write_text(shop.code)
    done = _run([sys.executable, "-W", "error", str(script)], cwd)
    assert done.returncode == 0, done.stderr
    assert (cwd / "shop.db").exists()


def test_the_shell_session_reads_the_shop(tmp_path: Path) -> None:
    text = DOC.read_text()
    _make_the_shop(text, tmp_path)
    session = _session(text)
    assert len(session) >= 4
    for argv, shown in session:
        done = _run([sys.executable, "-m", "pepperpy.event", *argv], tmp_path)
        where = f"pepperpy-event {shlex.join(argv)}"
        assert done.returncode == 0, f"{where}: {done.stderr}"
        printed = done.stdout.splitlines() + done.stderr.splitlines()
        for line in shown:
            if "..." not in line:
                assert line in printed, f"{where}: missing {line!r} in {printed}"
        if argv[-1] == "checkpoints":  # "processor:receipts 3 0 ...": caught up at 3
            assert done.stdout.split()[:3] == ["processor:receipts", "3", "0"], done.stdout


def test_an_absolute_path_with_three_slashes_is_told_the_url_with_four(tmp_path: Path) -> None:
    """What the page quotes: sqlite:///srv/shop/shop.db is relative; the error names the fix."""
    _make_the_shop(DOC.read_text(), tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = str(tmp_path / "shop.db")
    command = [sys.executable, "-m", "pepperpy.event", "--store"]
    done = _run([*command, f"sqlite://{path}", "stats"], elsewhere)  # three slashes
    assert done.returncode == 1
    assert f"no event store at '{path[1:]}', relative to the working directory" in done.stderr
    assert f"for the absolute path use sqlite:///{path}" in done.stderr
    done = _run([*command, f"sqlite:///{path}", "stats"], elsewhere)  # four
    assert done.returncode == 0, done.stderr
    assert "events: 4" in done.stdout.splitlines()
