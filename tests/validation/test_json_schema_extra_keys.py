"""A JSON Schema without ``additionalProperties`` allows keys it does not declare.

That is what JSON Schema says, and what every standard validator does. The validator's
default ``extra_fields="forbid"`` used to apply to JSON Schemas too, so
``{"properties": {"name": ...}, "required": ["name"]}`` refused ``{"name": "x", "email":
"e"}`` with "unexpected field". The default is now each schema's own rule: a JSON Schema
keeps undeclared keys unless its ``additionalProperties`` says otherwise, a class schema
still refuses them, and a policy given explicitly applies to both.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import ConfigurationError, EventValidator, ValidationError
from tests.cli.conftest import command_env

USER = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "address": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
    "required": ["name"],
}
DATA = {"name": "x", "email": "e", "address": {"city": "L", "zip": "1000"}}


def registered(schema: Any, validator: EventValidator | None = None, **options: Any) -> Any:
    validator = EventValidator() if validator is None else validator
    validator.register("user.created", schema, **options)
    return validator


async def test_undeclared_keys_are_kept_at_every_level_by_default() -> None:
    validator = registered(USER)
    assert validator.extra_fields is None
    event = await validator.validate("user.created", DATA)
    assert event.data == DATA
    assert validator.check("user.created", DATA) == (DATA, 1)
    with pytest.raises(ValidationError, match="name"):  # declared keys are still checked
        await validator.validate("user.created", {"name": 1, "email": "e"})


async def test_kept_keys_must_still_be_json() -> None:
    validator = registered(USER)
    with pytest.raises(ValidationError, match="email"):
        await validator.validate("user.created", {"name": "x", "email": {1, 2}})


async def test_additional_properties_false_refuses_them() -> None:
    closed = {**USER, "additionalProperties": False}
    validator = registered(closed)
    with pytest.raises(ValidationError) as refused:
        await validator.validate("user.created", DATA)
    [problem] = refused.value.errors  # the nested object says nothing: its zip is kept
    assert (problem.path, problem.message) == ("email", "unexpected field")
    flat = EventValidator()
    flat.register("user.renamed", {**closed, "properties": {"name": {"type": "string"}}})
    assert flat._latest["user.renamed"].fast is not None  # closed: msgspec's fast path
    assert validator._latest["user.created"].fast is None  # an open object: the walk


@pytest.mark.parametrize("where", ["validator", "register"])
async def test_a_forbid_policy_given_explicitly_applies_to_json_schemas(where: str) -> None:
    if where == "validator":
        validator = registered(USER, EventValidator(extra_fields="forbid"))
    else:
        validator = registered(USER, extra_fields="forbid")
    with pytest.raises(ValidationError) as refused:
        await validator.validate("user.created", DATA)
    assert sorted((p.path, p.message) for p in refused.value.errors) == [
        ("address.zip", "unexpected field"),
        ("email", "unexpected field"),
    ]


async def test_ignore_drops_them_and_a_schema_that_allows_them_wins() -> None:
    ignoring = registered(USER, EventValidator(extra_fields="ignore"))
    event = await ignoring.validate("user.created", DATA)
    assert event.data == {"name": "x", "address": {"city": "L"}}
    open_ = {**USER, "additionalProperties": True}
    forbidding = registered(open_, EventValidator(extra_fields="forbid"))
    with pytest.raises(ValidationError) as refused:  # the nested object says nothing
        await forbidding.validate("user.created", DATA)
    assert [p.path for p in refused.value.errors] == ["address.zip"]  # email: allowed
    kept = await forbidding.validate("user.created", {"name": "x", "email": "e"})
    assert kept.data == {"name": "x", "email": "e"}


async def test_a_class_schema_still_refuses_undeclared_keys_by_default() -> None:
    @dataclasses.dataclass
    class UserCreated:
        name: str

    validator = registered(UserCreated)
    with pytest.raises(ValidationError, match="unexpected field"):
        await validator.validate("user.created", {"name": "x", "email": "e"})


def test_a_bad_policy_names_the_choices() -> None:
    with pytest.raises(ConfigurationError, match=r"'allow' or None .*got 'open'"):
        EventValidator(extra_fields="open")  # type: ignore[arg-type]


def test_the_cli_accepts_what_the_schema_file_allows(tmp_path: Path) -> None:
    (tmp_path / "user.json").write_text(json.dumps(USER))
    done = subprocess.run(
        [sys.executable, "-m", "pepperpy.event", "validate", "user.created", json.dumps(DATA)]
        + ["--schema", "user.created=user.json"],
        cwd=tmp_path,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "valid user.created (version 1)"), done
