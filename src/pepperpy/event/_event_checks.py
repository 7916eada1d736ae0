"""What :class:`~pepperpy.event.Event` checks and copies of what it is given.

The constructor, ``replace()`` and :func:`~pepperpy.event._event.make_event` refuse a
type, id, source or subject no store can hold, a version out of range, a naive
timestamp and metadata that is not a mapping, each with an error naming what was wrong;
metadata, the one mutable part of an event, is copied so that no two events share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from ._errors import SerializationError
from ._frozen import FrozenDict, FrozenList, copy_nested, too_deep
from ._json_native import _SCALARS
from ._patterns import parse_topic
from ._text import MAX_NAME_BYTES, MAX_VERSION, name_limit, overflow_index, shown, text_problem

__all__: list[str] = []  # private helpers of _event and _cloudevents, imported by name


#: a type up to this many characters cannot pass the byte limit (4 bytes a character at
#: most), so only a longer one is measured: one len() on the hot path
LONG_TYPE = MAX_NAME_BYTES // 4

#: the attributes whose ``replace()`` runs the constructor's checks
_IDENTITY = frozenset({"type", "id", "version", "source", "subject"})


def _check_identity(changes: Mapping[str, Any]) -> None:
    """Apply the constructor's checks to a ``replace()`` of type, id, version, etc."""
    kind = changes.get("type", "x")
    if not isinstance(kind, str) or not kind:  # a str subclass: replace() takes its str
        raise TypeError(f"event type must be a non-empty str, got {kind!r}")
    _check_text(str.__str__(kind), "event type")
    event_id = changes.get("id", "x")
    if isinstance(event_id, UUID):
        event_id = str(event_id)
    if event_id.__class__ is not str or not event_id:
        raise TypeError(f"event id must be a non-empty str or a UUID, got {event_id!r}")
    _check_text(event_id, "event id")
    version = changes.get("version", 1)
    if version.__class__ is not int or not 1 <= version <= MAX_VERSION:
        raise _bad_version(version)
    _check_optional_text(changes.get("source"), "event source")
    _check_optional_text(changes.get("subject"), "event subject")


def _metadata_dict(metadata: Any) -> dict[str, Any]:
    """A copy of ``metadata`` as a dict; anything but a mapping is refused clearly.

    Its nested dicts and lists are copies too (:func:`_copy_metadata`): metadata is the
    part of an event handlers and middleware change, and a shallow copy shared them with
    the caller's dict, so that a change inside one (``event.metadata["tags"].append(...)``)
    changed the caller's, and every other event built from it (one dict of defaults passed
    to every ``emit``). Metadata holding a reference cycle, which no copy can hold, stays a
    shallow copy: it is refused when copied again or written, as before.
    """
    if metadata.__class__ is dict or isinstance(metadata, Mapping):
        copied = dict(metadata)
        for value in copied.values():
            if value.__class__ not in _SCALARS:
                try:
                    return _copy_metadata(copied)
                except SerializationError:  # a cycle: refused where it is copied or written
                    return copied
        return copied
    raise TypeError(
        f"metadata must be a mapping (dict) or None, got {type(metadata).__name__} "
        f"{metadata!r:.100} (in emit() and Event() it is the argument after data: an event "
        "carries one data value, so pass several values in one dict, such as "
        "{'a': 1, 'b': 2})"
    )


def _copy_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """A copy of metadata whose nested dicts and lists are copies too (other values shared).

    Metadata is the mutable part of an event, so a copy (``replace()``, ``to_dict()``) must
    not share nested containers with the original. Read-only containers are shared.
    """
    return {
        key: value
        if value.__class__ in _SCALARS
        else copy_nested(value, frozen=False, keep=_SHARED, what="metadata")
        for key, value in metadata.items()
    }


_SHARED = frozenset({FrozenDict, FrozenList})


def _check_text(text: str, what: str) -> None:
    """Refuse a name or identity no store can hold as it is (see ``_text``)."""
    problem = text_problem(text)
    if problem is not None:
        raise ValueError(f"{what} {shown(text)} {problem}")


def _check_long_type(kind: str) -> None:
    """Refuse an emitted type past the byte limit as the emit path refuses it: with
    :class:`~pepperpy.event.PatternError` (a ``ValueError``) naming the limit and where
    the type passes it (``make_event``, for types longer than :data:`LONG_TYPE`)."""
    if overflow_index(kind, name_limit(kind)) is not None:
        parse_topic(kind)  # raises: it measures the length first


def _check_optional_text(value: Any, what: str) -> None:
    """``value`` is None or a non-empty str a store can hold (CloudEvents' rule)."""
    if value is None:
        return
    if value.__class__ is not str or not value:
        raise TypeError(f"{what} must be a non-empty str or None, got {value!r}")
    _check_text(value, what)


def _bad_version(version: Any) -> ValueError | TypeError:
    """The error for a version that is no int (a bool included: ``TypeError``) or an int
    outside 1..MAX_VERSION (``ValueError``)."""
    message = f"event version must be an int from 1 to {MAX_VERSION}, got {version!r}"
    if version.__class__ is not int:
        return TypeError(message)
    return ValueError(message)


def _too_deep() -> SerializationError:
    return too_deep()


def _aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"{what} {value.isoformat()} is outside the range of datetime once in UTC"
        ) from None
