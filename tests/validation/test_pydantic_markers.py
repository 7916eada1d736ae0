"""pydantic markers on dataclasses, TypedDicts and plain classes: read as pydantic reads
them (public attributes of ``FieldInfo``; pattern meaning; set items)."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any, Union

import annotated_types
import msgspec
import pytest

from pepperpy.event import ConfigurationError, EventValidator, ValidationError

pydantic = pytest.importorskip("pydantic")
pydantic_core = pytest.importorskip("pydantic_core")


def _verdicts(cls: Any, data: Any) -> tuple[bool, bool]:
    """(ours, pydantic's strict JSON-mode verdict) on ``data`` for ``cls``."""
    validator = EventValidator()
    validator.register("x", cls)
    try:
        validator.check("x", data)
        ours = True
    except ValidationError:
        ours = False
    try:
        pydantic.TypeAdapter(cls).validate_json(json.dumps(data), strict=True)
        theirs = True
    except pydantic.ValidationError:
        theirs = False
    return ours, theirs


@pytest.mark.parametrize(("value", "valid"), [(0, False), (1, True)])
def test_a_field_with_alias_none_is_no_alias(value: int, valid: bool) -> None:
    # Field(alias=None) sets no alias (pydantic reads the field by its name), but its
    # private _attributes_set lists "alias": registration refused it as an alias
    cls = dataclasses.make_dataclass("A", [("a", Annotated[int, pydantic.Field(alias=None, gt=0)])])
    assert _verdicts(cls, {"a": value}) == (valid, valid)


def _field(marker: Any) -> Any:
    return dataclasses.make_dataclass("P", [("a", Annotated[str, marker])])


@pytest.mark.parametrize(
    ("marker", "value"),
    [
        # pydantic (Rust regex): $ is the end of the text; Python's re.search let the
        # final newline through, so these were accepted where pydantic refuses them
        (pydantic.Field(pattern="^abc$"), "abc\n"),
        (pydantic.Field(pattern="^abc$"), "abc"),
        (pydantic.StringConstraints(pattern="^a$"), "a\n"),
        (pydantic.Field(pattern="^[ab]+$", min_length=1), "ab\n"),
        # Rust syntax Python's re reads otherwise (a nested set warning, then a
        # different class) or not at all (\pL: re.error escaped registration)
        (pydantic.Field(pattern="^[[:alpha:]]$"), ":"),
        (pydantic.Field(pattern="^[[:alpha:]]$"), "a"),
        (pydantic.Field(pattern=r"^\pL$"), "a"),
        (pydantic.Field(pattern=r"^\pL$"), "1"),
        (pydantic.Field(pattern=r"^abc\z"), "abc\n"),
        # Unicode classes: Rust's \s is not Python's (\x1c), nor its \w (U+00B2)
        (pydantic.Field(pattern=r"^\s$"), "\x1c"),
        (pydantic.Field(pattern=r"^\w$"), "\u00b2"),
    ],
)
def test_a_pydantic_pattern_has_pydantics_meaning(marker: Any, value: str) -> None:
    ours, theirs = _verdicts(_field(marker), {"a": value})
    assert ours == theirs


def test_a_pydantic_pattern_given_as_the_default_has_pydantics_meaning() -> None:
    @dataclasses.dataclass
    class P:
        a: str = pydantic.Field(pattern="^abc$")  # type: ignore[assignment]

    assert _verdicts(P, {"a": "abc\n"}) == (False, False)
    assert _verdicts(P, {"a": "abc"}) == (True, True)


def test_a_compiled_pattern_is_run_by_re_as_pydantic_does() -> None:
    # pydantic runs a compiled re.Pattern with Python's re (there $ takes a final
    # newline); registration refused it (msgspec.Meta takes only a str)
    import re

    cls = _field(pydantic.Field(pattern=re.compile("^abc$")))
    assert _verdicts(cls, {"a": "abc\n"}) == (True, True)
    assert _verdicts(cls, {"a": "abd"}) == (False, False)


@pytest.mark.parametrize("pattern", [r"^a(?=b)", r"^(a)\1$"])
def test_a_pattern_pydantic_refuses_is_refused_at_registration(pattern: str) -> None:
    # Rust's regex has no lookaround or backreference: pydantic refuses the schema;
    # the validator ran the pattern with Python's re instead
    cls = _field(pydantic.Field(pattern=pattern))
    with pytest.raises(pydantic_core.SchemaError):
        pydantic.TypeAdapter(cls)
    with pytest.raises(ConfigurationError, match="pydantic refuses the pattern"):
        EventValidator().register("x", cls)


class _MarkedStruct(msgspec.Struct, rename="camel"):
    # msgspec reads only msgspec.Meta: these markers were dropped, the fields unchecked
    count: Annotated[int, annotated_types.Gt(0), msgspec.Meta(lt=5)] = 1
    code: Annotated[str, pydantic.Field(pattern="^a$")] = "a"
    scores: dict[str, Annotated[float, annotated_types.Ge(0)]] = {}  # noqa: RUF012


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"count": 0}, "count"),
        ({"count": 5}, "count"),
        ({"code": "a\n"}, "code"),
        ({"scores": {"x": -1}}, "scores.x"),
        ({"count": 2, "code": "a", "scores": {"x": 1.5}}, None),
        ({}, None),
    ],
)
def test_markers_on_a_struct_are_enforced(data: dict[str, Any], where: str | None) -> None:
    validator = EventValidator()
    validator.register("x", _MarkedStruct)
    if where is None:
        validator.check("x", data)
        return
    with pytest.raises(ValidationError) as caught:
        validator.check("x", data)
    assert [p.path for p in caught.value.errors] == [where]


def test_an_unenforceable_marker_on_a_struct_is_refused() -> None:
    class Checked(msgspec.Struct):
        count: Annotated[int, pydantic.AfterValidator(lambda v: v)]

    with pytest.raises(ConfigurationError, match="cannot be enforced"):
        EventValidator().register("x", Checked)


@dataclasses.dataclass
class _InnerPattern:
    y: Annotated[str, pydantic.Field(pattern="^abc$")]


@dataclasses.dataclass
class _PythonRe:
    x: Annotated[str, pydantic.Field(pattern="^abc$")]
    inner: _InnerPattern
    __pydantic_config__ = pydantic.ConfigDict(regex_engine="python-re")


@pytest.mark.parametrize(
    "data",
    [
        # regex_engine="python-re": pydantic runs Python's re, where $ takes a final
        # newline, in the class and in a nested one without a config of its own
        {"x": "abc\n", "inner": {"y": "abc"}},
        {"x": "abc", "inner": {"y": "abc\n"}},
        {"x": "abd", "inner": {"y": "abc"}},
    ],
)
def test_a_class_config_regex_engine_is_honoured(data: dict[str, Any]) -> None:
    ours, theirs = _verdicts(_PythonRe, data)
    assert ours == theirs


@dataclasses.dataclass
class _EngineFirst:
    a: _PythonRe
    b: _InnerPattern


@dataclasses.dataclass
class _DefaultFirst:
    b: _InnerPattern
    a: _PythonRe


@pytest.mark.parametrize("cls", [_EngineFirst, _DefaultFirst])
@pytest.mark.parametrize(
    "data",
    [
        {"a": {"x": "abc", "inner": {"y": "abc\n"}}, "b": {"y": "abc"}},
        {"a": {"x": "abc", "inner": {"y": "abc"}}, "b": {"y": "abc\n"}},
    ],
)
def test_a_class_reached_under_two_engines_is_judged_as_pydantic_judges_it(
    cls: Any, data: dict[str, Any]
) -> None:
    # _InnerPattern is read both inside _PythonRe (python-re) and outside it (Rust):
    # pydantic builds a class once per schema, with the engine of the place it meets it
    # first (field order), and runs that for both; so does the validator (not a memo
    # keyed by engine, which would judge one of the two places otherwise than pydantic)
    ours, theirs = _verdicts(cls, data)
    assert ours == theirs


@pytest.mark.parametrize(
    ("annotation", "bad", "good"),
    [
        # markers that change no verdict here were refused at registration
        (Annotated[float, pydantic.Field(allow_inf_nan=False, gt=0)], 0.0, 1.5),
        (Annotated[list[int], pydantic.Field(fail_fast=True)], [1, "a"], [1, 2]),
        (Annotated[Union[int, str], pydantic.Field(union_mode="left_to_right")], 1.5, "a"),  # noqa: UP007
        (Annotated[Union[int, str], pydantic.Field(description="an id")], 1.5, 1),  # noqa: UP007
        (Annotated[tuple[int, str], pydantic.Field(title="pair")], [1, 2], [1, "a"]),
    ],
)
def test_markers_that_change_no_verdict_are_allowed(annotation: Any, bad: Any, good: Any) -> None:
    cls = dataclasses.make_dataclass("N", [("a", annotation)])
    assert _verdicts(cls, {"a": bad}) == (False, False)
    assert _verdicts(cls, {"a": good}) == (True, True)


def test_allow_inf_nan_true_is_refused() -> None:
    cls = dataclasses.make_dataclass(
        "N", [("a", Annotated[float, pydantic.Field(allow_inf_nan=True)])]
    )
    with pytest.raises(ConfigurationError, match="NaN and infinities are no event data"):
        EventValidator().register("x", cls)
