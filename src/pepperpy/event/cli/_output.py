"""How the command prints events: one line each, easy to read and to ``grep``/``cut``.

``read`` prints ``POSITION TYPE DATA``; commands over the global log (``tail``,
``replay``) print ``GLOBAL_POSITION STREAM:POSITION TYPE DATA``. ``DATA`` is compact
JSON, so ``line.split(" ", 2)`` (or ``3``) recovers the fields. ``--json`` prints the
whole event as one JSON object per line instead.
"""

from __future__ import annotations

from .. import _json
from .._event import Event
from .._frozen import thaw

__all__ = ["event_json", "global_line", "stream_line"]


def _data(event: Event) -> str:
    return _json.dumps(thaw(event.data)).decode()


def stream_line(event: Event) -> str:
    """``POSITION TYPE DATA`` for an event of a known stream."""
    return f"{event.position} {event.type} {_data(event)}"


def global_line(event: Event) -> str:
    """``GLOBAL_POSITION STREAM:POSITION TYPE DATA`` for an event of the global log."""
    return f"{event.global_position} {event.stream}:{event.position} {event.type} {_data(event)}"


def event_json(event: Event) -> str:
    """The whole event (id, timestamp, metadata, positions) as one JSON line."""
    return _json.dumps(event.to_dict()).decode()
