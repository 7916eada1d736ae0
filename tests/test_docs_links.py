"""Every relative link in README.md and docs/*.md points to a file that exists and, when it
names an anchor (``page.md#anchor`` or ``#anchor``), to a heading of that page.

docs/reference.md is also checked by tests/test_reference_doc.py; this covers every page.
A section named in prose (``see store.md, "The head of the log"``, ``"Poison messages" in
transport-rabbitmq.md``) must be a heading or a bold or italic label of that page too.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_reference_doc import anchors, strip_fences

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: a Markdown link's target: ``[text](target)``
LINK = re.compile(r"\]\(([^)\s]+)\)")
EXTERNAL = ("http://", "https://", "mailto:")
#: a section named in prose, after its page (``store.md, "Name"``) or before it
#: (``"Name" in [store.md](store.md)``)
NAMED_AFTER = re.compile(r'(?:docs/)?([\w-]+\.md)`?\)?,? "([^"\n]+)"')
NAMED_BEFORE = re.compile(r'"([^"\n]+)" in (?:\[[^\]]*\]\()?`?(?:docs/)?([\w-]+\.md)')
#: a bold or italic label opening a paragraph or list item: ``**Ordering.**``
LABEL = re.compile(r"\*\*([^*]+)\*\*|(?<![*\w])\*([^*\s][^*]*)\*(?![*\w])")


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


def plain(text: str) -> str:
    return re.sub(r"[`*]", "", text).strip().rstrip(".,:").lower()


def labels(text: str) -> set[str]:
    """The headings and bold or italic labels of a page, without markup, lower case."""
    found = set()
    for line, fenced in strip_fences(text):
        if fenced:
            continue
        if line.startswith("#"):
            found.add(plain(line.lstrip("#")))
        found |= {plain(bold or italic) for bold, italic in LABEL.findall(line)}
    return found


def unknown_sections(text: str) -> list[str]:
    named = [*NAMED_AFTER.findall(text), *((p, n) for n, p in NAMED_BEFORE.findall(text))]
    unknown = []
    for name, section in named:
        page = ROOT / "docs" / name
        if not page.exists() or not any(
            label.startswith(plain(section)) for label in labels(page.read_text())
        ):
            unknown.append(f'{name}, "{section}"')
    return unknown


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


def test_every_section_named_in_prose_exists() -> None:
    found = 0
    unknown = []
    for page in PAGES:
        text = page.read_text()
        found += len(NAMED_AFTER.findall(text)) + len(NAMED_BEFORE.findall(text))
        unknown += [f"{page.relative_to(ROOT)}: {ref}" for ref in unknown_sections(text)]
    assert unknown == []
    assert found > 10, "the scan finds the sections named"


def test_a_section_named_on_the_wrong_page_is_reported() -> None:
    text = (
        'see store.md, "The head of the log"; "Poison messages" in [x](transport-rabbitmq.md);'
        ' see manager.md, "Options every transport shares"; "Ordering" in docs/nope.md\n'
    )
    assert unknown_sections(text) == [
        'manager.md, "Options every transport shares"',
        'nope.md, "Ordering"',
    ]
