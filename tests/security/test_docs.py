"""The Python blocks of docs/security.md run as written."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

DOC = pathlib.Path(__file__).parents[2] / "docs" / "security.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_security_doc_block_runs(number: int, tmp_path: pathlib.Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(BLOCKS[number])
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
