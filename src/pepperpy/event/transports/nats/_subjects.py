"""Topics and patterns as NATS subjects.

Topic ``a.b`` travels on subject ``<prefix>.a.b``. Our ``*`` is NATS ``*``. Our ``#``
(zero or more tokens) has no exact NATS equivalent: ``>`` needs at least one token and
must be last. A pattern with ``#`` therefore gets the narrowest single filter subject
that covers everything it can match, and the consumer checks each message's topic
against the pattern itself (acknowledging, without delivering, what does not match).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..._errors import ConfigurationError, PatternError
from ..._patterns import ANY, _match_tokens, parse_pattern, parse_topic

__all__ = ["SubjectFilter", "check_prefix", "subject_filter", "topic_subject"]

#: the one token NATS reads as a wildcard that our language treats as literal
_RESERVED_TOKEN = ">"


def check_prefix(prefix: str) -> str:
    """Validate a subject prefix: dot-separated literal tokens, no wildcards."""
    try:
        tokens = parse_topic(prefix)
    except PatternError as exc:
        raise ConfigurationError(f"invalid NATS subject prefix {prefix!r}: {exc.reason}") from exc
    if _RESERVED_TOKEN in tokens:
        raise ConfigurationError(f"invalid NATS subject prefix {prefix!r}: '>' is a wildcard")
    return prefix


@lru_cache(maxsize=4096)
def topic_subject(prefix: str, topic: str) -> str:
    """The subject a topic is published on; refuses topics NATS cannot carry."""
    tokens = parse_topic(topic)
    if _RESERVED_TOKEN in tokens:
        position = topic.index(_RESERVED_TOKEN)
        raise PatternError(topic, position, "'>' is a NATS wildcard, not a topic token")
    return f"{prefix}.{topic}"


@dataclass(frozen=True)
class SubjectFilter:
    """The consumer filter subject for a pattern, and whether to check topics locally."""

    subject: str
    exact: bool
    tokens: tuple[str, ...]

    def accepts(self, topic: str) -> bool:
        """True when ``topic`` matches the pattern (always true for exact filters)."""
        if self.exact:
            return True
        try:
            return _match_tokens(self.tokens, parse_topic(topic))
        except PatternError:
            return False


def subject_filter(prefix: str, pattern: str) -> SubjectFilter:
    """Map ``pattern`` onto one NATS filter subject under ``prefix``."""
    tokens = parse_pattern(pattern)
    if _RESERVED_TOKEN in tokens:
        position = pattern.index(_RESERVED_TOKEN)
        raise PatternError(pattern, position, "'>' is a NATS wildcard, not a topic token")
    if ANY not in tokens:
        return SubjectFilter(".".join((prefix, *tokens)), exact=True, tokens=tokens)
    first = tokens.index(ANY)
    head, rest = tokens[:first], tokens[first + 1 :]
    if all(token == ANY for token in rest):
        # the pattern also matches ``head`` itself, which ``head.>`` would not cover
        if not head:
            return SubjectFilter(f"{prefix}.>", exact=True, tokens=tokens)
        head = head[:-1]
    return SubjectFilter(".".join((prefix, *head, ">")), exact=False, tokens=tokens)
