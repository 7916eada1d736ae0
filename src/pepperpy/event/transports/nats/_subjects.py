"""Topics and patterns as NATS subjects.

An event of topic ``a.b`` travels on subject ``<prefix>.<lane>.a.b``. The lane token
is ``_`` for events published without a key and ``0`` .. ``partitions - 1`` (a stable
hash of the key) for keyed ones, so a group can consume each key lane strictly in
order while unkeyed events flow concurrently.

Our ``*`` is NATS ``*``. Our ``#`` (zero or more tokens) has no exact NATS equivalent:
``>`` needs at least one token and must come last. A pattern with ``#`` therefore gets
the narrowest single filter subject that covers everything it can match, and the
consumer checks each message's topic against the pattern itself (acknowledging,
without delivering, what does not match).

Subjects are bounded (:data:`MAX_SUBJECT_BYTES`): nats-server answers a protocol line
longer than its ``max_control_line`` with ``-ERR`` and closes the connection, which
nats-py then never reopens. A topic or pattern that would make a longer subject is
refused with :class:`PatternError` before anything is sent.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

from ..._errors import ConfigurationError, PatternError
from ..._patterns import ANY, _match_tokens, parse_pattern, parse_topic

__all__ = [
    "ANY_LANE",
    "DELIVER_ROOT",
    "MAX_PREFIX_BYTES",
    "MAX_SUBJECT_BYTES",
    "UNKEYED_LANE",
    "SubjectFilter",
    "check_prefix",
    "key_lane",
    "subject_filter",
    "topic_of",
    "topic_subject",
]

#: the one token NATS reads as a wildcard that our language treats as literal
_RESERVED_TOKEN = ">"
#: lane token of events published without a key
UNKEYED_LANE = "_"
#: first token of the subjects JetStream pushes a consumer's deliveries to
DELIVER_ROOT = "_PEPPERPY"
#: first tokens a prefix may not have, with why: the stream covers ``<prefix>.>``, and
#: would capture what travels there (``$``: NATS's own subjects, ``$JS.API`` included)
_RESERVED_ROOTS = {
    "_INBOX": "request replies (every publish's PubAck) travel on _INBOX.>",
    DELIVER_ROOT: f"the transport's deliveries travel on {DELIVER_ROOT}.>",
}
#: lane token matching every lane (NATS single-token wildcard)
ANY_LANE = "*"
#: the longest subject (``<prefix>.<lane>.<topic>``) sent, in UTF-8 bytes. nats-server
#: refuses protocol lines over ``max_control_line`` (4 KB by default), and a subject
#: travels in lines that carry more: a publish's reply subject and sizes; the
#: consumer-creation request ``$JS.API.CONSUMER.CREATE.<stream>.<consumer>.<filter>``
#: (a stream name may have 255 bytes); deliveries, with an ack subject naming the
#: stream. Half the default line leaves room for all of it.
MAX_SUBJECT_BYTES = 2048
#: the longest subject prefix, so that any topic up to 1,024 bytes (the bus's limit for
#: names), and its ``deadletter.`` copy, still fits in :data:`MAX_SUBJECT_BYTES`
MAX_PREFIX_BYTES = 256
#: the widest lane token ("63": partitions are at most 64), for a bound that does not
#: depend on the key
_LANE_BYTES = 2


def check_prefix(prefix: str) -> str:
    """Validate a subject prefix: dot-separated literal tokens, no wildcards.

    A prefix that is no ``str`` raises :class:`TypeError`, one that is no subject prefix
    :class:`ConfigurationError`."""
    if not isinstance(prefix, str):  # parse_topic's TypeError named "a topic"
        raise TypeError(f"the NATS subject prefix must be a str, got {prefix!r}")
    try:
        tokens = parse_topic(prefix)
    except PatternError as exc:
        raise ConfigurationError(f"invalid NATS subject prefix {prefix!r}: {exc.reason}") from exc
    if _RESERVED_TOKEN in tokens:
        raise ConfigurationError(f"invalid NATS subject prefix {prefix!r}: '>' is a wildcard")
    root = tokens[0]
    why = _RESERVED_ROOTS.get(root)
    if why is None and root.startswith("$"):
        why = "subjects starting with '$' are NATS's own (JetStream's API: $JS.>)"
    if why is not None:
        raise ConfigurationError(
            f"invalid NATS subject prefix {prefix!r}: the stream covers {prefix}.>, and {why}"
        )
    if len(prefix.encode()) > MAX_PREFIX_BYTES:
        raise ConfigurationError(
            f"NATS subject prefix {prefix[:40]!r}... is {len(prefix.encode())} bytes long;"
            f" at most {MAX_PREFIX_BYTES} leave room for topics in a subject"
        )
    return prefix


def _check_length(prefix: str, text: str) -> None:
    """Refuse a topic or pattern whose subject under ``prefix`` would be too long.

    Measured with the widest lane, so the answer does not depend on the key.
    """
    room = MAX_SUBJECT_BYTES - len(prefix.encode()) - _LANE_BYTES - 2  # two dots
    if len(text) <= room // 4:  # four bytes a character at the most
        return
    size = 0
    for index, char in enumerate(text):
        size += len(char.encode("utf-8", "surrogatepass"))
        if size > room:
            raise PatternError(
                text,
                index,
                f"too long for NATS: subjects '<prefix>.<lane>.<topic>' have at most "
                f"{MAX_SUBJECT_BYTES} bytes, which leaves {room} for a topic after the "
                f"prefix {prefix[:40]!r} ({len(text.encode('utf-8', 'surrogatepass'))} "
                "bytes)",
            )


def key_lane(key: str | None, partitions: int) -> str:
    """The lane token for ``key``: the same in every process (CRC-32 of the UTF-8 key)."""
    if key is None:
        return UNKEYED_LANE
    return str(zlib.crc32(key.encode()) % partitions)


@lru_cache(maxsize=8192)
def topic_subject(prefix: str, lane: str, topic: str) -> str:
    """The subject a topic is published on; refuses topics NATS cannot carry."""
    tokens = parse_topic(topic)
    if _RESERVED_TOKEN in tokens:
        position = topic.index(_RESERVED_TOKEN)
        raise PatternError(topic, position, "'>' is a NATS wildcard, not a topic token")
    _check_length(prefix, topic)
    return f"{prefix}.{lane}.{topic}"


def topic_of(subject: str, prefix_length: int) -> str:
    """The topic of a subject ``<prefix>.<lane>.<topic>`` (``prefix_length`` = len(prefix))."""
    lane_end = subject.find(".", prefix_length + 1)
    return subject[lane_end + 1 :] if lane_end > 0 else ""


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


def subject_filter(prefix: str, lane: str, pattern: str) -> SubjectFilter:
    """Map ``pattern`` onto one NATS filter subject under ``<prefix>.<lane>``."""
    tokens = parse_pattern(pattern)
    if _RESERVED_TOKEN in tokens:
        position = pattern.index(_RESERVED_TOKEN)
        raise PatternError(pattern, position, "'>' is a NATS wildcard, not a topic token")
    _check_length(prefix, pattern)
    if ANY not in tokens:
        return SubjectFilter(".".join((prefix, lane, *tokens)), exact=True, tokens=tokens)
    first = tokens.index(ANY)
    head, rest = tokens[:first], tokens[first + 1 :]
    if all(token == ANY for token in rest):
        # the pattern also matches ``head`` itself, which ``head.>`` would not cover
        if not head:
            return SubjectFilter(f"{prefix}.{lane}.>", exact=True, tokens=tokens)
        head = head[:-1]
    return SubjectFilter(".".join((prefix, lane, *head, ">")), exact=False, tokens=tokens)
