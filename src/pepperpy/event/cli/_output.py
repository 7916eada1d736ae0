"""How the command prints events: one line each, easy to read and to ``grep``/``cut``.

``read`` prints ``POSITION TYPE DATA``; commands over the global log (``tail``,
``replay``) print ``GLOBAL_POSITION STREAM:POSITION TYPE DATA``. ``DATA`` is compact
JSON, so ``line.split(" ", 2)`` (or ``3``) recovers the fields. ``--json`` prints the
whole event as one JSON object per line instead.

Text that is not ours to trust (a stream name, an event type, an audit entry's
principal or target) is printed as one ``field``: as it is when it is plain, else as a
JSON string with every control, format and separator character escaped, so a value can
neither break a line in two, nor pass for several fields, nor reach the terminal as an
invisible character, a C1 control or a bidi override (``role.gran\u200bted`` would
otherwise print exactly like ``role.granted``).

A character that stdout's encoding cannot hold (a Windows console, ``PYTHONIOENCODING=
ascii``) is printed as a JSON escape (:func:`escaped`), never lost and never an error.
"""

from __future__ import annotations

import json
import unicodedata

from .. import _json
from .._event import Event
from .._frozen import thaw

__all__ = ["escaped", "event_json", "field", "global_line", "stream_line"]


def _data(event: Event) -> str:
    return _json.dumps(thaw(event.data)).decode()


def stream_line(event: Event) -> str:
    """``POSITION TYPE DATA`` for an event of a known stream."""
    return f"{event.position} {field(event.type)} {_data(event)}"


def global_line(event: Event) -> str:
    """``GLOBAL_POSITION STREAM:POSITION TYPE DATA`` for an event of the global log."""
    where = f"{field(event.stream)}:{event.position}"
    return f"{event.global_position} {where} {field(event.type)} {_data(event)}"


def event_json(event: Event) -> str:
    """The whole event (id, timestamp, metadata, positions) as one JSON line."""
    return _json.dumps(event.to_dict()).decode()


def _unsafe(char: str) -> bool:
    """Control, format, private, unassigned, or any separator other than a plain space."""
    category = unicodedata.category(char)
    return category[0] == "C" or (category[0] == "Z" and char != " ")


def field(text: str | None) -> str:
    """``text`` as one space-free field: as it is if plain, else quoted and escaped.

    ``None`` is ``-``; the text ``-``, empty text, and text with a space, a quote, a
    backslash or an unsafe character become a JSON string (``"mallory\\nroot"``).
    """
    if text is None:
        return "-"
    if text and text != "-" and not any(c in ' "\\' or _unsafe(c) for c in text):
        return text
    quoted = "".join(json.dumps(c)[1:-1] if c in '"\\' or _unsafe(c) else c for c in text)
    return f'"{quoted}"'


def escaped(line: str, encoding: str | None) -> str:
    """``line`` with each character ``encoding`` cannot hold written as a JSON escape.

    ``\\u6ce8``, or a surrogate pair (``\\ud83d\\ude00``) past U+FFFF, as ``json.dumps``
    writes them: ``DATA`` and ``--json`` output is still the same JSON (such characters
    are only ever inside its strings), and in a name the escape cannot be taken for the
    name's own text, since :func:`field` quotes any name that holds a backslash.
    """
    codec = encoding or "ascii"
    out: list[str] = []
    for char in line:
        try:
            char.encode(codec)
        except UnicodeEncodeError:
            out.append(json.dumps(char)[1:-1])
        else:
            out.append(char)
    return "".join(out)
