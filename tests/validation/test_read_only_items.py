"""TypedDict items marked ``ReadOnly`` (PEP 705; ``typing.ReadOnly`` from Python 3.13,
``typing_extensions.ReadOnly`` before): the marker is about the TypedDict's users, not its
data. Registration refused them ("unsupported schema type ReadOnly[int]")."""

from __future__ import annotations

import pytest
import typing_extensions as te

from pepperpy.event import EventValidator, ValidationError


class Account(te.TypedDict):
    id: te.ReadOnly[int]
    nickname: te.NotRequired[te.ReadOnly[str]]
    email: te.ReadOnly[te.NotRequired[str]]


def test_read_only_items_are_read_as_their_type() -> None:
    validator = EventValidator()
    validator.register("account.opened", Account)
    assert validator.check("account.opened", {"id": 1})[0] == {"id": 1}
    data = {"id": 1, "nickname": "ada", "email": "a@example.com"}
    assert validator.check("account.opened", data)[0] == data
    with pytest.raises(ValidationError) as refused:
        validator.check("account.opened", {"id": "1", "nickname": 2})
    assert [problem.path for problem in refused.value.errors] == ["id", "nickname"]
