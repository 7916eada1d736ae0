"""What a failed NATS publish says about its event: stored, not stored, or unknown.

nats-py sends a request made while it reconnects once the connection is back, however
long that takes; a publish that gave up meanwhile could then be stored after its caller
was told it failed. So the transport never hands a message to a client that is not
connected (:class:`NotConnected`), and a publish that never found a connection knows
that its event was not stored.
"""

from __future__ import annotations

from ..._errors import TransportError

__all__ = [
    "UNKNOWN",
    "NotConnected",
    "failed",
    "full",
    "may_be_stored",
    "over_max_msg_size",
    "reason",
]

#: JetStream's error code for a message its stream could not store: above all a limit
#: reached with discard=new ("maximum messages exceeded", "maximum bytes exceeded")
STORE_FAILED = 10077

#: JetStream's error code for a message over its stream's ``max_msg_size``
MESSAGE_SIZE = 10054


#: what a publish error adds when the event may have been stored
UNKNOWN = (
    "whether it was stored is unknown (publishing it again may deliver it twice: "
    "JetStream deduplicates only the retries within one publish() call)"
)


class NotConnected(Exception):
    """A publish attempt not made: the client is reconnecting (or closed).

    nats-py would buffer the message and send it once it reconnects, even after the
    publish gave up and the caller was told so; the transport waits for the connection
    instead, so that a publish that never found one can say the event was not stored.
    """

    def __str__(self) -> str:
        return "not connected to NATS"


def failed(message: str, *, unknown: bool) -> TransportError:
    """A publish's :class:`TransportError`, saying whether the event may be stored."""
    error = TransportError(f"{message}; {UNKNOWN if unknown else 'it was not stored'}")
    error.stored = None if unknown else False
    return error


def may_be_stored(error: Exception) -> bool:
    """Whether the attempt that failed with ``error`` may have stored the message.

    Not if nothing was sent (no connection; nats-py refused it before sending), nor if
    the server answered with a refusal (no JetStream stream for the subject, or a
    JetStream error); anything else (no answer in time, above all) may have.
    """
    from nats.errors import (
        ConnectionClosedError,
        ConnectionDrainingError,
        MaxPayloadError,
        NoRespondersError,
        OutboundBufferLimitError,
    )
    from nats.js.errors import APIError

    not_sent = (
        NotConnected,
        ConnectionClosedError,
        ConnectionDrainingError,
        MaxPayloadError,
        OutboundBufferLimitError,
    )
    if isinstance(error, (*not_sent, NoRespondersError)):
        return False
    # a reply _store could not read (code None) says nothing about the message
    return not (isinstance(error, APIError) and error.code is not None)


def full(error: Exception) -> str | None:
    """JetStream's reason if ``error`` refuses a message its stream has no room for, with
    its code ("maximum messages exceeded, err_code 10077"); None for any other error.

    It comes as a 503, like JetStream being unavailable for a moment, but retrying does
    not make room (with ``discard=new`` the stream keeps what it has until ``max_age``,
    or until consumers acknowledge under interest retention).
    """
    from nats.js.errors import APIError

    if not isinstance(error, APIError) or error.err_code != STORE_FAILED:
        return None
    description = str(error.description or "")
    return f"{description}, err_code {STORE_FAILED}" if "exceeded" in description else None


def over_max_msg_size(error: Exception) -> bool:
    """Whether ``error`` is JetStream refusing a message over its stream's
    ``max_msg_size`` ("message size exceeds maximum allowed", err_code 10054): the same
    message is refused every time."""
    from nats.js.errors import APIError

    return isinstance(error, APIError) and error.err_code == MESSAGE_SIZE


def reason(error: Exception) -> str:
    """What a publish error says, for a message: a JetStream error's code and
    description (its repr has neither), or the error's repr."""
    from nats.errors import NoRespondersError
    from nats.js.errors import APIError

    if isinstance(error, NoRespondersError):
        return "nothing answers on the subject: no JetStream stream takes it (NoRespondersError)"
    return str(error) if isinstance(error, APIError) else repr(error)
