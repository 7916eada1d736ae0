"""What a replay reports: its progress while it runs, what it did, and its failures.

:class:`ReplayProgress` goes to the ``progress`` callback of a running replay;
:class:`ReplayReport` is what ``replay_stream`` and ``replay_all`` return, and what
:class:`ReplayStopped` carries when ``on_error="stop"`` ends a replay at a failed event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._errors import ReplayError
from ._event import Event

__all__ = ["ReplayFailure", "ReplayProgress", "ReplayReport", "ReplayStopped"]


@dataclass(frozen=True, slots=True)
class ReplayFailure:
    """A handler that raised on an event (after its retries)."""

    event: Event
    handler: Callable[..., Any]
    exception: BaseException
    attempts: int


@dataclass(frozen=True, slots=True)
class ReplayProgress:
    """Where a running replay stands; passed to the ``progress`` callback.

    ``total`` is how many events a stream replay can read: the stream's visible events
    from its start position (0 for a missing or deleted stream), counted when it starts.
    It is ``None`` for ``replay_all``, and for ``replay_stream`` with ``types=``, whose
    length is not known in advance.
    """

    read: int
    replayed: int
    skipped: int
    failed: int
    position: int | None
    total: int | None
    elapsed: float


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a finished replay did.

    ``replayed``: events every matching handler handled; ``skipped``: events read but
    outside the time window or matched by no handler; ``failed``: events on which a
    handler raised. An event ``types=`` leaves out is not read, so it is in no count; nor
    is one ``replay_all`` never reads because its block of the log cannot hold an event
    of the time window.
    ``duration`` is in seconds; ``last_position`` is the position of the last event read
    (stream position for ``replay_stream``, global position for ``replay_all``), None if
    nothing was read. ``failures`` keeps the first 100.
    """

    replayed: int
    skipped: int
    failed: int
    duration: float
    last_position: int | None
    checkpoint: str | None = None
    failures: tuple[ReplayFailure, ...] = field(default=(), repr=False)

    @property
    def read(self) -> int:
        """Every event read from the store during this run."""
        return self.replayed + self.skipped + self.failed


class ReplayStopped(ReplayError):
    """A handler failed and ``on_error="stop"`` ended the replay; ``report`` says how far it got."""

    __module__ = "pepperpy.event"  # where it is imported from (and shown in tracebacks)

    def __init__(self, message: str, report: ReplayReport) -> None:
        super().__init__(message)
        self.report = report
