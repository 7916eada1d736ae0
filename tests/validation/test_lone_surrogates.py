"""Strings holding a lone surrogate are refused by the validator, naming their path.

Before, msgspec's fast path let ``"\\ud800"`` through in a ``str`` field (and in keys,
list items, ``Any`` values): ``validate()`` returned an Event that then failed when
stored or published with ``SerializationError``, though bad data must raise only
``ValidationError`` (SPEC section 11). Valid non-ASCII text is unaffected.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypedDict

import msgspec
import pytest

from pepperpy.event import EventStore, EventValidator, ValidationError

BAD = "x\ud800y"  # what surrogateescape leaves of an undecodable byte, for one
SURROGATE = "contains a lone surrogate ('\\ud800' at index 1), which is not valid UTF-8"


@dataclasses.dataclass
class AsDataclass:
    name: str


class AsTypedDict(TypedDict):
    name: str


class AsStruct(msgspec.Struct):
    name: str


class AsClass:
    name: str


def _schemas() -> list[Any]:
    schemas: list[Any] = [
        AsClass,
        AsDataclass,
        AsTypedDict,
        AsStruct,
        {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        {"type": "object", "properties": {"name": {"type": "string", "minLength": 1}}},
    ]
    try:
        import pydantic
    except ImportError:
        return schemas

    class AsModel(pydantic.BaseModel):
        name: str

    return [*schemas, AsModel]


SCHEMAS = _schemas()


def _problems(validator: EventValidator, event_type: str, data: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        validator.check(event_type, data)
    return [(p.path, p.message) for p in caught.value.errors]


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: getattr(s, "__name__", "json"))
async def test_a_str_field_with_a_lone_surrogate_is_refused_by_every_schema_kind(
    schema: Any,
) -> None:
    validator = EventValidator()
    validator.register("user.created", schema)
    with pytest.raises(ValidationError) as caught:
        await validator.validate("user.created", {"name": BAD})
    [problem] = caught.value.errors
    assert problem.path == "name"
    assert SURROGATE in problem.message
    assert _problems(validator, "user.created", {"name": BAD}) == [(problem.path, problem.message)]


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: getattr(s, "__name__", "json"))
async def test_valid_non_ascii_text_still_validates_and_stores(schema: Any) -> None:
    validator = EventValidator()
    validator.register("user.created", schema)
    text = "Zoë 😀 日本 \u00e9"
    event = await validator.validate("user.created", {"name": text})
    assert event.data["name"] == text
    store = EventStore("memory://")
    await store.append("users-1", event)
    [stored] = await store.get_stream("users-1")
    assert stored.data["name"] == text


async def test_every_place_a_string_can_be_is_checked_and_named() -> None:
    validator = EventValidator()

    @validator.schema("order.placed")
    class Order:
        sku: str
        tags: list[str]
        prices: dict[str, int]
        extra: Any
        note: str | None = None

    data = {
        "sku": "ok",
        "tags": ["fine", BAD],
        "prices": {BAD: 1, "fine": 2},
        "extra": {"deep": [1, {"k": BAD}]},
        "note": BAD,
    }
    problems = _problems(validator, "order.placed", data)
    assert sorted(path for path, _ in problems) == sorted(
        ["tags[1]", "prices['x\\ud800y']", "extra.deep[1].k", "note"]
    )
    assert all("lone surrogate" in message for _, message in problems)
    key_message = dict(problems)["prices['x\\ud800y']"]
    assert key_message.startswith("the object key contains a lone surrogate")


async def test_keys_kept_by_json_schema_and_extra_fields_allow_are_checked() -> None:
    validator = EventValidator()
    validator.register(
        "scores.set", {"type": "object", "additionalProperties": {"type": "integer"}}
    )
    validator.register("misc.seen", {"type": "object"}, extra_fields="allow")
    assert _problems(validator, "scores.set", {BAD: 1}) == [
        ("['x\\ud800y']", f"the object key {SURROGATE}")
    ]
    problems = _problems(validator, "misc.seen", {BAD: 1, "v": BAD})
    assert sorted(problems) == sorted(
        [("['x\\ud800y']", f"the object key {SURROGATE}"), ("v", f"the str {SURROGATE}")]
    )


async def test_a_surrogate_and_other_problems_are_all_reported() -> None:
    validator = EventValidator()

    @validator.schema("user.created")
    class User:
        name: str
        age: int

    problems = _problems(validator, "user.created", {"name": BAD, "age": "old"})
    assert [path for path, _ in problems] == ["name", "age"]


async def test_unknown_types_let_through_are_checked_too() -> None:
    validator = EventValidator(unknown_types="pass")
    for data in ({"a": [BAD]}, {BAD: 1}, BAD):
        with pytest.raises(ValidationError, match="lone surrogate"):
            await validator.validate("anything.seen", data)
        with pytest.raises(ValidationError, match="lone surrogate"):
            validator.check("anything.seen", data)
    event = await validator.validate("anything.seen", {"a": ["é"], "when": {1, 2}.__len__()})
    assert event.data == {"a": ["é"], "when": 2}


@pytest.mark.parametrize("kind", ["datetime", "date", "time", "uuid", "uuid-rfc"])
async def test_a_lone_surrogate_where_a_date_or_uuid_is_expected_is_a_validation_error(
    kind: str,
) -> None:
    # msgspec's parser raised UnicodeEncodeError out of validate() and check()
    import datetime as dt
    import uuid

    if kind == "uuid-rfc":
        schema: Any = {"type": "object", "properties": {"name": {"format": "uuid"}}}
    else:
        annotation = {"datetime": dt.datetime, "date": dt.date, "time": dt.time}.get(
            kind, uuid.UUID
        )
        schema = dataclasses.make_dataclass("Timed", [("name", annotation)])
    validator = EventValidator()
    validator.register("t", schema)
    for data in ({"name": BAD}, {"name": "\ud800" * 36}):
        with pytest.raises(ValidationError) as caught:
            await validator.validate("t", data)
        assert [p.path for p in caught.value.errors] == ["name"]
        assert "lone surrogate" in caught.value.errors[0].message
        with pytest.raises(ValidationError):
            validator.check("t", data)
