"""Deciding writes under a backend's write lock: snapshots, appends, group commits.

Every backend takes the same decisions, inside the lock or transaction its appends
and deletes take: whether a snapshot's version is a visible position of its stream
(:func:`check_snapshot_version`), whether an append is a retry or meets its expected
version (:func:`plan_append`), and, for the durable backends that commit several
callers' appends in one transaction, the plan of that group (:func:`plan_group`,
:class:`GroupPlan`) and how each caller's future is resolved (:func:`settle`). A
caller's appends to several streams (``append_streams``) are one :class:`MultiAppend`
in that plan, all or none; the memory backend plans one alone.

The types these decisions take and give are the backend contract's (:mod:`.base`),
which re-exports every name here: backends import them from there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, NamedTuple

from .._errors import ConcurrencyError, StreamDeletedError
from .base import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    ExpectedVersion,
    FreshRecord,
    NewRecord,
    StreamState,
)

__all__ = [
    "GroupPlan",
    "MultiAppend",
    "PendingAppend",
    "append_result",
    "check_snapshot_version",
    "plan_append",
    "plan_group",
    "settle",
]


def check_snapshot_version(stream: str, state: StreamState | None, version: int) -> None:
    """Refuse a snapshot at a position ``stream`` does not have (``ValueError``).

    Every backend calls this under the lock its appends and deletes take, in the write
    that saves the snapshot, so a saved snapshot's version is always a visible position
    of its stream: rehydrating from ``version + 1`` can never skip events.
    """
    last = None if state is None else state.version
    if state is None or last is None:
        missing = "is deleted" if state is not None and state.deleted else "has no events"
        raise ValueError(f"cannot snapshot {stream!r} at version {version}: the stream {missing}")
    if not state.first_visible <= version <= last:
        raise ValueError(
            f"cannot snapshot {stream!r} at version {version}: the stream's positions "
            f"are {state.first_visible} to {last}"
        )


def plan_append(
    stream: str,
    state: StreamState,
    expected: ExpectedVersion,
    ids: Sequence[str],
    existing: dict[str, tuple[int, int]],
) -> AppendResult | list[int]:
    """Decide an append; every backend calls this under its write lock.

    ``existing`` maps the ids of this batch that are already visible in the stream to
    their (position, global_position). When every id is there, the batch is a retry:
    the original :class:`AppendResult` comes back (that of its event with the greatest
    position, which the original append wrote last, whatever the order of the ids in
    the batch) and nothing is written. Otherwise the
    expectation is checked (raising :class:`ConcurrencyError` or
    :class:`StreamDeletedError`) and the indexes of the records still to write come
    back; the caller writes them from ``state.next_position`` on and, when
    ``state.deleted`` (a restart with ``NO_STREAM``), clears the deleted mark.
    """
    if existing and len(existing) == len(ids):
        # positions are unique in a stream: the greatest is the one written last
        position, global_position = max(existing.values())
        return AppendResult(position, global_position)
    actual = state.version
    if state.deleted and expected is not NO_STREAM:
        raise StreamDeletedError(
            f"stream {stream!r} was deleted; append with expected_version=NO_STREAM "
            "to start it again"
        )
    if expected is NO_STREAM:
        ok = actual is None
    elif expected is STREAM_EXISTS:
        ok = actual is not None
    elif expected is ANY:
        ok = True
    else:
        ok = actual == expected
    if not ok:
        raise ConcurrencyError(stream, expected, actual)
    return [index for index, event_id in enumerate(ids) if event_id not in existing]


class PendingAppend(NamedTuple):
    """One caller's append waiting in a group commit."""

    stream: str
    records: Sequence[NewRecord]
    expected_version: ExpectedVersion


class MultiAppend(NamedTuple):
    """One caller's appends to several streams (``append_streams``): all or none.

    In a group commit it is one unit: its expectations are all checked before any of
    its records is placed, a failure of one fails it alone (nothing of it written, the
    rest of the group untouched), and its records get consecutive global positions, its
    appends in order. Its streams are distinct.
    """

    appends: tuple[PendingAppend, ...]

    @classmethod
    def of(cls, appends: Sequence[PendingAppend]) -> MultiAppend:
        """The unit for ``appends``, refused (``ValueError``) unless their streams are
        distinct and there is one at least: planned against each stream's state once,
        two appends to one stream could both pass a check only one of them meets."""
        names = [append.stream for append in appends]
        if not names or len(set(names)) != len(names):
            raise ValueError(
                f"append_streams needs one append per stream, at least one; got {names!r}"
            )
        return cls(tuple(appends))


def parts(appends: Sequence[PendingAppend | MultiAppend]) -> list[PendingAppend]:
    """Every single-stream append of a group, a :class:`MultiAppend`'s in its place."""
    out: list[PendingAppend] = []
    for append in appends:
        if append.__class__ is MultiAppend:
            out.extend(append.appends)
        else:
            out.append(append)  # type: ignore[arg-type]
    return out


class GroupPlan:
    """The decisions for a group of appends committed in one transaction.

    :func:`plan_group` fills it: ``spans`` are (offset, stream, position, records), one per
    accepted append, whose records are written in order from stream ``position`` on, the
    record at group offset ``offset`` getting global position ``first + offset`` (``rows``
    lists them one by one);
    ``next_positions`` the streams' new counters; ``count`` how many rows. After the
    write, :meth:`outcomes` gives each caller its :class:`AppendResult` or exception.
    """

    __slots__ = ("_outcomes", "count", "next_positions", "spans")

    def __init__(self) -> None:
        #: (offset, stream, first position, records) per accepted append
        self.spans: list[tuple[int, str, int, Sequence[NewRecord]]] = []
        self.next_positions: dict[str, int] = {}
        self.count = 0
        # per caller: an exception, or (position, global position or -(offset + 1)), or
        # for a MultiAppend a list of those, one per stream
        self._outcomes: list[BaseException | tuple[int, int] | list[tuple[int, int]]] = []

    @property
    def rows(self) -> list[tuple[int, str, int, NewRecord]]:
        """(offset, stream, position, record) for every row to write, in order."""
        return [
            (offset + index, stream, position + index, record)
            for offset, stream, position, records in self.spans
            for index, record in enumerate(records)
        ]

    def outcomes(self, first: int) -> list[Any]:
        """Each caller's result, once the group's rows got positions from ``first`` on:
        an :class:`AppendResult` or exception, a list of results for a
        :class:`MultiAppend`."""
        out: list[Any] = []
        for outcome in self._outcomes:
            if isinstance(outcome, BaseException):
                out.append(outcome)
            elif isinstance(outcome, list):
                out.append([_result(first, *one) for one in outcome])
            else:
                out.append(_result(first, *outcome))
        return out

    def _place(
        self,
        stream: str,
        state: StreamState,
        records: Sequence[NewRecord],
        known: dict[tuple[str, str], tuple[int, int]],
    ) -> tuple[int, int]:
        """Put ``records`` at the stream's next positions and the group's next offsets."""
        count = self.count
        position = state.next_position
        self.spans.append((count, stream, position, records))
        for index, record in enumerate(records):
            if record.__class__ is not FreshRecord:  # a later retry in the group finds it
                known[(stream, record.id)] = (position + index, -(count + index + 1))
        count += len(records)
        position += len(records)
        state.next_position = position
        state.deleted = False
        self.next_positions[stream] = position
        self.count = count
        return (position - 1, -count)


def _result(first: int, position: int, global_position: int) -> AppendResult:
    if global_position < 0:
        global_position = first - global_position - 1
    return append_result(position, global_position)


def _existing(
    stream: str,
    records: Sequence[NewRecord],
    known: dict[tuple[str, str], tuple[int, int]],
) -> dict[str, tuple[int, int]]:
    """The records' ids already visible in ``stream``, with (position, global position)."""
    existing: dict[str, tuple[int, int]] = {}
    if known:
        for record in records:
            hit = known.get((stream, record.id))
            if hit is not None:
                existing[record.id] = hit
    return existing


_new_object = object.__new__
_set_field = object.__setattr__


def append_result(next_expected_version: int, global_position: int) -> AppendResult:
    """``AppendResult(...)`` without the frozen dataclass's slower ``__init__`` (hot path)."""
    result: AppendResult = _new_object(AppendResult)
    _set_field(result, "next_expected_version", next_expected_version)
    _set_field(result, "global_position", global_position)
    return result


def plan_group(
    appends: Sequence[PendingAppend | MultiAppend],
    states: dict[str, StreamState],
    known: dict[tuple[str, str], tuple[int, int]],
) -> GroupPlan:
    """Decide a group of appends in order, as if each ran in its own transaction.

    ``states`` holds the (locked) state of every stream involved, ``known`` the visible
    (stream, id) pairs of the group's ids with their (position, global_position). A
    caller whose expectation fails gets its exception and changes nothing; later callers
    see the effect of earlier ones (states and ids are updated as the plan goes). A
    :class:`MultiAppend` has every stream decided before any is placed: one failure
    fails it whole.
    """
    plan = GroupPlan()
    outcomes = plan._outcomes
    for append in appends:
        if append.__class__ is MultiAppend:
            try:
                outcomes.append(_plan_multi(plan, append, states, known))
            except (ConcurrencyError, StreamDeletedError) as exc:
                outcomes.append(exc)
            continue
        stream, records, expected = append  # type: ignore[misc]
        state = states.get(stream)
        if state is None:
            state = states[stream] = StreamState()
        existing = _existing(stream, records, known)
        chosen: Sequence[NewRecord] = records
        if existing or expected is not ANY or state.deleted:
            try:
                decision = plan_append(
                    stream, state, expected, [record.id for record in records], existing
                )
            except (ConcurrencyError, StreamDeletedError) as exc:
                outcomes.append(exc)
                continue
            if isinstance(decision, AppendResult):
                outcomes.append((decision.next_expected_version, decision.global_position))
                continue
            chosen = [records[index] for index in decision]
        outcomes.append(plan._place(stream, state, chosen, known))
    return plan


def _plan_multi(
    plan: GroupPlan,
    multi: MultiAppend,
    states: dict[str, StreamState],
    known: dict[tuple[str, str], tuple[int, int]],
) -> list[tuple[int, int]]:
    """Decide every stream of ``multi`` (raising the first failure, nothing placed),
    then place the records of those that are not retries, in order."""
    decisions: list[AppendResult | list[int]] = []
    for stream, records, expected in multi.appends:
        state = states.get(stream) or StreamState()
        ids = [record.id for record in records]
        decisions.append(
            plan_append(stream, state, expected, ids, _existing(stream, records, known))
        )
    placed: list[tuple[int, int]] = []
    for (stream, records, _), decision in zip(multi.appends, decisions, strict=True):
        if isinstance(decision, AppendResult):
            placed.append((decision.next_expected_version, decision.global_position))
            continue
        chosen = [records[index] for index in decision]
        placed.append(plan._place(stream, states.setdefault(stream, StreamState()), chosen, known))
    return placed


def settle(future: asyncio.Future[Any], outcome: Any) -> None:
    """Resolve ``future`` with ``outcome`` (a result, or the exception a write failed with).

    A future already done (its caller was cancelled) is left alone.
    """
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
