"""The examples in docs/store.md run as written, and print what their comments say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "store.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
PROMISE = re.compile(r"^\s*print\(.*\)\s+# (.+)$", flags=re.MULTILINE)


def test_the_doc_has_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("code", BLOCKS, ids=[f"example{n}" for n in range(len(BLOCKS))])
def test_doc_example_runs(
    code: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # sqlite:///events.db lands in a scratch directory
    exec(compile(code, str(DOC), "exec"), {"__name__": "__doc_example__"})
    printed = capsys.readouterr().out.splitlines()
    for expected in PROMISE.findall(code):
        assert expected.strip() in printed, f"{expected!r} not printed; got {printed}"
