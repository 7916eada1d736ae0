"""A str subclass (a StrEnum member) as a key of event data: the refusal says why.

Such a key is refused (JSON encoders take plain str keys only), and the message said
only "object keys must be strings, got F key <F.NAME: 'name'>", which reads as a
contradiction, since an enum member of a StrEnum is a str. It now says the key is a
subclass of str and what to pass instead.
"""

from __future__ import annotations

from enum import StrEnum

import pytest

from pepperpy.event import Event, SerializationError


class Field(StrEnum):
    NAME = "name"


@pytest.mark.parametrize(
    ("data", "where"),
    [({Field.NAME: "ann"}, ""), ({"user": {Field.NAME: "ann"}}, "at data['user']: ")],
)
def test_a_str_subclass_key_is_refused_saying_it_is_one(data: object, where: str) -> None:
    with pytest.raises(SerializationError) as caught:
        Event("user.created", data)
    message = str(caught.value)
    assert message.startswith(f"{where}object keys must be strings, got Field key")
    assert "a subclass of str" in message
    assert ".value" in message


def test_in_metadata_too_when_written() -> None:
    event = Event("user.created", None, {Field.NAME: "ann"})
    with pytest.raises(SerializationError, match=r"^metadata: .*a subclass of str"):
        event.to_json()


def test_a_key_of_another_type_reads_as_before() -> None:
    with pytest.raises(SerializationError) as caught:
        Event("user.created", {1: "ann"})
    assert str(caught.value) == "object keys must be strings, got int key 1"
