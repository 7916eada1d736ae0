"""Every ``python`` block in docs/replay.md runs as written (each block is a script).

A block marked ``<!-- fragment -->`` on the line before its fence (a service that runs
until a signal) is run elsewhere: tests/replay/test_projection_service.py.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "replay.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
FRAGMENT = "<!-- fragment -->\n"


def _blocks() -> list[tuple[int, str]]:
    text = DOC.read_text()
    return [
        (text.count("\n", 0, m.start()) + 2, m.group(1))
        for m in BLOCK.finditer(text)
        if not text[: m.start()].endswith(FRAGMENT)
    ]


def test_the_doc_has_examples() -> None:
    assert len(_blocks()) >= 5


@pytest.mark.parametrize(("line", "code"), _blocks(), ids=[f"replay.md:{n}" for n, _ in _blocks()])
def test_doc_example_runs(line: int, code: str) -> None:
    compiled = compile("\n" * (line - 1) + code, str(DOC), "exec")
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compiled, {"__name__": "__main__"})
