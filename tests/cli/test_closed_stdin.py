"""Commands that read stdin, started with stdin closed (``<&-``, a daemon's ``exec <&-``).

Python then has no ``sys.stdin`` (None): ``import -`` failed with ``unexpected TypeError:
file must be a path or a stream, got NoneType`` (after making the store), ``bus publish
TOPIC @-`` with ``unexpected AttributeError: 'NoneType' object has no attribute 'read'``
and ``bus delete-group`` (asking first) with ``... no attribute 'isatty'``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import Result, command_env
from .test_cli import one_line_error


def _closed_stdin(tmp_path: Path, *args: str) -> Result:
    done = subprocess.run(
        ["sh", "-c", 'exec "$@" <&-', "sh", sys.executable, "-m", "pepperpy.event", *args],
        cwd=tmp_path,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def test_import_from_a_closed_stdin(tmp_path: Path) -> None:
    result = _closed_stdin(tmp_path, "import", "-", "--store", "sqlite:///copy.db")
    one_line_error(result, "stdin is closed: give an export FILE, or pipe one into import -")
    assert result.code == 1
    assert not (tmp_path / "copy.db").exists()


def test_bus_commands_with_a_closed_stdin(tmp_path: Path) -> None:
    transport = ("--transport", "redis://127.0.0.1:1/0")  # never reached
    result = _closed_stdin(tmp_path, "bus", "publish", "a.b", "@-", *transport)
    one_line_error(result, "JSON @-: stdin is closed: give the JSON, or @FILE")
    result = _closed_stdin(tmp_path, "bus", "delete-group", "a.*", "g", *transport)
    one_line_error(result, "not deleting group g on a.*", "pass --yes to delete it")
