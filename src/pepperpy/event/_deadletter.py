"""Dead letters on the bus: events that failed every attempt, moved to ``deadletter.<topic>``.

One place builds them, for the bus (a handler failed every retry) and for the broker
transports (an event was delivered too often without an acknowledgement, because its
consumers kept dying). The copy keeps the original's data and metadata, gets a new id,
and records why in metadata keys that are valid CloudEvents extension names.
"""

from __future__ import annotations

from ._event import Event
from ._ids import new_id
from ._text import DEAD_LETTER_PREFIX  # dead letters of topic t go to deadletter.t

__all__ = [
    "DEAD_LETTER_PREFIX",
    "DL_ATTEMPTS",
    "DL_GROUP",
    "DL_ORIGINAL_ID",
    "DL_REASON",
    "PARTITION_KEY",
    "REASON_LIMIT",
    "dead_letter_event",
    "shortened_reason",
]

#: metadata keys describing a dead letter
DL_REASON, DL_ATTEMPTS, DL_GROUP, DL_ORIGINAL_ID = "dlreason", "dlattempts", "dlgroup", "dlid"
#: the CloudEvents partitioning extension: the key that orders events within a group
PARTITION_KEY = "partitionkey"
#: characters of a failure's text a dead letter's ``dlreason`` keeps, at most
REASON_LIMIT = 4096


def shortened_reason(reason: str) -> str:
    """``reason`` (``ExceptionType: message``) cut to :data:`REASON_LIMIT` characters,
    saying how many more there were.

    An error's text has no bound (a response body, a rendered query, a validation error
    quoting its input), and the dead letter carries it: a small event whose handler
    raised a 2 MB message made a 2 MB dead letter, over NATS's ``max_payload``, so it was
    dropped instead of stored. The whole error stays in ``bus.dead_letters`` and the
    ERROR record.
    """
    if len(reason) <= REASON_LIMIT:
        return reason
    more = len(reason) - REASON_LIMIT
    return (
        f"{reason[:REASON_LIMIT]}... ({more:,} more characters, cut from the dead letter: "
        "the whole error is in the ERROR record and bus.dead_letters)"
    )


def dead_letter_event(
    event: Event, *, reason: str, attempts: int, group: str | None
) -> Event | None:
    """The dead-letter copy of ``event``, or None if it already is a dead letter.

    Dead letters are never dead-lettered again, so a failing ``deadletter.#`` handler
    cannot loop. What no UTF-8 encoder takes in ``reason`` (a lone surrogate, as in an
    error naming a file whose name ``os.fsdecode`` decoded) is escaped as ``\\udcff``:
    unescaped, no transport could publish the dead letter, and it would be lost.
    """
    if event.type.startswith(DEAD_LETTER_PREFIX):
        return None
    metadata = dict(event.metadata)
    metadata[DL_REASON] = reason.encode("utf-8", "backslashreplace").decode("utf-8")
    metadata[DL_ATTEMPTS] = attempts
    metadata[DL_ORIGINAL_ID] = event.id
    if group is not None:
        metadata[DL_GROUP] = group
    return event.replace(type=DEAD_LETTER_PREFIX + event.type, metadata=metadata, id=new_id())


def partition_key(event: Event) -> str | None:
    """The event's ordering key, if it has one."""
    key = event.metadata.get(PARTITION_KEY)
    return key if isinstance(key, str) else None
