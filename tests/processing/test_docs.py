"""Every Python example in the processing, validation and metrics docs runs as written."""

from __future__ import annotations

import pathlib
import re
import sys
import types

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def examples() -> list[tuple[str, str]]:
    found = []
    for name in ("processing.md", "validation.md", "metrics.md"):
        text = (DOCS / name).read_text()
        for index, code in enumerate(BLOCK.findall(text)):
            found.append((f"{name}#{index}", code))
    return found


@pytest.mark.parametrize(("where", "code"), examples(), ids=[w for w, _ in examples()])
def test_doc_example_runs(
    where: str, code: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    module = types.ModuleType("docs_example")  # a real module, as dataclasses expect
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, where, "exec"), module.__dict__)
    assert capsys.readouterr().out  # every example prints what it shows
