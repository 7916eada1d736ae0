"""JSON Schema ``format: date-time`` is RFC 3339, as ``format: time`` is.

msgspec's datetime reading, which the format once relied on, also takes a space for ``T``
and offsets without a colon, and rounds fraction digits beyond the microsecond (moving
``23:59:59.9999999Z`` into the next day, and refusing it at the end of year 9999).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from pepperpy.event import EventValidator, ValidationError

from .test_json_schema_semantics import _both_paths

DATE_TIME = {"type": "string", "format": "date-time"}
UTC = dt.UTC


def _validator(extra: Any, prop: Any = DATE_TIME) -> EventValidator:
    validator = EventValidator(extra_fields=extra)
    validator.register("t.x", {"type": "object", "properties": {"at": prop}})
    return validator


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-01 10:00:00Z",  # a space for T
        "2024-01-01T10:00:00+0100",  # no colon in the offset
        "2024-01-01T10:00:00+01",
        "2024-01-01T10:00:00+24:00",
        "2024-01-01T10:00:00",  # no offset
        "2024-01-01T10:00Z",  # no seconds
        "2024-01-01T10:00:00,5Z",
        "2024-01-01T10:00:00.Z",
        "2024-01-01T10:00:00Z\n",
        "２０２４-01-01T10:00:00Z",  # fullwidth digits
        "2024-02-30T10:00:00Z",
    ],
)
@pytest.mark.parametrize("extra", ["forbid", "allow"])
def test_text_that_is_not_rfc_3339_is_refused(text: str, extra: Any) -> None:
    validator = _validator(extra)
    with pytest.raises(ValidationError) as info:
        validator.check("t.x", {"at": text})
    (problem,) = info.value.errors
    assert problem.path == "at"
    assert "RFC 3339" in problem.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T10:00:00Z", dt.datetime(2024, 1, 1, 10, tzinfo=UTC)),
        ("2024-01-01t10:00:00z", dt.datetime(2024, 1, 1, 10, tzinfo=UTC)),
        (
            "2024-01-01T10:00:00.5+01:00",
            dt.datetime(2024, 1, 1, 10, 0, 0, 500000, dt.timezone(dt.timedelta(hours=1))),
        ),
        ("2024-01-01T10:00:00-00:00", dt.datetime(2024, 1, 1, 10, tzinfo=UTC)),
        # beyond the microsecond: cut off, never rounded into the next second or day
        ("2024-01-01T23:59:59.9999999Z", dt.datetime(2024, 1, 1, 23, 59, 59, 999999, UTC)),
        ("9999-12-31T23:59:59.9999999Z", dt.datetime(9999, 12, 31, 23, 59, 59, 999999, UTC)),
        ("2024-01-01T00:00:00.123456789Z", dt.datetime(2024, 1, 1, 0, 0, 0, 123456, UTC)),
    ],
)
@pytest.mark.parametrize("extra", ["forbid", "allow"])
async def test_rfc_3339_text_is_converted(text: str, expected: dt.datetime, extra: Any) -> None:
    validator = _validator(extra)
    event = await validator.validate("t.x", {"at": text})
    assert event.data["at"] == expected
    assert event.data["at"].utcoffset() == expected.utcoffset()
    assert (await validator.validate("t.x", dict(event.data))).data == event.data


@pytest.mark.parametrize("extra", ["forbid", "allow"])
def test_a_refused_spelling_is_not_kept_beside_a_pattern(extra: Any) -> None:
    # once accepted as the given string, because the pattern refused the converted text
    prop = {"type": "string", "format": "date-time", "pattern": "Z$"}
    with pytest.raises(ValidationError):
        _validator(extra, prop).check("t.x", {"at": "2024-01-01 10:00:00Z"})


def test_date_time_and_time_agree_on_offsets() -> None:
    time = {"type": "string", "format": "time"}
    for offset, valid in (("Z", True), ("+01:00", True), ("+0100", False), ("+01", False)):
        assert (_both_paths(DATE_TIME, f"2024-01-01T10:00:00{offset}") is not ValidationError) is (
            valid
        )
        assert (_both_paths(time, f"10:00:00{offset}") is not ValidationError) is valid


def test_a_python_datetime_field_keeps_msgspecs_reading() -> None:
    class Schema:
        at: dt.datetime

    validator = EventValidator()
    validator.register("t.x", Schema)
    data, _ = validator.check("t.x", {"at": "2024-01-01 10:00:00+0100"})
    assert data["at"] == dt.datetime(2024, 1, 1, 10, tzinfo=dt.timezone(dt.timedelta(hours=1)))
