"""Validated data validates again: what ``validate`` returns, ``validate`` accepts unchanged.

Upcasting validates the data of each version again, ``ValidateMiddleware`` validates the
Events the validator made, and events read back from a store carry the JSON text of
what was converted. JSON Schema keywords judge that JSON text (the string given, or the
text the event's JSON holds for a datetime or UUID), and ``uniqueItems`` compares the
JSON values given.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from pepperpy.event import (
    ConfigurationError,
    Event,
    EventProcessor,
    EventValidator,
    ValidationError,
)
from pepperpy.event._json import dumps, loads
from pepperpy.event.middleware import ValidateMiddleware

from .test_consistency import DATA, PY_TYPES, SCHEMAS

AT = "2024-05-01T10:00:00Z"
ID = "2eb8aa08-aa98-11ea-b4aa-73b441d16380"


def _order(**more: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "at": {"type": "string", "format": "date-time", "maxLength": 40},
            "id": {"type": "string", "format": "uuid", "pattern": "^[0-9a-f-]+$"},
            **more,
        },
        "required": ["at", "id"],
    }


async def test_upcasting_validates_converted_data_again() -> None:
    validator = EventValidator()
    validator.register("order.placed", _order(), version=1)
    validator.register("order.placed", _order(note={"type": "string"}), version=2)

    @validator.upcaster("order.placed", from_version=1)
    def add_note(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "note": ""}

    event = await validator.validate("order.placed", {"at": AT, "id": ID}, version=1)
    assert event.version == 2
    assert event.data == {
        "at": dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC),
        "id": uuid.UUID(ID),
        "note": "",
    }


async def test_validate_middleware_accepts_the_validators_own_events() -> None:
    validator = EventValidator()
    validator.register("order.placed", _order())
    event = await validator.validate("order.placed", {"at": AT, "id": ID})
    seen: list[Event] = []
    processor = EventProcessor().use(ValidateMiddleware(validator))
    processor.handle("order.placed", seen.append)
    await processor.process(event)
    assert [e.data for e in seen] == [event.data]


async def test_events_read_back_from_json_validate_again() -> None:
    validator = EventValidator()
    validator.register("order.placed", _order())
    event = await validator.validate("order.placed", {"at": AT, "id": ID})
    stored = Event.from_json(event.to_json())  # the converted values as JSON text
    assert (await validator.validate("order.placed", stored.data)).data == event.data


@pytest.mark.parametrize(
    ("schema", "given", "kept"),
    [
        # the converted value's JSON text meets the keywords: converted
        ({"format": "date-time", "maxLength": 25}, AT, dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)),
        ({"format": "uuid", "pattern": "^[0-9a-f-]+$"}, ID, uuid.UUID(ID)),
        ({"format": "uuid", "enum": [ID]}, ID, uuid.UUID(ID)),
        # the event's JSON writes +00:00 and lowercase hex: a string only the spelling
        # given meets stays that string
        ({"format": "date-time", "pattern": "Z$"}, AT, AT),
        ({"format": "date-time", "maxLength": 20}, AT, AT),
        ({"format": "date-time", "enum": [AT]}, AT, AT),
        ({"format": "uuid", "pattern": "^[0-9A-F-]+$"}, ID.upper(), ID.upper()),
    ],
)
async def test_a_format_converts_unless_its_keywords_refuse_the_converted_text(
    schema: dict[str, Any], given: str, kept: Any
) -> None:
    validator = EventValidator()
    validator.register("x", {"type": "string", **schema})
    first = (await validator.validate("x", given)).data
    assert first == kept and type(first) is type(kept)
    assert (await validator.validate("x", first)).data == first


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC), "2024-05-01T10:00:00+00:00"),
        (uuid.UUID(ID.upper()), ID),
    ],
)
async def test_keywords_judge_a_converted_value_by_its_json_text(value: Any, text: str) -> None:
    short = EventValidator()
    short.register("x", {"type": "string", "format": "date-time", "maxLength": 20})
    short.register("u", {"type": "string", "format": "uuid", "pattern": "^[0-9A-F-]+$"})
    event_type = "u" if isinstance(value, uuid.UUID) else "x"
    with pytest.raises(ValidationError) as info:
        await short.validate(event_type, value)
    assert repr(text) in info.value.errors[0].message  # says which text it judged
    long = EventValidator()
    long.register("x", {"type": "string", "format": "date-time", "maxLength": 25})
    long.register("u", {"type": "string", "format": "uuid", "pattern": "^[0-9a-f-]+$"})
    assert (await long.validate(event_type, value)).data == value


async def test_a_converted_value_is_a_string_to_the_keywords_beside_its_format() -> None:
    validator = EventValidator()
    validator.register(
        "x", {"allOf": [{"type": "string", "format": "date-time"}, {"type": "string"}]}
    )
    first = (await validator.validate("x", AT)).data
    assert isinstance(first, dt.datetime)
    assert (await validator.validate("x", first)).data == first


async def test_a_conversion_that_would_match_a_second_one_of_branch_is_not_made() -> None:
    validator = EventValidator()
    validator.register(
        "x",
        {
            "oneOf": [
                {"type": "string", "format": "date-time"},
                {"type": "string", "pattern": "[+]00:00$"},
            ]
        },
    )
    first = (await validator.validate("x", AT)).data
    assert first == AT  # as a datetime, its JSON text would match both branches
    assert (await validator.validate("x", first)).data == first
    other = (await validator.validate("x", "2024-05-01T10:00:00+01:00")).data
    assert isinstance(other, dt.datetime)
    assert (await validator.validate("x", other)).data == other


@pytest.mark.parametrize(
    ("items", "given"),
    [
        ("date-time", ["2024-01-01T00:00:00Z", "2024-01-01T01:00:00+01:00"]),  # one instant
        ("uuid", [ID, ID.upper()]),  # one UUID
        ("date-time", ["2024-01-01T00:00:00Z", "2024-01-01T00:00:00+00:00"]),
    ],
)
async def test_unique_items_compares_the_json_values_given(items: str, given: list[str]) -> None:
    validator = EventValidator()
    schema = {"type": "array", "uniqueItems": True, "items": {"type": "string", "format": items}}
    validator.register("x", schema)
    first = (await validator.validate("x", given)).data
    assert len(first) == 2
    assert (await validator.validate("x", first)).data == first
    with pytest.raises(ValidationError, match="unique"):
        await validator.validate("x", [given[0], given[0]])


async def test_strings_that_convert_into_one_value_stay_strings_in_a_unique_array() -> None:
    validator = EventValidator()
    schema = {"type": "array", "uniqueItems": True, "items": {"type": "string", "format": "uuid"}}
    validator.register("x", schema)
    first = (await validator.validate("x", [ID, ID.upper(), str(uuid.UUID(int=1))])).data
    assert first == [ID, ID.upper(), uuid.UUID(int=1)]  # converted, they would be duplicates
    assert (await validator.validate("x", first)).data == first


async def test_a_python_set_still_refuses_items_equal_once_converted() -> None:
    validator = EventValidator()
    validator.register("x", {"type": "object", "properties": {}})

    class Tagged:
        ids: set[uuid.UUID]

    validator.register("tagged", Tagged)
    with pytest.raises(ValidationError, match="unique"):
        await validator.validate("tagged", {"ids": [ID, ID.upper()]})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SCHEMAS, DATA)
def test_validated_data_validates_again_unchanged(schema: Any, data: Any) -> None:
    validator = EventValidator(extra_fields="ignore")
    validator.register("x", schema)
    try:
        first, _ = validator.check("x", data)
    except ValidationError:
        return
    again, _ = validator.check("x", first)
    assert again == first
    from_json, _ = validator.check("x", loads(dumps(first)))  # as a store gives it back
    assert from_json == first


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PY_TYPES, DATA)
def test_validated_data_of_python_schemas_validates_again_unchanged(
    annotation: Any, data: Any
) -> None:
    validator = EventValidator(extra_fields="ignore")
    try:
        validator.register("x", dataclasses.make_dataclass("Top", [("v", annotation)]))
    except ConfigurationError:
        return
    try:
        first, _ = validator.check("x", {"v": data})
    except ValidationError:
        return
    assert validator.check("x", first)[0] == first


def test_ignored_keys_do_not_change_which_oneof_branches_match() -> None:
    """Found by the property test above: the key "a" the branches ignore decided that
    only the first matched, and the result ({}) matched both."""
    validator = EventValidator(extra_fields="ignore")
    schema = {
        "oneOf": [
            {"type": "object", "properties": {}},
            {"type": "object", "properties": {}, "maxProperties": 0},
        ]
    }
    validator.register("x", schema)
    for data in ({"a": None}, {}):  # without "a" it matches both branches
        with pytest.raises(ValidationError, match="matches 2 oneOf branches"):
            validator.check("x", data)
