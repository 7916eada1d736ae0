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

__all__ = ["MAX_VERSION", "text_problem"]

#: the greatest event schema version (PostgreSQL's ``integer``, the narrowest column)
MAX_VERSION = 2**31 - 1


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot name anything (a short reason), or None when it can.

    ASCII text, the usual case, costs one scan for NUL and no encoding.
    """
    if "\x00" in text:
        return "contains a NUL character ('\\x00')"
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a lone surrogate ({text[exc.start]!r}), which is not valid UTF-8"
    return None
