"""The metadata key marking a crypto-shredded event, reserved to the library.

An encrypted store reads an event whose data key was shredded with data None and
``metadata["pepperpyshredded"] = True`` (``store._store_decoding``), and
:class:`~pepperpy.event.middleware.ValidateMiddleware` passes such an event on without
validating it. So nobody else may put the key in an event: appending or publishing one
that carries it is refused, unless it is a shredded event as a store read gave it
(:func:`shredded_read`), which may be copied on as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import SerializationError

if TYPE_CHECKING:
    from ._event import Event

__all__ = ["SHREDDED_MARKER", "refuse_shredded_marker", "shredded_read"]

SHREDDED_MARKER = "pepperpyshredded"


def shredded_read(event: Event) -> bool:
    """Whether ``event`` is a shredded event as a store read gave it: positioned in a
    stream (no public constructor sets that), data None, and the marker exactly True."""
    return (
        event.data is None
        and event.stream is not None
        and event.metadata.get(SHREDDED_MARKER) is True
    )


def refuse_shredded_marker(what: str) -> SerializationError:
    """The error for ``what`` (``metadata``, ``headers``) carrying the reserved key."""
    return SerializationError(
        f"{what}: the key {SHREDDED_MARKER!r} is reserved (an encrypted store marks an event "
        "whose data key was shredded with it, and validation passes such events on "
        "unchecked); only a shredded event as a store read gave it (data None, read from "
        "a stream) may carry it: remove the key"
    )
