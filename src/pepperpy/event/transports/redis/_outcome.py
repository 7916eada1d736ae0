"""What a failed Redis publish says about its event: stored, not stored, or unknown.

A publish is one ``XADD``. redis-py sends it once it has a connection from the pool,
and the pool connects one (or checks an idle one) first: an error raised there, a
connection refused or a full pool, comes before anything was sent. An error after
that (no reply, a reset) leaves unknown whether Redis appended the entry.
"""

from __future__ import annotations

from types import TracebackType

from ..._errors import TransportError

__all__ = ["ON_PRIMARY", "UNKNOWN", "sent", "with_outcome"]

#: what a publish error adds when the event may have been stored
UNKNOWN = (
    "whether it was stored is unknown (publishing it again may deliver it twice: "
    "each XADD appends a new entry)"
)
#: what a publish error adds when Redis has the event but its replicas did not confirm it
ON_PRIMARY = "Redis has it (publishing it again would store it twice)"


def sent(error: BaseException) -> bool:
    """Whether the attempt that failed with ``error`` may have reached Redis.

    Not when it failed while redis-py's pool was getting it a connection (connecting
    to a Redis that refuses, or no free connection): the command goes out only after.
    A ``TimeoutError`` of ``asyncio.timeout`` is judged by where it cut the attempt
    off (its cause, the ``CancelledError``).
    """
    if isinstance(error, TimeoutError) and error.__cause__ is not None:
        error = error.__cause__
    return not _in_frame(error.__traceback__, "get_connection")


def _in_frame(tb: TracebackType | None, name: str) -> bool:
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == name and "redis" in code.co_filename:
            return True
        tb = tb.tb_next
    return False


def with_outcome(error: TransportError, *, unknown: bool) -> TransportError:
    """``error`` with ``stored`` set, and its message saying what it means."""
    said = UNKNOWN if unknown else "it was not stored"
    marked = TransportError(f"{error}; {said}")
    marked.stored = None if unknown else False
    return marked
