"""EventValidator: every schema kind, every problem reported, versions and upcasters."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import sys
import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal, NotRequired, TypedDict

import annotated_types
import msgspec
import pydantic
import pytest

from pepperpy.event import (
    ConfigurationError,
    Event,
    EventError,
    EventValidator,
    ValidationError,
    ValidationProblem,
)


async def test_seed_snippet_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    # --- the seed's "Event Validation" snippet, verbatim ---
    validator = EventValidator()

    @validator.schema("user.created")
    class UserCreatedSchema:
        user_id: str
        name: str
        email: str

    event_data = {"user_id": "123", "name": "John", "email": "john@example.com"}
    try:
        event = await validator.validate("user.created", event_data)
    except ValidationError as e:
        print(f"Invalid event: {e}")
    # --- end of snippet ---
    assert isinstance(event, Event)
    assert event.type == "user.created" and event.version == 1
    assert event.data == event_data
    assert capsys.readouterr().out == ""

    event_data = {"user_id": 123, "name": "John"}
    try:
        event = await validator.validate("user.created", event_data)
    except ValidationError as e:
        print(f"Invalid event: {e}")
    out = capsys.readouterr().out
    assert out.startswith("Invalid event: ") and "user_id" in out and "email" in out


def problems(exc: pytest.ExceptionInfo[ValidationError]) -> dict[str, ValidationProblem]:
    return {p.path: p for p in exc.value.errors}


# -- schema kinds ---------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Address:
    city: str
    zip: Annotated[str, msgspec.Meta(pattern=r"^\d{5}$")]


@dataclasses.dataclass
class OrderPlaced:
    order_id: uuid.UUID
    quantity: Annotated[int, msgspec.Meta(ge=1, le=100)]
    price: Decimal
    placed_at: dt.datetime
    address: Address
    color: Color
    tags: list[str] = dataclasses.field(default_factory=list)
    attributes: dict[str, int] = dataclasses.field(default_factory=dict)
    channel: Literal["web", "shop"] = "web"
    coupon: str | None = None
    priority: Priority = Priority.LOW
    ship_by: dt.date | None = None


GOOD_ORDER = {
    "order_id": "6f1c0a52-3d3e-4b8c-9d1b-4a3f1c2b5e6d",
    "quantity": 3,
    "price": "9.99",
    "placed_at": "2024-05-01T10:00:00Z",
    "address": {"city": "Lisbon", "zip": "12345"},
    "color": "red",
}


async def test_dataclass_schema_converts_and_fills_defaults() -> None:
    validator = EventValidator()
    validator.schema("order.placed")(OrderPlaced)
    event = await validator.validate("order.placed", GOOD_ORDER)
    data = event.data
    assert data["order_id"] == uuid.UUID(GOOD_ORDER["order_id"])  # type: ignore[arg-type]
    assert data["price"] == Decimal("9.99")
    assert data["placed_at"] == dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)
    assert data["color"] == "red"
    assert data["tags"] == [] and data["attributes"] == {}
    assert data["channel"] == "web" and data["coupon"] is None and data["priority"] == 1


async def test_every_problem_is_reported_with_path_expected_and_actual() -> None:
    validator = EventValidator()
    validator.register("order.placed", OrderPlaced)
    bad = {
        "order_id": "not-a-uuid",
        "quantity": 0,
        "price": "ten",
        "placed_at": "yesterday",
        "address": {"zip": "12"},
        "color": "green",
        "tags": ["ok", 3],
        "attributes": {"a": "1"},
        "channel": "mail",
        "coupon": 5,
        "priority": 3,
        "ship_by": "2024-13-01",
        "surprise": True,
    }
    with pytest.raises(ValidationError) as info:
        await validator.validate("order.placed", bad)
    found = problems(info)
    assert set(found) == {
        "order_id",
        "quantity",
        "price",
        "placed_at",
        "address.city",
        "address.zip",
        "color",
        "tags[1]",
        "attributes.a",
        "channel",
        "coupon",
        "priority",
        "ship_by",
        "surprise",
    }
    assert found["address.city"].actual == "missing"
    assert found["quantity"].message == "must be >= 1"
    assert found["tags[1]"].expected == "str" and found["tags[1]"].actual == "int 3"
    assert found["surprise"].message == "unexpected field"
    text = str(info.value)
    assert "14 problems" in text
    for path in found:
        assert path in text
    assert info.value.event_type == "order.placed"


async def test_typeddict_schema_with_optional_keys() -> None:
    class Login(TypedDict):
        user: str
        ip: NotRequired[str]

    validator = EventValidator()
    validator.register("user.login", Login)
    assert (await validator.validate("user.login", {"user": "a"})).data == {"user": "a"}
    event = await validator.validate("user.login", {"user": "a", "ip": "::1"})
    assert event.data == {"user": "a", "ip": "::1"}
    with pytest.raises(ValidationError) as info:
        await validator.validate("user.login", {"ip": 1})
    assert set(problems(info)) == {"user", "ip"}


async def test_msgspec_struct_schema_with_constraints() -> None:
    class Payment(msgspec.Struct):
        amount: Annotated[float, msgspec.Meta(gt=0)]
        currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)]
        note: str = ""

    validator = EventValidator()
    validator.register("payment.made", Payment)
    event = await validator.validate("payment.made", {"amount": 5, "currency": "EUR"})
    assert event.data == {"amount": 5.0, "currency": "EUR", "note": ""}
    with pytest.raises(ValidationError) as info:
        await validator.validate("payment.made", {"amount": 0, "currency": "EURO"})
    assert set(problems(info)) == {"amount", "currency"}


async def test_pydantic_model_schema_with_field_constraints() -> None:
    class Signup(pydantic.BaseModel):
        email: str = pydantic.Field(pattern=r".+@.+")
        age: int = pydantic.Field(ge=18)
        at: dt.datetime
        referrer: str | None = None

    validator = EventValidator()
    validator.schema("user.signup")(Signup)
    event = await validator.validate(
        "user.signup", {"email": "a@b.c", "age": 20, "at": "2024-01-01T00:00:00Z"}
    )
    assert event.data["age"] == 20 and event.data["referrer"] is None
    assert event.data["at"] == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(ValidationError) as info:
        await validator.validate("user.signup", {"email": "nope", "age": "20", "extra": 1})
    assert set(problems(info)) == {"email", "age", "at", "extra"}
    with pytest.raises(ValidationError):
        await validator.validate("user.signup", ["not", "a", "mapping"])


async def test_json_schema_registration() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "name": {"type": "string", "minLength": 1},
            "score": {"type": "number", "exclusiveMaximum": 10},
            "role": {"enum": ["admin", "user"]},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
            "address": {"$ref": "#/$defs/address"},
            "nickname": {"type": ["string", "null"], "default": None},
            "created": {"type": "string", "format": "date-time"},
        },
        "required": ["id", "name", "role"],
        "additionalProperties": False,
        "$defs": {
            "address": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            }
        },
    }
    validator = EventValidator()
    validator.register("user.created", schema, version=1)
    event = await validator.validate(
        "user.created", {"id": 1, "name": "a", "role": "user", "score": 9.5}
    )
    assert event.data == {"id": 1, "name": "a", "role": "user", "score": 9.5, "nickname": None}
    with pytest.raises(ValidationError) as info:
        await validator.validate(
            "user.created",
            {
                "id": 0,
                "name": "",
                "role": "root",
                "score": 10,
                "tags": ["a", "b", "c"],
                "address": {},
                "created": "soon",
                "other": 1,
            },
        )
    assert set(problems(info)) == {
        "id",
        "name",
        "role",
        "score",
        "tags",
        "address.city",
        "created",
        "other",
    }


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "unevaluatedProperties": False},
        {"dependentSchemas": {"a": {"required": ["b"]}}},
        {"type": "object", "then": {"required": ["b"]}},
        {"type": "array", "minContains": 2},
        {"type": "strange"},
        {"$ref": "http://example.com/schema"},
        {"$ref": "#/$defs/missing"},
        {"enum": []},
    ],
)
def test_json_schema_the_validator_cannot_enforce_is_refused(schema: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        EventValidator().register("x", schema)


@dataclasses.dataclass
class TreeNode:
    value: int
    children: list[TreeNode] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Card:
    last4: str


@dataclasses.dataclass
class Payment:
    method: Card | None
    amount: int | float
    tree: TreeNode


async def test_nested_schemas_unions_and_recursion() -> None:
    validator = EventValidator()
    validator.register("payment.made", Payment)
    event = await validator.validate(
        "payment.made",
        {
            "method": {"last4": "1234"},
            "amount": 1.5,
            "tree": {"value": 1, "children": [{"value": 2}]},
        },
    )
    assert event.data["tree"] == {"value": 1, "children": [{"value": 2, "children": []}]}
    with pytest.raises(ValidationError) as info:
        await validator.validate(
            "payment.made",
            {"method": {"last4": 1234}, "amount": "1", "tree": {"children": [{"value": "x"}]}},
        )
    assert set(problems(info)) == {
        "method.last4",
        "amount",
        "tree.value",
        "tree.children[0].value",
    }


async def test_plain_class_defaults_and_optional_fields() -> None:
    validator = EventValidator()

    @validator.schema("profile.updated")
    class Profile:
        name: str
        bio: str | None = None
        tags: list[str] = []
        plan: Literal["free", "pro"] = "free"

    event = await validator.validate("profile.updated", {"name": "n"})
    assert event.data == {"name": "n", "bio": None, "tags": [], "plan": "free"}
    with pytest.raises(ValidationError):
        await validator.validate("profile.updated", {"name": "n", "plan": "gold"})


# -- no silent coercion ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (int, "1"),
        (int, 1.0),
        (int, True),
        (float, "1.5"),
        (float, True),
        (str, 1),
        (bool, 1),
        (bool, "true"),
        (list[int], "1,2"),
        (list[int], {"a": 1}),
        (dict[str, int], [1]),
        (dt.date, "2024-01-01T00:00:00"),
    ],
)
async def test_no_silent_coercion(annotation: Any, value: Any) -> None:
    schema = dataclasses.make_dataclass("Schema", [("field", annotation)])
    validator = EventValidator()
    validator.register("x", schema)
    with pytest.raises(ValidationError) as info:
        await validator.validate("x", {"field": value})
    assert list(problems(info)) == ["field"]


async def test_ints_are_accepted_where_floats_are_expected() -> None:
    @dataclasses.dataclass
    class Schema:
        value: float

    validator = EventValidator()
    validator.register("x", Schema)
    assert (await validator.validate("x", {"value": 2})).data == {"value": 2.0}


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "text",
        42,
        [{"name": "a"}],
        {"name": float("nan")},
        {"name": "a", "score": float("nan")},
        {"name": "a", "score": float("inf")},
        {"name": "a", "score": 10**400},
        {"name": "a", "blob": {1, 2}},
        {1: "non-str key"},
    ],
)
async def test_bad_data_of_any_shape_raises_only_validation_error(bad: Any) -> None:
    @dataclasses.dataclass
    class Schema:
        name: str
        score: float = 0.0
        blob: Any = None

    validator = EventValidator()
    validator.register("x", Schema)
    with pytest.raises(ValidationError) as info:
        await validator.validate("x", bad)
    assert info.value.errors
    assert isinstance(info.value, EventError) and isinstance(info.value, ValueError)


# -- policies -------------------------------------------------------------------------


async def test_unknown_types_policy() -> None:
    strict = EventValidator()
    with pytest.raises(ValidationError, match="no schema"):
        await strict.validate("never.registered", {})
    lenient = EventValidator(unknown_types="pass")
    event = await lenient.validate("never.registered", {"anything": [1]})
    assert event.data == {"anything": [1]}
    with pytest.raises(ValidationError):
        await lenient.validate("never.registered", {"bad": float("nan")})


async def test_an_unknown_type_passed_through_keeps_the_version_it_was_given() -> None:
    # "pass" accepts the event unchecked: nothing about it is changed, its version included
    # (ValidateMiddleware hands on an unknown v3 event as the v3 event it is)
    lenient = EventValidator(unknown_types="pass")
    event = await lenient.validate("legacy.thing", {"a": 1}, version=3)
    assert (event.version, event.data) == (3, {"a": 1})
    assert lenient.check("legacy.thing", {"a": 1}, version=3) == ({"a": 1}, 3)
    assert (await lenient.validate("legacy.thing", {"a": 1})).version == 1  # Event's default


async def test_extra_fields_policies() -> None:
    class Schema(TypedDict):
        name: str

    data = {"name": "a", "other": 1}
    forbid = EventValidator()
    forbid.register("x", Schema)
    with pytest.raises(ValidationError, match="unexpected field"):
        await forbid.validate("x", data)
    ignore = EventValidator(extra_fields="ignore")
    ignore.register("x", Schema)
    assert (await ignore.validate("x", data)).data == {"name": "a"}
    allow = EventValidator(extra_fields="allow")
    allow.register("x", Schema)
    assert (await allow.validate("x", data)).data == data
    per_schema = EventValidator()
    per_schema.register("x", Schema, extra_fields="ignore")
    assert (await per_schema.validate("x", data)).data == {"name": "a"}


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        EventValidator(unknown_types="maybe")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        EventValidator(extra_fields="sometimes")  # type: ignore[arg-type]


def test_registration_errors() -> None:
    validator = EventValidator()
    validator.register("x", {"type": "object"})
    with pytest.raises(ConfigurationError):
        validator.register("x", {"type": "object"})
    with pytest.raises(ConfigurationError):
        validator.register("y", {"type": "object"}, version=0)
    with pytest.raises(TypeError):
        validator.register("z", 42)
    with pytest.raises(ConfigurationError):
        validator.register("w", dataclasses.make_dataclass("Unsupported", [("handle", object)]))

    @dataclasses.dataclass
    class Local:
        inner: Card

    Local.__annotations__["inner"] = "NotDefinedAnywhere"
    with pytest.raises(ConfigurationError, match="cannot resolve"):
        validator.register("v", Local)


@pytest.mark.parametrize("unknown_types", ["error", "pass"])
@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "unevaluatedProperties": False},  # ConfigurationError
        42,  # TypeError
    ],
)
async def test_a_refused_schema_leaves_no_trace(unknown_types: Any, schema: Any) -> None:
    validator = EventValidator(unknown_types=unknown_types)
    with pytest.raises((ConfigurationError, TypeError)):
        validator.register("user.created", schema)
    assert "user.created" not in validator
    assert validator.versions("user.created") == []
    data = {"name": "x"}
    if unknown_types == "error":
        with pytest.raises(ValidationError, match="no schema is registered"):
            await validator.validate("user.created", data)
    else:  # unchecked, as for any type without a schema
        assert (await validator.validate("user.created", data)).data == data
    validator.register("user.created", {"type": "object"})  # the version is still free
    assert validator.versions("user.created") == [1]


async def test_a_refused_version_keeps_the_versions_registered_before() -> None:
    validator = EventValidator()
    validator.register("user.created", {"type": "object", "properties": {"n": {"type": "string"}}})
    with pytest.raises(ConfigurationError):
        validator.register("user.created", {"dependentSchemas": {}}, version=2)
    assert validator.versions("user.created") == [1]
    assert (await validator.validate("user.created", {"n": "x"})).version == 1


def test_a_schema_nested_too_deeply_to_compile_is_a_configuration_error() -> None:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(400):
        schema = {"type": "object", "properties": {"a": schema}}
    validator = EventValidator()
    with pytest.raises(ConfigurationError, match="nested too deeply"):
        validator.register("user.created", schema)
    assert "user.created" not in validator


def test_too_deep_a_schema_is_refused_whatever_the_recursion_limit() -> None:
    """The refusal came from a RecursionError while compiling, so it depended on the
    process-wide recursion limit, which validation raises while any thread walks deep
    data: a CI run registered this 400-level schema instead of refusing it."""
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(400):
        schema = {"type": "object", "properties": {"a": schema}}
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)
    try:
        with pytest.raises(ConfigurationError, match="nested too deeply to compile \\(more than"):
            EventValidator().register("user.created", schema)
    finally:
        sys.setrecursionlimit(before)


# -- versions and upcasters -----------------------------------------------------------


def versioned() -> EventValidator:
    validator = EventValidator()

    @validator.schema("user.created", version=1)
    class V1:
        name: str

    @validator.schema("user.created", version=2)
    class V2:
        first: str
        last: str

    @validator.schema("user.created", version=3)
    class V3:
        first: str
        last: str
        email: str | None

    @validator.upcaster("user.created", from_version=1)
    def split_name(data: dict[str, Any]) -> dict[str, Any]:
        first, _, last = data["name"].partition(" ")
        return {"first": first, "last": last}

    @validator.upcaster("user.created", from_version=2)
    async def add_email(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "email": None}

    return validator


async def test_highest_version_is_the_default() -> None:
    validator = versioned()
    assert validator.versions("user.created") == [1, 2, 3]
    event = await validator.validate("user.created", {"first": "A", "last": "B", "email": None})
    assert event.version == 3
    with pytest.raises(ValidationError):
        await validator.validate("user.created", {"name": "A B"})


async def test_old_versions_are_upcast_to_the_latest() -> None:
    validator = versioned()
    event = await validator.validate("user.created", {"name": "Ada Lovelace"}, version=1)
    assert event.version == 3
    assert event.data == {"first": "Ada", "last": "Lovelace", "email": None}
    event = await validator.validate("user.created", {"first": "A", "last": "B"}, version=2)
    assert event.version == 3


async def test_an_unknown_version_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="no schema for version 9"):
        await versioned().validate("user.created", {}, version=9)


@pytest.mark.parametrize("version", ["1", 1.0, True])
async def test_a_version_that_is_not_an_int_is_named_in_the_error(version: Any) -> None:
    # "1" used to be reported as "no schema for version 1" although version 1 exists
    with pytest.raises(TypeError, match="version must be an int or None, got"):
        await versioned().validate("user.created", {"name": "Ada Lovelace"}, version=version)
    with pytest.raises(TypeError, match="version must be an int or None, got"):
        versioned().check("user.created", {"name": "Ada Lovelace"}, version=version)


async def test_a_failing_upcaster_is_reported_as_a_validation_error() -> None:
    validator = EventValidator()
    validator.register("x", {"type": "object"}, version=1)
    validator.register("x", {"type": "object"}, version=2)

    @validator.upcaster("x", from_version=1)
    def broken(data: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("field")

    with pytest.raises(ValidationError, match="upcaster from version 1 failed") as info:
        await validator.validate("x", {}, version=1)
    assert isinstance(info.value.__cause__, KeyError)
    with pytest.raises(ConfigurationError):
        validator.upcaster("x", from_version=1, func=lambda d: d)


async def test_without_an_upcaster_the_event_keeps_its_version() -> None:
    validator = EventValidator()
    validator.register("x", {"type": "object"}, version=1)
    validator.register("x", {"type": "object", "required": ["a"]}, version=2)
    assert (await validator.validate("x", {}, version=1)).version == 1


async def test_the_highest_version_is_the_default_whatever_the_registration_order() -> None:
    validator = EventValidator()
    validator.register(
        "user.created",
        {"type": "object", "properties": {"first": {"type": "string"}}, "required": ["first"]},
        version=2,
    )
    validator.register(
        "user.created",
        {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        version=1,
    )
    assert validator.versions("user.created") == [1, 2]
    event = await validator.validate("user.created", {"first": "Ada"})
    assert (event.version, event.data) == (2, {"first": "Ada"})
    assert validator.check("user.created", {"first": "Ada"}) == ({"first": "Ada"}, 2)
    with pytest.raises(ValidationError):
        await validator.validate("user.created", {"name": "Ada"})


def three_versions(v2: Any) -> EventValidator:
    validator = EventValidator()
    validator.register(
        "t.x", {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    )
    validator.schema("t.x", version=2)(v2)
    validator.register(
        "t.x",
        {"type": "object", "properties": {"c": {"type": "string"}}, "required": ["c"]},
        version=3,
    )
    return validator


async def test_upcast_data_is_validated_at_every_version_reached() -> None:
    class V2:
        b: int

    validator = three_versions(V2)
    validator.upcaster("t.x", from_version=1, func=lambda d: {"b": "not an int"})
    validator.upcaster("t.x", from_version=2, func=lambda d: {"c": str(d["b"])})
    # the v3 form would be valid: only checking the v2 form on the way finds the problem
    with pytest.raises(ValidationError) as info:
        await validator.validate("t.x", {"a": "x"}, version=1)
    assert [problem.path for problem in info.value.errors] == ["b"]


async def test_an_upcaster_gets_the_data_as_validated_at_its_version() -> None:
    class V2:
        amount: int
        currency: str = "EUR"  # filled in when v2 data is validated

    validator = three_versions(V2)
    validator.upcaster("t.x", from_version=1, func=lambda d: {"amount": len(d["a"])})
    validator.upcaster(
        "t.x", from_version=2, func=lambda d: {"c": f"{d['amount']} {d['currency']}"}
    )
    event = await validator.validate("t.x", {"a": "xyz"}, version=1)
    assert (event.version, event.data) == (3, {"c": "3 EUR"})


@dataclasses.dataclass
class Constrained:
    age: Annotated[int, annotated_types.Ge(0), annotated_types.Lt(150)]
    code: Annotated[str, pydantic.Field(min_length=2, max_length=3, pattern=r"^[A-Z]+$")]
    scores: list[Annotated[float, annotated_types.Interval(ge=0, le=1)]]
    label: Annotated[str, "just documentation"] = "x"


async def test_annotated_types_and_pydantic_field_constraints_in_dataclasses() -> None:
    validator = EventValidator()
    validator.register("c", Constrained)
    event = await validator.validate("c", {"age": 3, "code": "AB", "scores": [0.5, 1]})
    assert event.data == {"age": 3, "code": "AB", "scores": [0.5, 1.0], "label": "x"}
    with pytest.raises(ValidationError) as info:
        await validator.validate("c", {"age": 150, "code": "abcd", "scores": [2, -1]})
    assert set(problems(info)) == {"age", "code", "scores[0]", "scores[1]"}


def test_a_constraint_that_cannot_be_enforced_is_refused() -> None:
    schema = dataclasses.make_dataclass(
        "Odd", [("n", Annotated[int, annotated_types.Predicate(lambda n: n % 2 == 1)])]
    )
    with pytest.raises(ConfigurationError, match="cannot be enforced"):
        EventValidator().register("odd", schema)


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**30])
async def test_integers_beyond_64_bits_are_out_of_range(value: int) -> None:
    validator = EventValidator()
    validator.register("n", {"type": "object", "properties": {"n": {"type": "integer"}}})
    validator.register("any", {"type": "object", "additionalProperties": True})
    with pytest.raises(ValidationError, match="64-bit"):
        await validator.validate("n", {"n": value})
    with pytest.raises(ValidationError, match="64-bit"):
        await validator.validate("any", {"deep": [{"n": value}]})
    assert (await validator.validate("n", {"n": 2**64 - 1})).data == {"n": 2**64 - 1}


def test_common_schemas_take_the_msgspec_fast_path() -> None:
    class Login(TypedDict):
        user: str
        ip: NotRequired[str]

    class Payment(msgspec.Struct):
        amount: Annotated[float, msgspec.Meta(gt=0)]

    validator = EventValidator()
    validator.register("order.placed", OrderPlaced)
    validator.register("constrained", Constrained)
    validator.register("login", Login)
    validator.register("payment", Payment)
    validator.register(
        "json", {"type": "object", "properties": {"n": {"type": "integer", "maximum": 10**30}}}
    )
    compiled = {name: validator._latest[name] for name in validator._latest}
    assert all(c.fast is not None for n, c in compiled.items() if n != "json"), compiled
    assert compiled["json"].fast is None  # a bound msgspec cannot hold: the walk does it


async def test_unsigned_64_bit_integers_are_accepted_off_the_fast_path() -> None:
    validator = EventValidator()
    validator.register("n", {"type": "object", "properties": {"n": {"type": "integer"}}})
    assert (await validator.validate("n", {"n": 2**63})).data == {"n": 2**63}
    big = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 10**30}}}
    validator.register("big", big)
    with pytest.raises(ValidationError):
        await validator.validate("big", {"n": "x"})
    assert (await validator.validate("big", {"n": 5})).data == {"n": 5}


async def test_upcasting_through_a_version_without_a_schema() -> None:
    validator = EventValidator()
    validator.register("x", {"type": "object", "properties": {"a": {"type": "integer"}}})
    validator.register(
        "x",
        {"type": "object", "properties": {"c": {"type": "integer"}}, "required": ["c"]},
        version=3,
    )
    validator.upcaster("x", from_version=1, func=lambda d: {"b": d.get("a", 0)})
    event = await validator.validate("x", {"a": 1}, version=1)
    assert (event.version, event.data) == (2, {"b": 1})  # no 2 -> 3 upcaster: stays at 2
    validator.upcaster("x", from_version=2, func=lambda d: {"c": d["b"] + 1})
    event = await validator.validate("x", {"a": 1}, version=1)
    assert (event.version, event.data) == (3, {"c": 2})


async def test_an_upcaster_producing_bad_data_is_caught() -> None:
    validator = EventValidator()
    validator.register("x", {"type": "object"}, version=1)
    validator.register("x", {"type": "object", "properties": {"v": {"type": "number"}}}, version=2)
    validator.upcaster("x", from_version=1, func=lambda d: {"v": float("nan")})
    with pytest.raises(ValidationError) as info:
        await validator.validate("x", {}, version=1)
    assert info.value.errors[0].path == "v"
    validator.register("y", {"type": "object"}, version=1)
    validator.upcaster("y", from_version=1, func=lambda d: {"s": {1, 2}})
    validator.register("y", {"type": "object"}, version=3)
    with pytest.raises(ValidationError):
        await validator.validate("y", {}, version=1)


@dataclasses.dataclass
class Lax:
    count: int
    ratio: float
    active: bool
    note: str | None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"count": "42", "ratio": "0.5", "active": "true", "note": "null"},
            {"count": 42, "ratio": 0.5, "active": True, "note": "null"},  # a str is a str
        ),
        (
            {"count": 3.0, "ratio": 1, "active": 0, "note": "x"},
            {"count": 3, "ratio": 1.0, "active": False, "note": "x"},
        ),
    ],
)
async def test_coercion_is_opt_in(data: dict[str, Any], expected: dict[str, Any]) -> None:
    strict = EventValidator()
    strict.register("x", Lax)
    with pytest.raises(ValidationError):
        await strict.validate("x", data)
    lax = EventValidator(coerce=True)
    lax.register("x", Lax)
    assert (await lax.validate("x", data)).data == expected
    per_schema = EventValidator()
    per_schema.register("x", Lax, coerce=True)
    assert (await per_schema.validate("x", data)).data == expected


async def test_coercion_still_reports_every_problem() -> None:
    lax = EventValidator(coerce=True)
    lax.register("x", Lax)
    with pytest.raises(ValidationError) as info:
        await lax.validate("x", {"count": "4.5", "ratio": "nan", "active": "yes", "note": 1})
    assert set(problems(info)) == {"count", "ratio", "active", "note"}


async def test_coercion_with_a_pydantic_model() -> None:
    class Model(pydantic.BaseModel):
        count: int

    lax = EventValidator(coerce=True)
    lax.register("x", Model)
    assert (await lax.validate("x", {"count": "7"})).data == {"count": 7}
    strict = EventValidator()
    strict.register("x", Model)
    with pytest.raises(ValidationError):
        await strict.validate("x", {"count": "7"})


@pytest.mark.parametrize("coerce", [False, True])
async def test_pydantic_models_refuse_non_json_numbers(coerce: bool) -> None:
    class Model(pydantic.BaseModel):
        x: float
        nan_default: float = float("nan")

    validator = EventValidator(coerce=coerce)
    validator.register("m", Model)
    with pytest.raises(ValidationError, match="finite"):
        await validator.validate("m", {"x": float("nan")})
    with pytest.raises(ValidationError, match="finite"):
        await validator.validate("m", {"x": 1.0})  # the model's own default is NaN


class Tier(enum.Enum):
    GOLD = "gold"


class PydanticOrder(pydantic.BaseModel):
    tier: Tier
    tags: set[str]
    codes: frozenset[int]
    pair: tuple[int, str]
    placed_at: dt.datetime
    order_id: uuid.UUID
    amount: Decimal
    lines: list[Tier]


@dataclasses.dataclass
class PlainOrder:
    tier: Tier
    tags: set[str]
    codes: frozenset[int]
    pair: tuple[int, str]
    placed_at: dt.datetime
    order_id: uuid.UUID
    amount: Decimal
    lines: list[Tier]


ORDER = {
    "tier": "gold",
    "tags": ["a"],
    "codes": [7],
    "pair": [1, "x"],
    "placed_at": "2024-05-01T10:00:00Z",
    "order_id": "2eb8aa08-aa98-11ea-b4aa-73b441d16380",
    "amount": "9.50",
    "lines": ["gold"],
}


async def test_pydantic_data_comes_back_as_plain_classes_give_it() -> None:
    validator = EventValidator()
    validator.register("order.pydantic", PydanticOrder)
    validator.register("order.plain", PlainOrder)
    from_pydantic = await validator.validate("order.pydantic", ORDER)
    from_plain = await validator.validate("order.plain", ORDER)
    assert from_pydantic.data == from_plain.data
    assert from_pydantic.data["tier"] == "gold" and from_pydantic.data["lines"] == ["gold"]
    assert from_pydantic.data["tags"] == ["a"] and from_pydantic.data["pair"] == [1, "x"]
    assert from_pydantic.data["order_id"] == uuid.UUID(ORDER["order_id"])
    assert from_pydantic.data["placed_at"] == dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)
    assert from_pydantic.data["amount"] == Decimal("9.50")
    from_pydantic.to_json()  # JSON, as event data must be


async def test_pydantic_data_validates_again() -> None:
    validator = EventValidator()
    validator.register("order.pydantic", PydanticOrder)
    first = await validator.validate("order.pydantic", ORDER)
    again = await validator.validate("order.pydantic", first.data)
    assert again.data == first.data


async def test_pydantic_values_without_a_json_type_of_ours_come_as_pydantic_writes_them() -> None:
    class Timed(pydantic.BaseModel):
        wait: dt.timedelta
        counts: dict[int, int]

    validator = EventValidator()
    validator.register("timed", Timed)
    event = await validator.validate("timed", {"wait": "PT1M", "counts": {"1": 2}})
    assert event.data == {"wait": "PT1M", "counts": {"1": 2}}
    assert (await validator.validate("timed", event.data)).data == event.data


def _nested(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    current = root
    for _ in range(depth):
        child: dict[str, Any] = {}
        current["a"] = child
        current = child
    return root


async def test_absurdly_deep_data_is_a_validation_error() -> None:
    validator = EventValidator(unknown_types="pass")
    validator.register("free", {"type": "object", "properties": {"a": {}}})
    validator.register("tree", {"type": "object", "properties": {"a": {"$ref": "#"}}})
    deep = _nested(50_000)
    for event_type in ("free", "tree", "not.registered"):
        with pytest.raises(ValidationError, match="nested too deeply|recursion"):
            await validator.validate(event_type, deep)
    with pytest.raises(ValidationError):
        validator.check("tree", deep)


async def test_json_schema_root_reference_for_recursive_documents() -> None:
    validator = EventValidator()
    validator.register("tree", {"type": "object", "properties": {"a": {"$ref": "#"}}})
    assert (await validator.validate("tree", _nested(20))).data == _nested(20)
    with pytest.raises(ValidationError) as info:
        await validator.validate("tree", {"a": {"a": 1}})
    assert list(problems(info)) == ["a.a"]


def test_a_field_type_events_cannot_carry_is_refused_at_registration() -> None:
    schema = dataclasses.make_dataclass("Timer", [("every", dt.timedelta)])
    with pytest.raises(ConfigurationError, match="timedelta"):
        EventValidator().register("timer.set", schema)


@dataclasses.dataclass
class WithDefaults:
    name: str
    color: Color = Color.BLUE
    point: tuple[int, int] = (0, 0)
    tags: list[str] = dataclasses.field(default_factory=lambda: ["new"])
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)


async def test_defaults_come_out_the_same_on_both_paths() -> None:
    validator = EventValidator()
    validator.register("d", WithDefaults)
    fast = validator.check("d", {"name": "n"})[0]
    assert fast == {"name": "n", "color": "blue", "point": [0, 0], "tags": ["new"], "meta": {}}
    compiled = validator._latest["d"]
    assert compiled.explain({"name": "n"}) == fast  # the walk fills in the same defaults
    assert type(compiled.explain({"name": "n"})["tags"]) is list  # plain, mutable
    event = await validator.validate("d", {"name": "n"})
    assert event.data == fast


async def test_a_union_msgspec_would_crash_on_is_left_to_the_walk() -> None:
    # msgspec 0.23 segfaults converting to Union[Annotated[str, Meta(...)], tuple[bool]]
    schema = {
        "anyOf": [
            {"type": "string", "maxLength": 3},
            {"type": "array", "prefixItems": [{"type": "boolean"}]},
        ]
    }
    validator = EventValidator()
    validator.register("x", {"type": "object", "properties": {"v": schema}})
    assert validator._latest["x"].fast is None
    assert (await validator.validate("x", {"v": [True]})).data == {"v": [True]}
    assert (await validator.validate("x", {"v": "ab"})).data == {"v": "ab"}
    with pytest.raises(ValidationError):
        await validator.validate("x", {"v": None})


async def test_pydantic_models_with_aliases_give_data_that_validates_again() -> None:
    class Signup(pydantic.BaseModel):
        user_name: str = pydantic.Field(alias="userName")

    validator = EventValidator()
    validator.register("signup", Signup)
    first = await validator.validate("signup", {"userName": "ada"})
    assert first.data == {"userName": "ada"}  # the names the model reads
    assert (await validator.validate("signup", first.data)).data == first.data


@pytest.mark.parametrize("coerce", [False, True])
async def test_pydantic_bytes_fields_read_the_base64_text_event_data_holds(coerce: bool) -> None:
    class Upload(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(val_json_bytes="base64", ser_json_bytes="base64")
        blob: bytes

    validator = EventValidator(coerce=coerce)
    validator.register("upload", Upload)
    live = await validator.validate("upload", {"blob": b"\xfb\xffhi"})
    assert live.data == {"blob": b"\xfb\xffhi"}
    stored = Event.from_json(live.to_json())  # what a store or a broker gives back
    assert stored.data == {"blob": "+/9oaQ=="}
    assert (await validator.validate("upload", stored.data)).data == {"blob": b"\xfb\xffhi"}


def test_pydantic_bytes_fields_reading_utf8_are_refused_at_registration() -> None:
    class Inner(pydantic.BaseModel):
        blob: bytes

    class Upload(pydantic.BaseModel):
        inner: Inner | None = None

    validator = EventValidator()
    with pytest.raises(ConfigurationError, match="val_json_bytes='base64'"):
        validator.register("upload", Upload)
    assert "upload" not in validator  # nothing half-registered
