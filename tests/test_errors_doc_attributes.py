"""docs/errors.md's table "What they carry" names every public attribute an error sets, so
a reader looking up an error learns everything it tells (``ClosedError.stored`` was missing)."""

from __future__ import annotations

import inspect
import re

import pepperpy.event as event_api
import pepperpy.event.notifications as notifications_api
from tests.test_errors_doc import DOC, real_tree

#: a row of the table: ``| `Name` ... | attributes |``
ROW = re.compile(r"^\| `(\w+)`[^|]*\| (.*) \|$", re.MULTILINE)
#: standard attributes of the builtin bases (ImportError's ``msg``, ``path``)
STANDARD = {"msg", "path", "args"}


def documented() -> dict[str, str]:
    return {name: text for name, text in ROW.findall(DOC.read_text())}


def own_attributes(cls: type) -> set[str]:
    """The public attributes a class sets itself: annotated, assigned in ``__init__``."""
    found = {name for name in cls.__dict__.get("__annotations__", {})}
    init = cls.__dict__.get("__init__")
    if init is not None:
        found |= set(re.findall(r"self\.(\w+) = ", inspect.getsource(init)))
    found |= {
        name
        for name, value in cls.__dict__.items()
        if inspect.isfunction(value) or isinstance(value, property)
    }
    return {name for name in found if not name.startswith("_")} - STANDARD


def undocumented(rows: dict[str, str]) -> list[str]:
    classes = {
        name: getattr(event_api, name, None) or getattr(notifications_api, name)
        for name in real_tree()
    }
    missing = []
    for name, cls in sorted(classes.items()):
        # a row covers the class's own attributes; attributes a base sets are in its row
        for attribute in sorted(own_attributes(cls)):
            rows_of_line = [rows[base.__name__] for base in cls.__mro__ if base.__name__ in rows]
            if not any(f"`{attribute}" in row for row in rows_of_line):
                missing.append(f"{name}.{attribute}")
    return missing


def test_every_public_attribute_of_an_error_is_in_the_table() -> None:
    rows = documented()
    assert len(rows) > 5, "the scan finds the table"
    assert undocumented(rows) == []


def test_a_missing_attribute_is_reported() -> None:
    rows = documented()
    before = undocumented(rows)
    rows["AccessDenied"] = rows["AccessDenied"].replace("`principal`", "principal")
    assert undocumented(rows) == sorted([*before, "AccessDenied.principal"])
