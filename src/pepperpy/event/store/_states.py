"""How a saved state is written: a stream's snapshot, a checkpoint's state.

A state is JSON under the rules for event data (``check_json``: no non-str keys, sets,
NaN or cycles), with one more: it may hold no ``bytes`` (nor ``bytearray`` or
``memoryview``), at the top or nested. JSON writes bytes as their base64 text, and a
state, unlike an event, has no metadata to mark them in (an event's whole-bytes payload
reads back as bytes thanks to that mark), so they read back as a str on every backend,
and code that worked on the state before it was saved met another type after. They are
refused before anything is written, with the path to them.
"""

from __future__ import annotations

from typing import Any

from .. import _json
from .._errors import SerializationError
from .._frozen import check_json, freeze

__all__ = ["encode_state"]


def encode_state(state: Any, what: str) -> bytes:
    """``state`` as the JSON a store saves, or :class:`SerializationError` (a
    ``TypeError``) naming ``what`` (``snapshot state``) and where in it the problem is."""
    try:
        frozen = freeze(state)
    except SerializationError:
        check_json(state, what)  # raises the same refusal, worded for ``what``
        raise
    _refuse_bytes(frozen, what)
    try:
        return _json.dumps(state)
    except SerializationError as exc:  # a lone surrogate: say what was being saved
        raise SerializationError(f"{what}: {exc}") from None


def _refuse_bytes(frozen: Any, what: str) -> None:
    """Raise for the first bytes in ``frozen`` (what ``freeze`` made of a state: dicts,
    lists and atoms, bytearray and memoryview turned into bytes, at most MAX_DEPTH deep)."""
    stack: list[tuple[Any, str]] = [(frozen, what)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            stack.extend((child, f"{where}[{key!r}]") for key, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((item[i], f"{where}[{i}]") for i in range(len(item) - 1, -1, -1))
        elif isinstance(item, bytes):
            raise SerializationError(
                f"{where}: bytes are not kept in a saved state (JSON holds them as base64 "
                "text, which would read back as a str, not bytes); store "
                "base64.b64encode(value).decode() and decode it after loading, or keep the "
                "bytes in an event's data, which reads back as bytes"
            )
