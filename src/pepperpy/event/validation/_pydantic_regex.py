"""``pydantic.Field(pattern=...)`` (and ``StringConstraints(pattern=...)``) judged as
pydantic judges it, on a dataclass, TypedDict or plain class.

pydantic runs a ``str`` pattern with the Rust ``regex`` crate, whose meaning differs
from Python's ``re``: ``$`` is the end of the text only (Python's also matches before a
final newline, so ``^abc$`` would take ``"abc\\n"``), ``\\s`` and ``\\w`` are Unicode
properties that are not quite Python's, and it has syntax of its own (``\\pL``,
``[[:alpha:]]``, ``\\z``, class set operations) while refusing lookarounds and
backreferences. A compiled ``re.Pattern`` it runs with Python's ``re``, and so every
pattern of a class whose ``__pydantic_config__`` says ``regex_engine="python-re"``. Rather than
translate one engine into the other, the pattern is handed to pydantic-core itself
(installed: pydantic made the marker): one string validator per pattern, built once at
registration, whose ``isinstance_python`` is the verdict. A pattern pydantic refuses is
refused at registration, as pydantic refuses the schema.

msgspec cannot run it, so such a string is a hooked type on the fast path (see
``_fast``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .._errors import ConfigurationError

__all__ = ["pydantic_matcher", "pydantic_pattern_text"]


@functools.lru_cache(maxsize=1024)
def pydantic_matcher(pattern: Any, regex_engine: Any = None) -> Callable[[Any], bool]:
    """Whether a str matches ``pattern`` (a str or ``re.Pattern``) as pydantic decides,
    with the class config's ``regex_engine`` (None: pydantic's default)."""
    from pydantic_core import SchemaError, SchemaValidator, core_schema

    try:
        schema = core_schema.str_schema(pattern=pattern, regex_engine=regex_engine)
        validator = SchemaValidator(schema)
    except SchemaError as exc:
        reason = str(exc).strip().splitlines()[-1].strip()
        raise ConfigurationError(
            f"pydantic refuses the pattern {pydantic_pattern_text(pattern)!r} ({reason}); "
            "write it in the syntax of Rust's regex crate, which pydantic runs"
        ) from None
    matches: Callable[[Any], bool] = validator.isinstance_python
    return matches


def pydantic_pattern_text(pattern: Any) -> str:
    """The text of ``pattern`` (a str, or a compiled ``re.Pattern``'s source)."""
    return pattern if isinstance(pattern, str) else str(pattern.pattern)
