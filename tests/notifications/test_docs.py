"""Every ``python`` block in docs/notifications.md runs as written (each is a script)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _blocks() -> list[tuple[int, str]]:
    text = DOC.read_text()
    return [
        (text.count("\n", 0, match.start()) + 2, match.group(1)) for match in BLOCK.finditer(text)
    ]


def test_the_doc_has_runnable_examples() -> None:
    assert len(_blocks()) >= 5


@pytest.mark.parametrize(("line", "code"), _blocks(), ids=[f"line{n}" for n, _ in _blocks()])
def test_doc_example_runs(line: int, code: str) -> None:
    compiled = compile("\n" * (line - 1) + code, str(DOC), "exec")
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compiled, {"__name__": "__main__"})


def test_names_not_in_pepperpy_event_are_given_their_import_path() -> None:
    """The page's names come from ``pepperpy.event``; one that only
    ``pepperpy.event.notifications`` exports is given with that import path."""
    import pepperpy.event
    import pepperpy.event.notifications as notifications

    paragraphs = DOC.read_text().split("\n\n")
    for name in notifications.__all__:
        if hasattr(pepperpy.event, name):
            continue
        mentioned = any(re.search(rf"`{name}\b", p) for p in paragraphs)
        if mentioned:
            assert any(name in p and "pepperpy.event.notifications" in p for p in paragraphs), (
                f"docs/notifications.md never says where {name} is imported from"
            )
