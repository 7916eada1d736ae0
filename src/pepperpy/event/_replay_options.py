"""What a replay or a projection is given, checked: the store, names, filters, pacing.

Both front ends (:class:`~pepperpy.event.EventReplay` and
:class:`~pepperpy.event.Projection`) check their arguments here, before a checkpoint
loads or a handler runs: the time window (:func:`parse_time`, :class:`TimeWindow`),
``types``/``streams`` patterns and how a stored type is matched against them (a stored
type that is not a valid topic matches nothing), checkpoint and projection names, the
start position and ``speed``. Here too: how a store, a checkpoint store and a handler
are named in messages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from ._checkpoints import CheckpointStore, SQLiteCheckpointStore
from ._errors import ConfigurationError, PatternError
from ._options import check_count, check_instance
from ._patterns import PatternIndex, matches, parse_pattern, plain_name
from ._text import shown, text_problem
from .store._store import MAX_POSITION
from .store.sqlite import SQLiteBackend

__all__ = [
    "Patterns",
    "TimeWindow",
    "check_name",
    "check_speed",
    "check_start_pos",
    "check_store",
    "checkpoint_key",
    "describe_checkpoints",
    "handler_name",
    "handlers_for",
    "parse_time",
    "patterns_of",
    "store_url",
    "type_matches",
]

T = TypeVar("T")
Patterns = str | Sequence[str] | None


# -- time windows ------------------------------------------------------------------------


def parse_time(value: datetime | str | None, what: str = "time") -> datetime | None:
    """An aware ``datetime`` from a datetime or an ISO-8601 string; None stays None.

    Naive values (no UTC offset) are refused with :class:`ValueError`, because guessing
    a timezone would silently shift the window by hours.
    """
    if value is None:
        return None
    if isinstance(value, str):
        parsed = _parse_iso(value, what)
    elif isinstance(value, datetime):
        parsed = value
    else:
        raise TypeError(
            f"{what} must be a datetime or an ISO-8601 string, got {type(value).__name__}"
        )
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        # a string is quoted as it was given (not as its parse would print it: a date alone
        # would read back with a time nobody typed)
        given = repr(value) if isinstance(value, str) else parsed.isoformat()
        raise ConfigurationError(
            f"{what} {given} is naive: give a timezone (e.g. a trailing Z for UTC)"
        )
    return parsed


#: the seconds' fraction of an ISO-8601 time (its first, and only, decimal fraction)
_FRACTION = re.compile(r"(?<=\d)[.,](\d+)")


def _parse_iso(value: str, what: str) -> datetime:
    """An ISO-8601 / RFC 3339 string as a datetime (naive if it has no offset).

    ``fromisoformat`` alone refused RFC 3339's lowercase ``t`` and ``z``, read a NUL before
    the offset as nothing (``"...00\\x00Z"`` was taken), and cut a fraction of more than
    six digits (nanoseconds, as Go and Java print them) down to microseconds: a start of
    ``.1234567`` then let in an event of ``.123456``, which is before it, and an end of
    ``.1234567`` left out that event, which is before it too. The fraction is now rounded
    *up* to the microsecond, which for timestamps in whole microseconds (all a datetime
    holds) keeps exactly the events of the window the string gives.
    """
    text = value.strip()
    if not text.isprintable() or not text.isascii():
        raise ConfigurationError(
            f"{what} {value!r} is not an ISO-8601 date-time: it holds a character no "
            "date-time has (e.g. 2023-01-01T00:00:00Z)"
        )
    text = text.upper()  # RFC 3339: "t" and "z" may be lowercase (as week dates' "w")
    late = False  # digits past the microsecond, not all zero: round up
    fraction = _FRACTION.search(text)
    if fraction is not None and len(fraction.group(1)) > 6:
        digits = fraction.group(1)
        late = digits[6:].strip("0") != ""
        text = text[: fraction.start(1) + 6] + text[fraction.end(1) :]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigurationError(
            f"{what} {value!r} is not an ISO-8601 date-time (e.g. 2023-01-01T00:00:00Z)"
        ) from exc
    if not late:
        return parsed
    if parsed.replace(tzinfo=None) == datetime.max:  # no microsecond after it: none to round to
        raise ConfigurationError(f"{what} {value!r} is past the last time a datetime holds")
    return parsed + _MICROSECOND


_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """``start`` inclusive, ``end`` exclusive, either open; compared to ``event.timestamp``."""

    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def of(cls, start: datetime | str | None, end: datetime | str | None) -> TimeWindow:
        """Parse both bounds (see :func:`parse_time`) and check that they are in order."""
        window = cls(parse_time(start, "start_time"), parse_time(end, "end_time"))
        if (
            window.start is not None
            and window.end is not None
            and _instant(window.start) > _instant(window.end)
        ):
            raise ConfigurationError(
                f"start_time {window.start.isoformat()} is after end_time {window.end.isoformat()}"
            )
        return window

    def __contains__(self, moment: datetime) -> bool:
        # events read from a store are in UTC: a comparison across zones, by instant
        if self.start is not None and moment < self.start:
            return False
        return self.end is None or moment < self.end


def _instant(moment: datetime) -> timedelta:
    """An aware datetime's instant, as the time since ``datetime.min`` in UTC.

    Python compares two datetimes of the *same* tzinfo by their wall clocks, offsets
    and ``fold`` ignored: two bounds in one ``ZoneInfo`` around a fall-back hour
    (01:30 EDT, then 01:10 EST, forty minutes later) compared as "start after end" and
    were refused, while the reverse, a start after its end, was taken and replayed
    nothing. A timedelta, not ``astimezone(UTC)``, which overflows in the years 1 and 9999.
    """
    offset = moment.utcoffset()
    assert offset is not None  # parse_time refused naive bounds
    return moment.replace(tzinfo=None) - datetime.min - offset


# -- the store, names and patterns -------------------------------------------------------


def check_store(store: object) -> None:
    """Refuse anything but an :class:`~pepperpy.event.EventStore` (a URL is told to open one)."""
    from .store import EventStore

    check_instance(store, EventStore, "store", from_url=True)


def store_url(store: object) -> str | None:
    """The URL an event store was opened with, if it tells, for the checkpoint store
    beside it: an SQLite store's with the absolute path of its file (a relative path
    would name another file once the working directory changed)."""
    url = getattr(store, "url", None)
    # a store built on a backend object reports "<BackendName>": no URL to share
    if not isinstance(url, str) or "://" not in url:
        return None
    backend = getattr(store, "backend", None)
    if isinstance(backend, SQLiteBackend):
        query = url.partition("?")[2]
        return f"sqlite:///{backend.path}" + (f"?{query}" if query else "")
    return url


def checkpoint_key(name: str) -> str:
    check_name(name, "a checkpoint name")
    return f"replay:{name}"


def check_name(name: object, what: str) -> None:
    """Refuse a checkpoint or projection name no backend can hold, as stream names are.

    A NUL or a lone surrogate (a file name read with ``surrogateescape``) was taken by
    the memory store, raised a bare ``UnicodeEncodeError`` on SQLite and a
    ``StoreError`` reading like an outage on PostgreSQL; it is refused here, the same on
    every backend, before a checkpoint is loaded or any handler runs.
    """
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a non-empty str, got {name!r}")
    if not name:
        raise ConfigurationError(f"{what} must be a non-empty str, got {name!r}")
    problem = text_problem(name)
    if problem is not None:
        raise ConfigurationError(f"{what} {shown(name)} {problem}")


def patterns_of(value: Patterns, what: str = "patterns") -> tuple[str, ...] | None:
    """``streams=`` or ``types=`` (named ``what``) as a tuple of patterns; None: all.

    An empty list is refused, as the store's ``read_all`` and ``subscribe`` refuse it:
    it used to select every event in ``replay_all`` and a projection, and none in
    ``replay_stream``.
    """
    if value is None:
        return None
    message = f"{what} must be a pattern (str) or a non-empty list of patterns, got {value!r}"
    if isinstance(value, bytes | bytearray | memoryview) or not isinstance(value, str | Iterable):
        raise TypeError(message)
    items = (value,) if isinstance(value, str) else tuple(value)
    if not items:
        raise TypeError(message)
    for item in items:
        parse_pattern(item)
    # an enum member as the plain str it holds: recorded in checkpoints, named in errors
    return tuple(plain_name(item) for item in items)


def handlers_for(index: PatternIndex[T], event_type: str) -> tuple[T, ...]:
    """What ``index`` holds for a stored event's type; nothing if it is not a valid topic.

    Older stores may hold such types; like the store's read filters, replay and
    projections let them match no pattern rather than fail on them.
    """
    try:
        return index.match(event_type)
    except PatternError:
        return ()


def type_matches(patterns: tuple[str, ...], event_type: str) -> bool:
    """True when a stored event's type matches one of ``patterns`` (already validated)."""
    try:
        return any(matches(pattern, event_type) for pattern in patterns)
    except PatternError:  # the type is not a valid topic: it matches no pattern
        return False


# -- positions and pacing ----------------------------------------------------------------


def check_start_pos(start_pos: int) -> int:
    """A replay's ``start_pos``: an int from 0 to the largest position a store holds; a
    value of another type (a bool included) is a ``TypeError``, an int out of range a
    :class:`ConfigurationError` (named ``start_pos``, not the store's ``from_position``)."""
    checked = check_count(start_pos, "start_pos", least=0)
    if checked > MAX_POSITION:
        raise ConfigurationError(
            f"start_pos must be an int from 0 to {MAX_POSITION}, got {start_pos!r}"
        )
    return checked


def check_speed(speed: object) -> float:
    """A replay's ``speed``: a factor > 0 (not seconds), never a bool (``True`` is 1).

    A value that is no number is a ``TypeError``; a number not > 0 (NaN included) a
    :class:`ConfigurationError`.
    """
    message = f"speed must be a number > 0 or None, got {speed!r}"
    if isinstance(speed, bool) or not isinstance(speed, int | float):
        raise TypeError(message)
    if not speed > 0:
        raise ConfigurationError(message)
    try:
        return float(speed)
    except OverflowError:  # an int past a float's range: as fast as can be
        return math.inf


# -- naming things in messages -----------------------------------------------------------


def describe_checkpoints(checkpoints: CheckpointStore) -> str:
    """A checkpoint store, for a message: an SQLite one's file and read-only option."""
    if isinstance(checkpoints, SQLiteCheckpointStore):
        mode = "immutable=1" if checkpoints.immutable else "mode=ro"
        return f"{str(checkpoints.path.absolute())!r} ({mode})"
    return type(checkpoints).__name__


def handler_name(function: Callable[..., Any]) -> str:
    return getattr(function, "__qualname__", None) or repr(function)
