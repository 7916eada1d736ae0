"""What a failed Redis publish says about its event: stored, not stored, or unknown.

A publish is one ``XADD``, sent by :func:`~._dedupe.send_xadds` once it has a connected
connection from the pool: an error before that (a connection refused, a full pool) comes
before anything was sent. An error after it (no reply, a reset) leaves unknown whether
Redis appended the entry, until :class:`~._dedupe.Lookout` has looked (and made
sure no copy can still arrive): the :class:`~._dedupe.Publication` knows which.
"""

from __future__ import annotations

from ..._errors import TransportError
from ..._event import Event
from ..._oversize import OversizeError

__all__ = [
    "ON_PRIMARY",
    "OVER_SIZE",
    "UNKNOWN",
    "closed_on_refusal",
    "cut_by_refusal",
    "refused",
    "with_outcome",
]

#: what Redis answers (and then closes the connection) to a command with an argument
#: over its ``proto-max-bulk-len`` (512 MB by default, at least 1 MB)
OVER_SIZE = "Protocol error: invalid bulk length"

#: the attribute :func:`cut_by_refusal` sets on a connection error
_CUT_BY_REFUSAL = "pepperpy_cut_by_size_refusal"

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


def refused(event: Event, payload: bytes, error: BaseException, *, unknown: bool) -> TransportError:
    """The error of a publish of ``event`` (its JSON ``payload``) that Redis answered
    with ``error``: an :class:`OversizeError` for a message over the server's
    ``proto-max-bulk-len`` (Redis does not say the limit), which will be refused again,
    else a :class:`TransportError`; both with ``stored`` set (see :func:`with_outcome`)."""
    said = f"Redis refused to publish {event.type!r}: {error}"
    if OVER_SIZE not in str(error):
        return with_outcome(TransportError(said), unknown=unknown)
    marked = with_outcome(
        TransportError(
            f"{said} (its message is {len(payload):,} bytes, over the server's proto-max-bulk-len)"
        ),
        unknown=unknown,
    )
    return OversizeError(
        str(marked),
        size=len(payload),
        limit=None,
        source="Redis's proto-max-bulk-len",
        stored=marked.stored,
    )


def cut_by_refusal(error: BaseException) -> None:
    """Mark ``error``, the connection error of an ``XADD`` pipelined after one Redis
    refused as over its ``proto-max-bulk-len``: Redis closes the connection once it has
    answered that refusal, so the commands after it meet the close. Redis is reachable
    (it has just answered): retried, that is no outage (see :func:`closed_on_refusal`)."""
    setattr(error, _CUT_BY_REFUSAL, True)


def closed_on_refusal(error: BaseException | None) -> bool:
    """Whether ``error`` is a connection error :func:`cut_by_refusal` marked."""
    return getattr(error, _CUT_BY_REFUSAL, False) is True
