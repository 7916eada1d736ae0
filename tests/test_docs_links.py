"""Every relative link in README.md and docs/*.md points to a file that exists and, when it
names an anchor (``page.md#anchor`` or ``#anchor``), to a heading of that page.

docs/reference.md is also checked by tests/test_reference_doc.py; this covers every page.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_reference_doc import anchors

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: a Markdown link's target: ``[text](target)``
LINK = re.compile(r"\]\(([^)\s]+)\)")
EXTERNAL = ("http://", "https://", "mailto:")


def broken_links(page: Path, text: str) -> list[str]:
    broken = []
    for target in LINK.findall(text):
        if target.startswith(EXTERNAL):
            continue
        name, _, anchor = target.partition("#")
        dest = page.parent / name if name else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md":
            headings = anchors(text if dest == page else dest.read_text())
            if anchor not in headings:
                broken.append(target)
    return broken


def test_every_relative_link_and_anchor_exists() -> None:
    found = 0
    broken = []
    for page in PAGES:
        text = page.read_text()
        found += len(LINK.findall(text))
        broken += [f"{page.relative_to(ROOT)}: {link}" for link in broken_links(page, text)]
    assert broken == []
    assert found > 300, "the scan finds the links"


def test_a_missing_page_or_heading_is_reported() -> None:
    page = ROOT / "docs" / "events.md"
    text = "# Title\n## Some part\nSee [a](#some-part), [b](#gone), [c](bus.md), [d](nope.md),"
    text += " [e](bus.md#no-such-heading), [f](https://example.com/x#y).\n"
    assert broken_links(page, text) == ["#gone", "nope.md", "bus.md#no-such-heading"]
