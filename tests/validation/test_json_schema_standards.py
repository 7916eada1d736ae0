"""Where JSON Schema leans on other standards: exact ``multipleOf``, RFC 9562 UUIDs,
RFC 3339 times, RFC 6901 pointers in ``$ref`` (cases from the JSON-Schema-Test-Suite).

Every verdict is checked on both paths (the msgspec fast path never accepts what the
complete walk refuses).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import annotated_types
import msgspec
import pytest

from pepperpy.event import EventValidator, ValidationError

from .test_json_schema_semantics import _both_paths


def _verdict(schema: Any, data: Any) -> bool:
    return _both_paths(schema, data) is not ValidationError


# -- multipleOf: exact, on the decimal JSON writes -------------------------------------


@pytest.mark.parametrize(
    ("step", "valid", "invalid"),
    [
        (2, [10, 0, -4, 4.0, 2**63 - 2], [7, 2**63 - 1, 4.5]),
        (1.5, [0, 4.5, -3], [35, 4.4]),
        (0.0001, [0.0075, 1, 0], [0.00751]),  # decimal: 0.0075 / 0.0001 is 75
        (0.1, [0.3, 0.7, 1.1, 10**18, 1e300], [5e-11, 0.30000000000000004, 0.05]),
        (1, [3, 3.0, 1e20], [1.0000000001, 3.0000000005, 0.5]),
        (1.1, [6.6, 0], [6.6000000000000005]),  # msgspec (binary) accepts the latter
        (3, [9, 3e21, 2**63 + 1], [3.0 * 2**70]),  # that float reads 3541774862152234000000
        (1e-8, [12391239123], [1e-9]),
        (0.123456789, [0.123456789 * 0 + 0.246913578], [1e308]),
    ],
)
def test_multiple_of_is_exact(step: Any, valid: list[Any], invalid: list[Any]) -> None:
    schema = {"type": "number", "multipleOf": step}
    assert [_verdict(schema, v) for v in valid] == [True] * len(valid)
    assert [_verdict(schema, v) for v in invalid] == [False] * len(invalid)


def test_multiple_of_on_integers_is_exact() -> None:
    schema = {"type": "integer", "multipleOf": 0.5}
    assert _verdict(schema, 2**63 + 1) and _verdict(schema, 7)
    assert not _verdict({"type": "integer", "multipleOf": 0.123456789}, 10**18)
    assert not _verdict({"type": "integer", "multipleOf": 3}, 10**19 + 1)


@pytest.mark.parametrize(
    "marker", [msgspec.Meta(multiple_of=1), annotated_types.MultipleOf(1)], ids=repr
)
async def test_python_multiple_of_constraints_are_exact(marker: Any) -> None:
    quantity = dataclasses.make_dataclass("Quantity", [("n", Annotated[float, marker])])
    validator = EventValidator()
    validator.register("q", quantity)
    assert (await validator.validate("q", {"n": 3})).data == {"n": 3.0}
    with pytest.raises(ValidationError, match="multiple of 1"):
        await validator.validate("q", {"n": 1.0000000001})


async def test_multiple_of_keeps_the_fast_path_for_the_rest_of_the_data() -> None:
    validator = EventValidator(extra_fields="forbid")  # keeping extras has no fast path
    validator.register(
        "price",
        {
            "type": "object",
            "properties": {"amount": {"type": "number", "multipleOf": 0.01}, "sku": {}},
            "required": ["amount"],
        },
    )
    compiled = validator._latest["price"]
    assert compiled.fast is not None
    assert compiled.check({"amount": 0.07, "sku": "a"}) == {"amount": 0.07, "sku": "a"}
    with pytest.raises(ValidationError):
        compiled.check({"amount": 0.071})


# -- format uuid: RFC 9562's 8-4-4-4-12 hex form ---------------------------------------

UUID_VALID = [
    "2EB8AA08-AA98-11EA-B4AA-73B441D16380",
    "2eb8aa08-aa98-11ea-b4aa-73b441d16380",
    "2eb8aa08-AA98-11ea-B4Aa-73B441D16380",
    "00000000-0000-0000-0000-000000000000",
    "98d80576-482e-427f-8434-7f86890ab222",
    "99c17cbb-656f-f64a-940f-1a4568f03487",
]
UUID_INVALID = [
    "2eb8aa08-aa98-11ea-b4aa-73b441d1638",
    "2eb8aa08-aa98-11ea-73b441d16380",
    "2eb8aa08-aa98-11ea-b4ga-73b441d16380",
    "2eb8aa08aa9811eab4aa73b441d16380",
    "2eb8aa08aa98-11ea-b4aa73b441d16380",
    "2eb8-aa08-aa98-11ea-b4aa73b44-1d16380",
    "2eb8aa08aa9811eab4aa73b441d16380----",
    "2eb8aa0-8aa98-11e-ab4aa7-3b441d16380",
    "urn:uuid:2eb8aa08-aa98-11ea-b4aa-73b441d16380",
    "{2eb8aa08-aa98-11ea-b4aa-73b441d16380}",
    "2eb8aa08-aa98-11ea-b4aa-73b441d16380\n",
]


@pytest.mark.parametrize("where", ["top", "field", "optional"])
def test_format_uuid_takes_the_rfc_form_only(where: str) -> None:
    uuid_schema: dict[str, Any] = {"type": "string", "format": "uuid"}
    if where == "optional":
        uuid_schema["type"] = ["string", "null"]
    if where == "top":
        schema, wrap = uuid_schema, lambda v: v
    else:
        schema = {"type": "object", "properties": {"id": uuid_schema}, "required": ["id"]}
        wrap = lambda v: {"id": v}  # noqa: E731
    assert [_verdict(schema, wrap(v)) for v in UUID_VALID] == [True] * len(UUID_VALID)
    assert [_verdict(schema, wrap(v)) for v in UUID_INVALID] == [False] * len(UUID_INVALID)


# -- format time: RFC 3339 full-time, offset required ----------------------------------

TIME_VALID = [
    "08:30:06Z",
    "23:59:60Z",
    "23:59:60+00:00",
    "01:29:60+01:30",
    "23:29:60+23:30",
    "15:59:60-08:00",
    "00:29:60-23:30",
    "23:20:50.52Z",
    "08:30:06.283185Z",
    "08:30:06+00:20",
    "08:30:06-08:00",
    "12:34:56-00:00",
    "08:30:06z",
]
TIME_INVALID = [
    "008:030:006Z",
    "8:3:6Z",
    "8:0030:6Z",
    "22:59:60Z",
    "23:58:60Z",
    "22:59:60+00:00",
    "23:58:60+00:00",
    "23:59:60+01:00",
    "23:59:60+00:30",
    "23:59:60-01:00",
    "23:59:60-00:30",
    "08:30:06-8:000",
    "24:00:00Z",
    "00:60:00Z",
    "00:00:61Z",
    "01:02:03+24:00",
    "01:02:03+00:60",
    "01:02:03Z+00:30",
    "08:30:06 PST",
    "01:01:01,1111",
    "12:00:00",
    "12:00:00.52",
    "1\u09e8:00:00Z",
    "08:30:06#00:20",
    "ab:cd:ef",
    "2020-11-28T23:55:45Z",
    "08:30:06+0130",
    "08:30:06+01",
    "08:30:06Z\n",
    "24:59:00+01:00",
]


def test_format_time_is_an_rfc_3339_full_time() -> None:
    schema = {"type": "string", "format": "time"}
    assert [_verdict(schema, v) for v in TIME_VALID] == [True] * len(TIME_VALID)
    assert [_verdict(schema, v) for v in TIME_INVALID] == [False] * len(TIME_INVALID)


async def test_format_time_stays_text() -> None:
    validator = EventValidator()
    validator.register("x", {"type": "object", "properties": {"t": {"format": "time"}}})
    validator.register(
        "y", {"type": "object", "properties": {"t": {"type": "string", "format": "time"}}}
    )
    event = await validator.validate("y", {"t": "23:59:60Z"})
    assert event.data == {"t": "23:59:60Z"}
    event.to_json()  # a time with an offset as datetime.time: the encoder would refuse it
    # without type: string, format stays an annotation
    assert (await validator.validate("x", {"t": 5})).data == {"t": 5}


# -- $ref: a JSON Pointer in a URI fragment (RFC 6901 section 6) -----------------------

ESCAPED = {
    "$defs": {
        "tilde~field": {"type": "integer"},
        "slash/field": {"type": "integer"},
        "percent%field": {"type": "integer"},
    },
    "properties": {
        "tilde": {"$ref": "#/$defs/tilde~0field"},
        "slash": {"$ref": "#/$defs/slash~1field"},
        "percent": {"$ref": "#/$defs/percent%25field"},
    },
}


@pytest.mark.parametrize(
    ("data", "valid"),
    [
        ({"slash": "aoeu"}, False),
        ({"tilde": "aoeu"}, False),
        ({"percent": "aoeu"}, False),
        ({"tilde": 123}, True),
        ({"slash": 123}, True),
        ({"percent": 123}, True),
    ],
)
def test_escaped_pointer_refs(data: Any, valid: bool) -> None:
    assert _verdict(ESCAPED, data) is valid


def test_refs_decode_percent_escapes_and_index_arrays() -> None:
    schema = {
        "$defs": {"my def": {"type": "integer"}, "pair": [{"type": "string"}]},
        "properties": {"a": {"$ref": "#/$defs/my%20def"}, "b": {"$ref": "#/$defs/pair/0"}},
    }
    assert _verdict(schema, {"a": 1, "b": "x"})
    assert not _verdict(schema, {"a": "x"})
    assert not _verdict(schema, {"b": 1})
