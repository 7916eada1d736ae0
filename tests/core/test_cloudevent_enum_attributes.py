"""Event.from_cloudevent keeps the plain str of a str subclass given as an attribute.

A CloudEvent built as a mapping by code may hold an event type kept in an enum
(``{"type": Types.CREATED, ...}``). ``Event()`` and ``emit`` keep the plain str such a
member holds, so that ``event.type`` is always a ``str``; ``from_cloudevent`` kept the
member itself, and a ``(str, Enum)`` one then printed as ``Types.CREATED`` on CPython
3.12+ (``str(event.type)``, ``to_dict()``, a log line, ``repr``).
"""

from __future__ import annotations

from enum import Enum, StrEnum

import pytest

from pepperpy.event import Event


class Types(str, Enum):  # noqa: UP042 - the pre-StrEnum idiom, still common
    CREATED = "user.created"


class Strict(StrEnum):
    CREATED = "user.created"


class Text(str):
    pass


@pytest.mark.parametrize("kind", [Types.CREATED, Strict.CREATED, Text("user.created")])
def test_the_type_read_is_the_plain_str_it_holds(kind: str) -> None:
    event = Event.from_cloudevent(
        {"specversion": "1.0", "id": "e-1", "source": "shop", "type": kind}
    )
    assert type(event.type) is str
    assert str(event.type) == "user.created"
    assert event.to_dict()["type"] == "user.created"
    assert type(event.to_dict()["type"]) is str
    assert event == Event.from_json(event.to_json())


def test_id_source_and_subject_read_are_plain_strs() -> None:
    event = Event.from_cloudevent(
        {
            "specversion": "1.0",
            "id": Text("e-1"),
            "source": Text("shop"),
            "subject": Text("user/7"),
            "type": "user.created",
        }
    )
    assert [type(value) for value in (event.id, event.source, event.subject)] == [str] * 3
    assert (event.id, event.source, event.subject) == ("e-1", "shop", "user/7")
