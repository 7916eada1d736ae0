"""Readable ``expected`` text for pydantic's errors, in the other schema kinds' words.

A pydantic model's problems come from pydantic's error dicts (``type``, ``ctx``,
``msg``). Their ``type`` is a code (``greater_than``, ``float_type``); a dataclass or
JSON Schema says ``float > 0`` or ``float`` for the same data. :func:`pydantic_expected`
turns the common codes into that vocabulary, using what the error carries: the bound
from ``ctx`` for a constraint, the kind of value for a type error. An error does not
carry the field's whole type, so a failed constraint reads ``> 0`` (where a dataclass
says ``float > 0``) and a missing field ``a value``. A code without a mapping here (a
rarer type, a future pydantic's) is given as it is: ``message`` (pydantic's own text)
says what was wrong in any case.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["pydantic_expected"]

# codes that name only the kind of value wanted: the word the other schema kinds use
_KINDS = {
    "int": ("int_type", "int_parsing", "int_parsing_size", "int_from_float"),
    "float": ("float_type", "float_parsing"),
    "str": ("string_type", "string_unicode"),
    "bool": ("bool_type", "bool_parsing"),
    "null": ("none_required",),
    "list": ("list_type",),
    "tuple": ("tuple_type",),
    "set": ("set_type",),
    "frozenset": ("frozen_set_type",),
    "object": (
        "dict_type",
        "mapping_type",
        "model_attributes_type",
        "typed_dict_type",
        "frozen_dict_type",
    ),
    "bytes": ("bytes_type",),
    "datetime": (
        "datetime_type",
        "datetime_parsing",
        "datetime_from_date_parsing",
        "datetime_object_invalid",
    ),
    "date": ("date_type", "date_parsing", "date_from_datetime_parsing"),
    "time": ("time_type", "time_parsing"),
    "timedelta": ("time_delta_type", "time_delta_parsing"),
    "UUID": ("uuid_type", "uuid_parsing"),
    "decimal": ("decimal_type", "decimal_parsing"),
    "URL": ("url_type", "url_parsing", "url_syntax_violation"),
    "a value": ("missing",),
    "hashable value": ("set_item_not_hashable",),
    "no such field": ("extra_forbidden",),
    "finite number": ("finite_number",),
    "str of ASCII characters": ("string_not_ascii",),
    "datetime with a timezone": ("timezone_aware",),
    "datetime without a timezone": ("timezone_naive",),
    "datetime in the past": ("datetime_past",),
    "datetime in the future": ("datetime_future",),
    "date in the past": ("date_past",),
    "date in the future": ("date_future",),
    "a date (a datetime at midnight)": ("date_from_datetime_inexact",),
    "a value the model's validators accept": ("value_error", "assertion_error"),
}
_KIND_OF = {code: kind for kind, codes in _KINDS.items() for code in codes}

# a bound from ctx: (the ctx key, how the other schema kinds write it)
_BOUNDS = {
    "greater_than": ("gt", "> {}"),
    "greater_than_equal": ("ge", ">= {}"),
    "less_than": ("lt", "< {}"),
    "less_than_equal": ("le", "<= {}"),
    "multiple_of": ("multiple_of", "multiple of {}"),
    "string_too_short": ("min_length", "str (length >= {})"),
    "string_too_long": ("max_length", "str (length <= {})"),
    "string_pattern_mismatch": ("pattern", "str (matching {!r})"),
    "bytes_too_short": ("min_length", "bytes (length >= {})"),
    "bytes_too_long": ("max_length", "bytes (length <= {})"),
    "decimal_max_digits": ("max_digits", "decimal (at most {} digits)"),
    "decimal_max_places": ("decimal_places", "decimal (at most {} decimal places)"),
    "decimal_whole_digits": ("whole_digits", "decimal (at most {} digits before the point)"),
    "uuid_version": ("expected_version", "UUID version {}"),
    "url_too_long": ("max_length", "URL (length <= {})"),
    "url_scheme": ("expected_schemes", "URL with scheme {}"),
    "timezone_offset": ("tz_expected", "datetime with UTC offset {} seconds"),
    "is_instance_of": ("class", "instance of {}"),
}

# too_short / too_long name the container in ctx field_type
_CONTAINERS = {"List": "list", "Tuple": "tuple", "Set": "set", "Dictionary": "object"}


def pydantic_expected(error: Mapping[str, Any]) -> str:
    """What pydantic wanted, in the words a dataclass or JSON Schema would use.

    ``error`` is one dict of ``pydantic.ValidationError.errors()``; an unknown code is
    returned as it is.
    """
    code = str(error.get("type", ""))
    ctx = error.get("ctx")
    ctx = ctx if isinstance(ctx, Mapping) else {}
    kind = _KIND_OF.get(code)
    if kind is not None:
        return kind
    bound = _BOUNDS.get(code)
    if bound is not None and bound[0] in ctx:
        return bound[1].format(_number(ctx[bound[0]]))
    if code in ("literal_error", "enum") and "expected" in ctx:
        return "one of " + _choices(str(ctx["expected"]))
    if code in ("too_short", "too_long"):
        container = _CONTAINERS.get(str(ctx.get("field_type")), "value")
        if code == "too_short" and "min_length" in ctx:
            return f"{container} (length >= {ctx['min_length']})"
        if code == "too_long" and "max_length" in ctx:
            return f"{container} (length <= {ctx['max_length']})"
    if code in ("model_type", "dataclass_type", "dataclass_exact_type"):
        name = ctx.get("class_name")
        return f"object {name}" if name else "object"
    if code == "union_tag_invalid" and {"discriminator", "expected_tags"} <= ctx.keys():
        return f"object with {ctx['discriminator']} one of {ctx['expected_tags']}"
    if code == "union_tag_not_found" and "discriminator" in ctx:
        return f"object with {ctx['discriminator']}"
    return code


def _number(value: Any) -> Any:
    """``0`` for a bound pydantic holds as ``0.0`` (for a float field), as its msg does."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _choices(expected: str) -> str:
    """``'a', 'b'`` for pydantic's ``'a' or 'b'`` (``'a', 'b' or 'c'`` gets a comma too).

    Only a single `` or `` is certainly pydantic's separator; with more (a value holding
    the word), its text is kept as it is.
    """
    if expected.count(" or ") == 1:
        return expected.replace(" or ", ", ")
    return expected
