"""What a failed Redis publish says about its event: stored, not stored, or unknown.

A publish is one ``XADD``, sent by :func:`~._dedupe.send_xadds` once it has a connected
connection from the pool: an error before that (a connection refused, a full pool) comes
before anything was sent. An error after it (no reply, a reset) leaves unknown whether
Redis appended the entry, until :class:`~._dedupe.Lookout` has looked (and made
sure no copy can still arrive): the :class:`~._dedupe.Publication` knows which.
"""

from __future__ import annotations

from ..._errors import TransportError

__all__ = ["ON_PRIMARY", "UNKNOWN", "with_outcome"]

#: what a publish error adds when the event may have been stored
UNKNOWN = (
    "whether it was stored is unknown (publishing it again may deliver it twice: "
    "each XADD appends a new entry)"
)
#: what a publish error adds when Redis has the event but its replicas did not confirm it
ON_PRIMARY = "Redis has it (publishing it again would store it twice)"


def with_outcome(error: TransportError, *, unknown: bool) -> TransportError:
    """``error`` with ``stored`` set, and its message saying what it means."""
    said = UNKNOWN if unknown else "it was not stored"
    marked = TransportError(f"{error}; {said}")
    marked.stored = None if unknown else False
    return marked
