"""Constraint markers of Python schemas: annotated-types and pydantic ones.

A dataclass, TypedDict or plain class field takes constraints from
``Annotated[..., marker]`` (and from a ``pydantic.Field(...)`` given as its default).
Each marker becomes ``msgspec.Meta`` arguments, or is known to say nothing about the
value (documentation, JSON Schema, serialization), or is refused with a
``ConfigurationError``: a marker the validator cannot enforce (a pydantic validator
function, ``max_digits``, ``to_lower``, an alias, ...) would otherwise be dropped and the
field accepted unchecked, where pydantic would refuse or change the value.
"""

from __future__ import annotations

from typing import Any

from .._errors import ConfigurationError

__all__ = ["CONSTRAINTS", "PYDANTIC_PATTERN", "constraints", "field_info_default"]


CONSTRAINTS = ("gt", "ge", "lt", "le", "multiple_of", "min_length", "max_length", "pattern")

#: the key of a pydantic marker's pattern among the constraints found: it is judged as
#: pydantic judges it (see ``_pydantic_regex``), not as ``msgspec.Meta(pattern=...)``
#: (Python's ``re``), so it never goes into a ``msgspec.Meta``
PYDANTIC_PATTERN = "pydantic_pattern"

#: pydantic markers that do not judge a value (docs, JSON Schema, serialization, the
#: union discriminator, whose tags pick the option the value's own check picks)
_NEUTRAL_MODULES = ("pydantic.functional_serializers", "pydantic.json_schema")
_NEUTRAL_NAMES = frozenset({"Discriminator", "Tag", "DocInfo"})

#: ``pydantic.Field(...)`` arguments that change what is read or how
_FIELD_REFUSED = {
    "alias": "an alias is read only by a pydantic model: name the field as the data does",
    "validation_alias": "an alias is read only by a pydantic model: name the field as the "
    "data does",
    "default": "give the default as the field's value (x: int = 3), not inside Annotated",
    "default_factory": "give the default as the field's value (dataclasses.field("
    "default_factory=...)), not inside Annotated",
}

#: what a pydantic general-metadata key may hold and still be enforced (its value when
#: it changes nothing: strict mode is the default here, NaN and infinities are refused)
_GENERAL_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "strict": (None, True),
    "allow_inf_nan": (None, False),
    "strip_whitespace": (None, False),
    "to_lower": (None, False),
    "to_upper": (None, False),
    "ascii_only": (None, False),
    # unions here give a value to the first option taking it (docs/validation.md)
    "union_mode": (None, "left_to_right", "smart"),
}


def constraints(marker: Any) -> dict[str, Any] | None:
    """msgspec.Meta arguments for an annotated-types or pydantic marker.

    None for markers that are not constraints (docs, strings, other libraries'); a
    marker that cannot be enforced raises, so nothing is silently left unchecked.
    """
    cls = type(marker)
    module = cls.__module__ or ""
    if cls.__name__ in _NEUTRAL_NAMES or module.startswith(_NEUTRAL_MODULES):
        return None
    if not module.startswith(("annotated_types", "pydantic")):
        return None
    if module.startswith("pydantic"):
        return _pydantic(marker)
    return _annotated_types(marker)


def _annotated_types(marker: Any) -> dict[str, Any]:
    import annotated_types

    if isinstance(marker, annotated_types.GroupedMetadata) and not _has_constraint(marker):
        found: dict[str, Any] = {}
        for item in marker:
            found.update(constraints(item) or {})
        return found
    found = {name: getattr(marker, name) for name in CONSTRAINTS if _has(marker, name)}
    if not found:
        raise ConfigurationError(f"the constraint {marker!r} cannot be enforced by the validator")
    return found


def _pydantic(marker: Any) -> dict[str, Any]:
    name = type(marker).__name__
    if name == "FieldInfo":
        for attribute, hint in _FIELD_REFUSED.items():
            if _field_sets(marker, attribute):
                raise ConfigurationError(f"{marker!r}: {hint}")
        found: dict[str, Any] = {}
        for item in marker.metadata:
            found.update(constraints(item) or {})
        return found
    if name == "AllowInfNan":  # Field(allow_inf_nan=...)
        if not marker.allow_inf_nan:
            return {}  # NaN and infinities are refused here anyway
        raise ConfigurationError(
            f"{marker!r}: NaN and infinities are no event data (JSON cannot hold them)"
        )
    if name == "FailFast":  # stops a sequence's check at its first error: same verdict
        return {}
    if name == "Strict":
        if marker.strict:
            return {}
        raise ConfigurationError(
            f"{marker!r}: fields are strict here; register(..., coerce=True) for lax rules"
        )
    if name == "_PydanticGeneralMetadata":
        found = {}
        for key, value in vars(marker).items():
            if key == "pattern" and value is not None:
                found[PYDANTIC_PATTERN] = value  # pydantic's meaning, not re's
            elif key != "pattern" and value not in _GENERAL_NEUTRAL.get(key, (None,)):
                raise ConfigurationError(
                    f"the pydantic constraint {key}={value!r} cannot be enforced by the "
                    "validator on a dataclass, TypedDict or plain class (a pydantic model "
                    "runs it)"
                )
        return found
    import annotated_types

    if isinstance(marker, annotated_types.GroupedMetadata):  # StringConstraints
        found = {}
        for item in marker:
            found.update(constraints(item) or {})
        return found
    raise ConfigurationError(
        f"{marker!r} cannot be enforced by the validator on a dataclass, TypedDict or "
        "plain class (a pydantic model runs it)"
    )


def _field_sets(info: Any, attribute: str) -> bool:
    """Whether the ``pydantic.Field(...)`` ``info`` sets ``attribute`` (one of
    ``_FIELD_REFUSED``), read from its public attributes (pydantic >= 2.0): an alias or
    default that changes nothing (``alias=None``, ``default=...``) is not set."""
    from pydantic_core import PydanticUndefined  # present: pydantic made ``info``

    value = getattr(info, attribute)
    if attribute == "default":
        return value is not PydanticUndefined
    return value is not None


def _has(marker: Any, name: str) -> bool:
    return getattr(marker, name, None) is not None


def _has_constraint(marker: Any) -> bool:
    return any(_has(marker, name) for name in CONSTRAINTS)


def field_info_default(info: Any) -> tuple[Any, Any]:
    """The (default, factory) of a ``pydantic.Field(...)`` given as a field's value, and
    the marker without them, which constrains the field: ``((default, factory), marker)``
    with ``dataclasses.MISSING`` for what it does not set."""
    import copy
    import dataclasses

    from pydantic_core import PydanticUndefined  # present: pydantic made ``info``

    default = info.default
    factory = info.default_factory
    if default is PydanticUndefined:
        default = dataclasses.MISSING
    if factory is None:
        factory = dataclasses.MISSING
    # the marker keeps the constraints only: its default is the field's, not a default
    # given inside Annotated (which _pydantic refuses)
    marker = copy.copy(info)
    marker.default = PydanticUndefined
    marker.default_factory = None
    return (default, factory), marker
