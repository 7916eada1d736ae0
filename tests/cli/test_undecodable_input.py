"""Arguments and schema files whose bytes are not UTF-8 get an error naming the byte.

A command-line argument's bytes that are not UTF-8 reach Python as lone surrogates; the
JSON parser then said ``str is not valid UTF-8: surrogates not allowed: line 1 column 1
(char 0)`` wherever the byte was, and a schema file of such bytes said the same.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import Result, command_env
from .test_cli import one_line_error


def _run(tmp_path: Path, *args: bytes) -> Result:
    done = subprocess.run(
        [sys.executable.encode(), b"-m", b"pepperpy.event", *args],
        cwd=tmp_path,
        env=command_env(),
        capture_output=True,
        timeout=60,
    )
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


def test_json_data_with_a_byte_that_is_not_utf8(tmp_path: Path, store_url: str) -> None:
    store = store_url.encode()
    result = _run(tmp_path, b"append", b"s.1", b"t.x", b'{"a":"\xff"}', b"--store", store)
    one_line_error(result, "JSON data: not UTF-8 text: byte 0xff at character 6")
    assert not (tmp_path / "store.db").exists()
    result = _run(
        tmp_path, b"append", b"s.1", b"t.x", b"{}", b"--metadata", b'["\xe9"]', b"--store", store
    )
    one_line_error(result, "--metadata: not UTF-8 text: byte 0xe9 at character 2")


def test_a_schema_file_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "latin1.json").write_bytes(b'{"description": "caf\xe9"}')
    result = _run(tmp_path, b"validate", b"t.x", b"{}", b"--schema", b"t.x=latin1.json")
    one_line_error(
        result, "--schema t.x=latin1.json: latin1.json is not UTF-8 text: byte 0xe9 at offset 20"
    )
