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

__all__ = ["MAX_NAME_BYTES", "MAX_VERSION", "overflow_index", "shown", "text_problem"]

#: the greatest event schema version (PostgreSQL's ``integer``, the narrowest column)
MAX_VERSION = 2**31 - 1

#: the longest name or identity, in UTF-8 bytes: PostgreSQL's B-tree indexes hold at most
#: 2,704 bytes a row, and its stream index pairs a stream name with an event id
#: (uncompressed, 2 x 1,024 bytes fit with room to spare). The same limit everywhere, so
#: that what one backend takes every backend takes.
MAX_NAME_BYTES = 1024


def overflow_index(text: str) -> int | None:
    """The index of the first character past :data:`MAX_NAME_BYTES`, or None if it fits."""
    if len(text) <= MAX_NAME_BYTES // 4:  # four bytes a character at the most
        return None
    if len(text.encode("utf-8", "surrogatepass")) <= MAX_NAME_BYTES:
        return None
    size = 0
    for index, char in enumerate(text):
        size += len(char.encode("utf-8", "surrogatepass"))
        if size > MAX_NAME_BYTES:
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
    if len(text) > MAX_NAME_BYTES // 4 and overflow_index(text) is not None:
        return f"is longer than {MAX_NAME_BYTES} bytes in UTF-8"
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a lone surrogate ({text[exc.start]!r}), which is not valid UTF-8"
    return None
