"""Which strings can name things: text every backend and broker can hold as it is.

PostgreSQL's ``text`` cannot hold NUL, SQLite's text functions (``json_each``, which the
SQLite store looks streams and ids up with) end a string at its first NUL, and a lone
surrogate (``"\\ud800"``) is not valid UTF-8, so no driver can send it. Names and
identities (event types, ids, sources, subjects, stream names and topics) are therefore
refused with either in them, when they are made, rather than stored differently by each
backend or refused from deep inside one. Payloads are JSON and are not affected: JSON
escapes a NUL, and the encoder refuses a lone surrogate with its own clear error.
"""

from __future__ import annotations

__all__ = [
    "DEAD_LETTER_PREFIX",
    "MAX_NAME_BYTES",
    "MAX_VERSION",
    "name_limit",
    "overflow_index",
    "shown",
    "text_problem",
]

#: the greatest event schema version (PostgreSQL's ``integer``, the narrowest column)
MAX_VERSION = 2**31 - 1

#: the longest name or identity, in UTF-8 bytes: PostgreSQL's B-tree indexes hold at most
#: 2,704 bytes a row, and its stream index pairs a stream name with an event id
#: (uncompressed, 2 x 1,024 bytes fit with room to spare). The same limit everywhere, so
#: that what one backend takes every backend takes.
MAX_NAME_BYTES = 1024

#: the prefix of dead-letter topics; a dead-letter topic may exceed :data:`MAX_NAME_BYTES` by
#: it, so that every topic can be dead-lettered
DEAD_LETTER_PREFIX = "deadletter."


def name_limit(text: str) -> int:
    """The byte limit for ``text``: :data:`MAX_NAME_BYTES`, plus the prefix of a dead letter."""
    if text.startswith(DEAD_LETTER_PREFIX):
        return MAX_NAME_BYTES + len(DEAD_LETTER_PREFIX)
    return MAX_NAME_BYTES


def overflow_index(text: str, limit: int = MAX_NAME_BYTES) -> int | None:
    """The index of the first character past ``limit`` bytes, or None if it fits."""
    if len(text) <= limit // 4:  # four bytes a character at the most
        return None
    if len(text.encode("utf-8", "surrogatepass")) <= limit:
        return None
    size = 0
    for index, char in enumerate(text):
        size += len(char.encode("utf-8", "surrogatepass"))
        if size > limit:
            return index
    return None  # unreachable: the whole text is longer


def shown(text: str) -> str:
    """``repr(text)``, shortened for messages when the text is long."""
    if len(text) <= 120:
        return repr(text)
    return f"{text[:60]!r}...{text[-20:]!r} ({len(text)} characters)"


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot name anything (a short reason), or None when it can.

    ASCII text, the usual case, costs one scan for NUL and no encoding.
    """
    if "\x00" in text:
        return "contains a NUL character ('\\x00')"
    if len(text) > MAX_NAME_BYTES // 4:
        limit = name_limit(text)
        if overflow_index(text, limit) is not None:
            return f"is longer than {limit} bytes in UTF-8"
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a lone surrogate ({text[exc.start]!r}), which is not valid UTF-8"
    return None
