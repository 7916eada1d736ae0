"""JSON Schema ``pattern`` and ``patternProperties`` have their ECMA-262 meaning.

``$`` is the end of the input (not before a final newline), ``\\d``/``\\w``/``\\b`` are
ASCII, ``\\s`` is ECMA-262's Unicode whitespace, ``.`` no line terminator; the fast path
(msgspec) and the walk agree. msgspec ``Meta(pattern=)`` keeps Python's meaning.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any

import msgspec
import pytest

from pepperpy.event import ConfigurationError, EventValidator, ValidationError
from pepperpy.event.validation._ecma_regex import compile_ecma, ecma_to_python

# (pattern, text, ECMA-262's answer: does the pattern find a match in the text?)
CASES = [
    ("^[A-Z]-[0-9]+$", "A-1", True),
    ("^[A-Z]-[0-9]+$", "A-1\n", False),
    ("^a|b$", "xb\n", False),
    ("x$", "x\n\n", False),
    (r"^\d+$", "12", True),
    (r"^\d+$", "\u0661\u0662", False),  # Arabic-Indic digits are no \d
    (r"^\D$", "\u0661", True),
    (r"^\w+$", "abc_9", True),
    (r"^\w+$", "é", False),
    (r"^\W$", "é", True),
    (r"\bfoo\b", "a foo b", True),
    (r"\bfoo\b", "afoo", False),
    (r"\bfoo\b", "éfoo", True),  # é is no word character: a boundary
    (r"\Bfoo", "éfoo", False),
    (r"^\s$", "\u00a0", True),  # ECMA-262 whitespace is Unicode
    (r"^\s$", "\ufeff", True),
    (r"^\s$", "\u2028", True),
    (r"^\s$", "\x1c", False),  # Python's \s takes it, ECMA-262's does not
    (r"^\S$", "\x1c", True),
    ("^.$", "x", True),
    ("^.$", "\n", False),
    ("^.$", "\r", False),
    ("^.$", "\u2028", False),
    ("^[$]$", "$", True),
    (r"^[\]]$", "]", True),
    (r"^[\]a]+$", "a]a", True),
    (r"^\$$", "$", True),
    (r"\\$", "a\\", True),  # an escaped backslash, then the end
    (r"\\$", "a\\\n", False),
    (r"^[\d-]+$", "1-2", True),
    (r"^[\d]+$", "\u0661", False),
    (r"^[\w.]+$", "a.b", True),
    (r"^[\s]$", "\u3000", True),
    (r"^[a\D]$", "a", True),
    (r"^[a\D]$", "x", True),
    (r"^[a\D]$", "3", False),
    (r"^[^\D5]$", "3", True),  # a digit, but not 5
    (r"^[^\D5]$", "5", False),
    (r"^[^\D5]$", "a", False),
    (r"^[^\d]$", "\u0661", True),
    ("^[]$", "", False),  # [] matches nothing
    ("a[]", "a", False),
    ("^[^]$", "\n", True),  # [^] matches anything
    ("^[[]$", "[", True),  # a literal [ in a class
    ("^[.]$", "x", False),
    ("^[.]$", ".", True),
    (r"^\.$", ".", True),
    (r"^\x41$", "A", True),
    (r"^\u00e9$", "é", True),
    ("^(?:ab)+$", "abab", True),
    ("^(?=a).{2}$", "ab", True),
    ("^[+--]$", ",", True),  # a range from + to -, no Python set difference
    ("^[+--]$", "a", False),
    ("^[a&&b]$", "&", True),  # literal in ECMA-262; a future set operation to Python
    ("^[|~]+$", "|~", True),
    (r"^(?<y>[0-9]{4})-\k<y>$", "2024-2024", True),  # named group and backreference
    (r"^(?<y>[0-9]{4})-\k<y>$", "2024-2025", False),
    ("(?<=a)b", "ab", True),
    ("(?<!a)b", "ab", False),
]


@pytest.mark.parametrize(("pattern", "text", "expected"), CASES)
def test_translation_has_ecma_meaning(pattern: str, text: str, expected: bool) -> None:
    assert (compile_ecma(pattern).search(text) is not None) is expected, ecma_to_python(pattern)


def _string_schema(pattern: str) -> dict[str, Any]:
    return {"type": "string", "pattern": pattern}


@pytest.mark.parametrize(("pattern", "text", "expected"), CASES)
def test_pattern_keyword_fast_path_and_walk_agree(pattern: str, text: str, expected: bool) -> None:
    """The fast path (a msgspec Struct with the pattern) and the walk (the JSON Schema
    has no fast path when it keeps undeclared keys) give the same answer."""
    validator = EventValidator()
    validator.register(
        "fast",
        {
            "type": "object",
            "properties": {"v": _string_schema(pattern)},
            "additionalProperties": False,
        },
    )
    validator.register("walk", {"type": "object", "properties": {"v": _string_schema(pattern)}})
    assert validator._schemas["fast"][1].fast is not None  # noqa: SLF001
    assert validator._schemas["walk"][1].fast is None  # noqa: SLF001
    for kind in ("fast", "walk"):
        if expected:
            assert validator.check(kind, {"v": text})[0] == {"v": text}
        else:
            with pytest.raises(ValidationError) as caught:
                validator.check(kind, {"v": text})
            (problem,) = caught.value.errors
            assert problem.path == "v"
            assert problem.message == f"must match {pattern!r}"  # the pattern as written


def test_audit_sku_with_trailing_newline_refused() -> None:
    validator = EventValidator()
    validator.register(
        "order",
        {
            "type": "object",
            "properties": {"sku": {"type": "string", "pattern": "^[A-Z]-[0-9]+$"}},
            "required": ["sku"],
        },
    )
    assert validator.check("order", {"sku": "A-1"})[0] == {"sku": "A-1"}
    with pytest.raises(ValidationError, match="must match"):
        validator.check("order", {"sku": "A-1\n"})
    validator.register("digits", {"type": "string", "pattern": "^\\d+$"})
    with pytest.raises(ValidationError):
        validator.check("digits", "\u0661\u0662")


def test_pattern_properties_keys_have_ecma_meaning() -> None:
    validator = EventValidator()
    validator.register(
        "counts",
        {
            "type": "object",
            "patternProperties": {"^\\d+$": {"type": "integer"}},
            "additionalProperties": False,
        },
    )
    assert validator.check("counts", {"12": 1})[0] == {"12": 1}
    for key in ("12\n", "\u0661"):
        with pytest.raises(ValidationError) as caught:
            validator.check("counts", {key: 1})
        assert caught.value.errors[0].message == "unexpected field"


def test_property_names_pattern_has_ecma_meaning() -> None:
    validator = EventValidator()
    validator.register("names", {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}})
    assert validator.check("names", {"ab": 1})[0] == {"ab": 1}
    with pytest.raises(ValidationError):
        validator.check("names", {"ab\n": 1})


def test_pattern_properties_beside_allof_and_extra_policy() -> None:
    """The patterns a combined schema declares decide what the policy calls extra."""
    validator = EventValidator(extra_fields="forbid")
    validator.register(
        "combined",
        {
            "allOf": [{"patternProperties": {"^x_\\w+$": {"type": "string"}}}],
            "properties": {"id": {"type": "string"}},
        },
    )
    assert validator.check("combined", {"id": "1", "x_a": "b"})[0] == {"id": "1", "x_a": "b"}
    with pytest.raises(ValidationError):
        validator.check("combined", {"id": "1", "x_é": "b"})
    with pytest.raises(ValidationError):
        validator.check("combined", {"id": "1", "x_a\n": "b"})


def test_required_key_matched_only_by_a_python_reading_is_refused_at_registration() -> None:
    """``required`` beside ``additionalProperties: false``: a key that only Python's
    ``$`` would let the pattern match is forbidden, so no object could be valid."""
    with pytest.raises(ConfigurationError, match="additionalProperties: false forbids"):
        EventValidator().register(
            "x",
            {
                "type": "object",
                "patternProperties": {"^a$": {}},
                "required": ["a\n"],
                "additionalProperties": False,
            },
        )


def test_ecma_class_syntax_registers_without_a_python_warning() -> None:
    """``[`` and doubled ``&``, ``|``, ``~``, ``-`` in a class are literal in ECMA-262;
    Python would warn of a future set operation (an error under -W error)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validator = EventValidator()
        validator.register("x", {"type": "string", "pattern": "^[[&&||~~+--]+$"})
    assert validator.check("x", "[&|~,")[0] == "[&|~,"


def test_invalid_pattern_still_refused_at_registration() -> None:
    with pytest.raises(ConfigurationError, match="not a valid regular expression"):
        EventValidator().register("x", {"type": "string", "pattern": "^[a-"})
    with pytest.raises(ConfigurationError, match="not a valid regular expression"):
        EventValidator().register("x", {"type": "string", "pattern": "a\\"})


def test_msgspec_meta_pattern_keeps_python_meaning() -> None:
    """A Python schema's pattern is the user's library's (msgspec: Python ``re``)."""
    validator = EventValidator()

    class Line(msgspec.Struct):
        sku: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]-\d+$")]
        strict: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]-\d+\Z")] = "A-1"

    validator.register("line", Line)
    assert validator.check("line", {"sku": "A-1\n"})[0] == {"sku": "A-1\n", "strict": "A-1"}
    with pytest.raises(ValidationError):
        validator.check("line", {"sku": "A-1", "strict": "A-1\n"})
