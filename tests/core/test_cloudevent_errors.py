"""Malformed CloudEvents refused with errors that name what is wrong."""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import Event, SerializationError


def _ce(**extra: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "e1", "source": "s", "type": "t.x", **extra}


@pytest.mark.parametrize("packed", ["{bad", "[1, 2]", "3", 7, ["a"]])
def test_malformed_packed_metadata_names_the_attribute(packed: Any) -> None:
    with pytest.raises(SerializationError, match="CloudEvent attribute 'pepperpymetadata'"):
        Event.from_cloudevent(_ce(pepperpymetadata=packed))


def test_packed_metadata_still_reads() -> None:
    event = Event.from_cloudevent(_ce(pepperpymetadata='{"k": [1]}'))
    assert event.metadata == {"k": [1]}


@pytest.mark.parametrize("data", [{"a": 1}, "text", None])
def test_data_and_data_base64_together_are_refused(data: Any) -> None:
    with pytest.raises(SerializationError, match="both 'data' and 'data_base64'"):
        Event.from_cloudevent(_ce(data=data, data_base64="AP8="))


def test_data_and_data_base64_together_refused_from_json() -> None:
    raw = b'{"specversion":"1.0","id":"e1","source":"s","type":"t.x","data":1,"data_base64":"AA=="}'
    with pytest.raises(SerializationError, match="mutually exclusive"):
        Event.from_json(raw)


def test_data_base64_alone_reads_as_bytes() -> None:
    assert Event.from_cloudevent(_ce(data_base64="AP8=")).data == b"\x00\xff"
