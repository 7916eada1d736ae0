"""What ``Projection.follow()`` tells apart and says: outages to ride out, another
follower's commit, where the projection stands."""

from __future__ import annotations

from typing import TypeGuard

from ._errors import ConcurrencyError, EncryptionError, StoreError, StreamDeletedError

__all__ = ["is_outage", "standing", "taken_over"]


def is_outage(error: BaseException) -> TypeGuard[StoreError]:
    """True for a store failure that trying again may cure (a lost connection, a server
    restarting), not for a verdict that stays: another runner's commit, a deleted stream,
    a key that is missing or wrong."""
    return isinstance(error, StoreError) and not isinstance(
        error, ConcurrencyError | StreamDeletedError | EncryptionError
    )


def taken_over(name: str, conflict: ConcurrencyError) -> str:
    """What a follower that lost the compare-and-set of its save to another says."""
    return (
        f"projection {name!r}: another follower of this projection saved its state first "
        f"(global position {conflict.actual} on disk, {conflict.expected} expected): "
        "another process is running it, or another Projection object of that name; "
        "state and position are now as that one saved them. Run one follower per "
        "projection: one replica, or a leader lock that one process holds at a time"
    )


def standing(loaded: bool, position: int | None) -> str:
    """Where a projection stands, for an error or log line: ``loaded`` says whether
    ``position`` is the one on disk (else a save whose outcome is unknown came after)."""
    if loaded:
        return "before its first event" if position is None else f"at global position {position}"
    if position is None:
        return "(its saved position could not be loaded)"
    return f"at global position {position}, or later if its last save went through"
