"""What a pydantic/FastAPI user reaches for (audit 7): a model instance to validate,
problems as JSON for a 422 response, and an upcaster's bad output told as such."""

from __future__ import annotations

import dataclasses
import datetime
import json

import pydantic
import pytest

from pepperpy.event import EventValidator, ValidationError, ValidationProblem


class UserCreated(pydantic.BaseModel):
    user_id: str
    name: str
    at: datetime.datetime


@dataclasses.dataclass
class Address:
    street: str
    zip: str


@dataclasses.dataclass
class Moved:
    user_id: str
    to: Address


async def test_an_instance_of_a_registered_model_is_validated_as_event_takes_it() -> None:
    validator = EventValidator()
    validator.register("user.created", UserCreated)
    validator.register("user.moved", Moved)
    when = datetime.datetime(2026, 12, 6, tzinfo=datetime.UTC)
    # it was refused: "expected object UserCreated, got UserCreated UserCreated(...)"
    event = await validator.validate("user.created", UserCreated(user_id="1", name="A", at=when))
    assert (event.data["user_id"], event.data["name"]) == ("1", "A")
    data, version = validator.check("user.moved", Moved("1", Address("Main St", "12345")))
    assert (data["to"]["zip"], version) == ("12345", 1)
    with pytest.raises(ValidationError, match=r"to\.zip"):
        validator.check("user.moved", Moved("1", Address("Main St", 12345)))  # type: ignore[arg-type]


async def test_problems_as_json_for_an_api_without_the_values_refused() -> None:
    validator = EventValidator()
    validator.register(
        "user.signed_up",
        {
            "type": "object",
            "properties": {
                "password": {"type": "string", "minLength": 12},
                "addresses": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"zip": {"type": "string"}}},
                },
                "odd key": {"type": "integer"},
            },
        },
    )
    with pytest.raises(ValidationError) as caught:
        await validator.validate(
            "user.signed_up",
            {"password": "hunter2", "addresses": [{"zip": 1}], "odd key": "x"},
        )
    body = caught.value.to_dicts()
    json.dumps(body)  # JSON-able as it is
    assert sorted(tuple(problem["loc"]) for problem in body) == [
        ("addresses", 0, "zip"),
        ("odd key",),
        ("password",),
    ]
    assert "hunter2" not in json.dumps(body)  # the value refused is not shown...
    shown = caught.value.to_dicts(actual=True)
    assert "hunter2" in json.dumps(shown)  # ...unless asked for
    assert set(body[0]) == {"loc", "path", "message", "expected"}


@pytest.mark.parametrize(
    ("path", "loc"),
    [
        ("", ()),
        ("name", ("name",)),
        ("addresses[0].zip", ("addresses", 0, "zip")),
        ("a['b.c'][2]", ("a", "b.c", 2)),
        ("a['x\\'y'].é", ("a", "x'y", "é")),
    ],
)
def test_a_problems_loc_reads_its_path_back(path: str, loc: tuple[str | int, ...]) -> None:
    assert ValidationProblem(path, "x", "y", "z").loc == loc


async def test_what_an_upcaster_returns_and_the_next_version_refuses_names_the_upcaster() -> None:
    validator = EventValidator()
    validator.register(
        "a.b", {"type": "object", "properties": {"frist": {"type": "string"}}}, version=1
    )
    validator.register(
        "a.b",
        {
            "type": "object",
            "properties": {"first": {"type": "string"}},
            "required": ["first"],
            "additionalProperties": False,
        },
        version=2,
    )
    validator.upcaster("a.b", 1, lambda data: dict(data))  # forgot to rename the key
    with pytest.raises(ValidationError) as caught:
        await validator.validate("a.b", {"frist": "x"}, version=1)
    assert all(
        "(in what the version 1 upcaster returned)" in p.message for p in caught.value.errors
    )
