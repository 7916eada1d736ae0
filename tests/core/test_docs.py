"""Every ``python`` block in the core docs runs as written (each block is a script)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
CORE_DOCS = ("events.md", "patterns.md", "manager.md")
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _blocks() -> list[tuple[str, int, str]]:
    found: list[tuple[str, int, str]] = []
    for name in CORE_DOCS:
        text = (DOCS / name).read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            found.append((name, line, match.group(1)))
    return found


def test_each_core_doc_has_runnable_examples() -> None:
    names = {name for name, _, _ in _blocks()}
    assert names == set(CORE_DOCS)


@pytest.mark.parametrize(
    ("name", "line", "code"), _blocks(), ids=[f"{n}:{line}" for n, line, _ in _blocks()]
)
def test_doc_example_runs(name: str, line: int, code: str) -> None:
    compiled = compile("\n" * (line - 1) + code, str(DOCS / name), "exec")
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compiled, {"__name__": "__main__"})
