"""docs/errors.md draws the exception tree (SPEC: "one exception tree, rooted at
EventError, documented as a tree"); this keeps the drawing true to the classes."""

from __future__ import annotations

import re
from pathlib import Path

import pepperpy.event as event_api
import pepperpy.event.notifications as notifications_api
from pepperpy.event import EventError

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
#: a line of the drawing: its depth (by the column of the name), name and extra bases
LINE = re.compile(r"^(?P<indent>(?:[│ ]   )*)(?:[├└]── )?(?P<name>\w+)(?: \((?P<bases>[\w, ]+)\))?")


def drawn_tree() -> dict[str, tuple[str | None, set[str]]]:
    """Each class in the drawing: its parent in the tree and its other (builtin) bases."""
    text = DOC.read_text()
    block = text.split("```text\n", 1)[1].split("```", 1)[0]
    parents: list[str] = []
    drawn: dict[str, tuple[str | None, set[str]]] = {}
    for line in block.splitlines():
        match = LINE.match(line)
        assert match, line
        depth = len(match["indent"]) // 4 + (0 if line.startswith("EventError") else 1)
        del parents[depth:]
        name = match["name"]
        bases = {b.strip() for b in (match["bases"] or "").split(",") if b.strip()}
        drawn[name] = (parents[-1] if parents else None, bases)
        parents.append(name)
    return drawn


def real_tree() -> dict[str, tuple[str | None, set[str]]]:
    """Every EventError class the public modules export, with the same shape."""
    exported = [
        getattr(module, name)
        for module in (event_api, notifications_api)
        for name in module.__all__
    ]
    classes = {v for v in exported if isinstance(v, type) and issubclass(v, EventError)}
    tree: dict[str, tuple[str | None, set[str]]] = {}
    for cls in classes:
        ours = [b for b in cls.__bases__ if issubclass(b, EventError)]
        others = {b.__name__ for b in cls.__bases__ if not issubclass(b, EventError)}
        if cls is EventError:
            tree[cls.__name__] = (None, set())
        else:
            assert len(ours) == 1, cls
            tree[cls.__name__] = (ours[0].__name__, others)
    return tree


def test_the_documented_tree_is_the_class_tree() -> None:
    assert drawn_tree() == real_tree()


def test_every_error_is_exported_where_the_doc_says() -> None:
    for name in real_tree():
        assert name in event_api.__all__ or name in notifications_api.__all__, name
