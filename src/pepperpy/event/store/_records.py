"""Appended input as records: ``Event`` objects and dicts, validated and JSON-encoded.

What :meth:`EventStore.append <pepperpy.event.EventStore.append>` hands its backend. The
seed's form, ``{"type", "data", "metadata"?}``, takes a fast path that builds the record
directly (what ``Event()`` would do, without the object); everything else goes through
:class:`~pepperpy.event.Event`, so both refuse the same input with the same errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from .. import _json
from .._errors import PatternError, SerializationError, ValidationError, ValidationProblem
from .._event import Event, stored_identity
from .._frozen import check_json
from .._ids import format_uuid7, new_uuid7_texts, next_counter, now_ns
from .._patterns import parse_topic
from .._shredded import SHREDDED_MARKER, refuse_shredded_marker, shredded_read
from .base import FreshRecord, NewRecord

__all__ = ["BYTES_MARKER", "encode_data", "event_records"]

#: the stored-metadata key marking a whole-bytes payload, which is stored as its base64
#: text (a JSON string): reads strip it and give the bytes back (``_store_decoding``).
#: It lives in the stored record, so copies, exports and imports keep it, and over an
#: encrypted store it is bound to the envelope with the rest of the metadata. Reserved:
#: metadata given with this key is refused.
BYTES_MARKER = "pepperpybytes"
_MARK = b'"pepperpybytes":true}'
_BINARY = (bytes, bytearray, memoryview)

_DICT_KEYS = frozenset(
    {"type", "data", "metadata", "id", "timestamp", "version", "source", "subject"}
)


def event_records(
    event_or_events: Event | Mapping[str, Any] | Sequence[Event | Mapping[str, Any]],
) -> list[NewRecord]:
    """The records to append for one event or a batch: validated and JSON-encoded.

    Bad input raises :class:`ValidationError` (or :class:`SerializationError`) naming the
    event by its place (``$`` for one, ``$[i]`` in a batch); ids must be unique within a
    batch.
    """
    if event_or_events.__class__ is dict and event_or_events.keys() <= _PLAIN_KEYS:
        return [_plain_record(event_or_events, 0, True, now_ns())]
    if event_or_events.__class__ is Event:
        return [_event_record(event_or_events, "$")]
    if isinstance(event_or_events, Event | Mapping):
        items: Sequence[Any] = [event_or_events]
        single = True
    elif isinstance(event_or_events, list | tuple):
        items = event_or_events
        single = False
    else:
        raise _invalid(
            "$", "an Event, a dict or a list of them", repr(event_or_events), "not an event"
        )
    if not items:
        raise _invalid("$", "at least one event", items, "nothing to append")
    now = now_ns()  # the events given as dicts are created now, together
    if all(item.__class__ is dict and item.keys() <= _PLAIN_KEYS for item in items):
        return _plain_batch(items, now)
    records: list[NewRecord] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        if item.__class__ is dict and item.keys() <= _PLAIN_KEYS:
            records.append(_plain_record(item, index, single, now))  # a new id: no duplicate
            continue
        where = "$" if single else f"$[{index}]"
        event = item if isinstance(item, Event) else _from_mapping(item, where)
        record = _event_record(event, where)
        if record.id in seen:
            raise _invalid(f"{where}.id", "ids unique within a batch", record.id, "duplicate id")
        seen.add(record.id)
        records.append(record)
    return records


def _event_record(event: Event, where: str) -> NewRecord:
    """The record of an ``Event``; its id is the caller's, so the store looks it up.

    (Treating a new event's id as minted, as for dicts, would let a second append of the
    same object overtake the first on its way to the writer and be stored twice.)
    """
    if event.type not in _TOPICS:
        _check_type(event.type, where)
    event_id, micros = stored_identity(event)
    try:
        data = _held(_json.dumps(event.data))
        metadata = (
            _encode_metadata(event.metadata, shredded_read(event)) if event.metadata else None
        )
        if event.data.__class__ is bytes:  # frozen: bytes, whatever the payload was given as
            metadata = _marked(metadata)
    except SerializationError as exc:
        raise SerializationError(f"event {where} ({event.type!r}): {exc}") from exc
    return _new_record(
        NewRecord,
        (event_id, event.type, event.version, data, metadata, micros, event.source, event.subject),
    )


#: dict keys the fast path handles (the seed's form); anything else goes through Event
_PLAIN_KEYS = frozenset({"type", "data", "metadata"})
_new_record = tuple.__new__


def _plain_record(item: dict[str, Any], index: int, single: bool, now: int) -> NewRecord:
    """A record straight from ``{"type", "data", "metadata"?}``: what ``Event()`` would do.

    ``now`` (ns) is the event's timestamp; its id is minted here.
    """
    event_type = item.get("type")
    if event_type.__class__ is not str or not event_type:
        where = "$" if single else f"$[{index}]"
        raise _invalid(f"{where}.type", "a non-empty str", event_type, "missing event type")
    if event_type not in _TOPICS:
        _check_type(event_type, "$" if single else f"$[{index}]")
    data = item.get("data")
    metadata = item.get("metadata")
    try:
        encoded = encode_data(data)
        if metadata is None:
            encoded_metadata = None
        elif isinstance(metadata, Mapping):
            encoded_metadata = _encode_metadata(dict(metadata)) if metadata else None
        else:
            where = "$" if single else f"$[{index}]"
            raise _invalid(f"{where}.metadata", "a dict", metadata, "metadata must be a dict")
        if isinstance(data, _BINARY):
            encoded_metadata = _marked(encoded_metadata)
    except SerializationError as exc:
        where = "$" if single else f"$[{index}]"
        raise SerializationError(f"event {where} ({event_type!r}): {exc}") from exc
    return _new_record(
        FreshRecord,
        (
            format_uuid7(now // 1_000_000, next_counter()),
            event_type,
            1,
            encoded,
            encoded_metadata,
            now // 1000,
            None,
            None,
        ),
    )


def _plain_batch(items: Sequence[dict[str, Any]], now: int) -> list[NewRecord]:
    """Records for a batch given as plain dicts: ``_plain_record`` for many, ids in bulk."""
    ids = new_uuid7_texts(now // 1_000_000, len(items))
    micros = now // 1000
    records: list[NewRecord] = []
    append = records.append
    for index, item in enumerate(items):
        event_type = item.get("type")
        metadata = item.get("metadata")
        if (
            event_type.__class__ is not str
            or not event_type
            or metadata is not None
            or event_type not in _TOPICS
        ):
            # the rare and the wrong: the one-by-one path says what is wrong
            record = _plain_record(item, index, False, now)
            append(record._replace(id=ids[index]))
            continue
        data = item.get("data")
        try:
            encoded = encode_data(data)  # a right-sized copy already (see _held)
        except SerializationError as exc:
            raise SerializationError(f"event $[{index}] ({event_type!r}): {exc}") from exc
        if encoded[0] == 0x22 and isinstance(data, _BINARY):  # a JSON string: bytes?
            append(
                _new_record(
                    FreshRecord,
                    (ids[index], event_type, 1, encoded, _marked(None), micros, None, None),
                )
            )
            continue
        append(
            _new_record(FreshRecord, (ids[index], event_type, 1, encoded, None, micros, None, None))
        )
    return records


def _encode_metadata(metadata: dict[Any, Any], shredded: bool = False) -> bytes:
    """Metadata as JSON, under the rules for data: what is stored reads back the same.

    ``shredded``: the event is a shredded one as a store read gave it, which may keep
    its :data:`~.._shredded.SHREDDED_MARKER` (anyone else's is refused).
    """
    check_json(metadata, "metadata")
    if BYTES_MARKER in metadata:
        raise SerializationError(
            f"metadata: the key {BYTES_MARKER!r} is reserved (the store marks a bytes "
            "payload with it in the metadata it stores)"
        )
    if not shredded and SHREDDED_MARKER in metadata:
        raise refuse_shredded_marker("metadata")
    try:
        return _json.dumps(metadata)
    except SerializationError as exc:  # say it is the metadata, not the data
        raise SerializationError(f"metadata: {exc}") from exc


def _marked(metadata: bytes | None) -> bytes:
    """Stored metadata (a JSON object, or None) with :data:`BYTES_MARKER` added."""
    if metadata is None:
        return b"{" + _MARK
    return metadata[:-1] + b"," + _MARK  # a non-empty object: ``{...}``


def _held(encoded: bytes) -> bytes:
    """A right-sized copy of orjson's output, for records a batch holds until its commit.

    orjson writes into a 1 KiB buffer from the C allocator and shrinks it when done.
    Holding a thousand such results leaves the heap fragmented, and glibc hands its free
    top back to the kernel and takes it again on every batch: about one page fault
    (~4 us on this VM) per four events, measured. The copy (~0.08 us) comes from
    Python's small-object allocator, and the buffer is reused by the next call.
    """
    return b"%b" % (encoded,)


def encode_data(data: Any) -> bytes:
    """``data`` as JSON, refusing what ``Event()`` refuses (NaN, 65-bit ints, sets, ...).

    Plain JSON types encode in one orjson call with no check: orjson itself refuses
    non-str keys, ints beyond 64 bits and every other type. It writes NaN and
    infinity as ``null``, so output holding a ``null`` gets the full check. The data is
    encoded inside a list, one level more than it has, and cut out of it: orjson refuses
    documents nested more than 254 levels, so data nested more than ``MAX_DEPTH`` (253)
    is refused, as ``Event()`` refuses it (encoded alone, data 254 levels deep was
    stored, and every read of it failed: deeper than an event's data may be). The slice
    is a right-sized copy, so the result needs no :func:`_held`.
    """
    try:
        encoded: bytes = _orjson_dumps([data])[1:-1]
    except TypeError:  # a type beyond JSON's own (or a bad key): the slow, exact path
        check_json(data)
        return _json.dumps(data)
    if encoded.find(b"null") >= 0:  # find(), not ``in``: see ``_json.dumps``
        check_json(data)
    return encoded


_orjson_dumps = orjson.dumps


def _from_mapping(item: Any, where: str) -> Event:
    if not isinstance(item, Mapping):
        raise _invalid(where, "an Event or a dict", item, "not an event")
    unknown = set(item) - _DICT_KEYS
    if unknown:
        raise _invalid(
            where,
            "keys among " + ", ".join(sorted(_DICT_KEYS)),
            ", ".join(sorted(map(str, unknown))),
            "unknown key(s)",
        )
    event_type = item.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise _invalid(f"{where}.type", "a non-empty str", event_type, "missing event type")
    metadata = item.get("metadata")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise _invalid(f"{where}.metadata", "a dict", metadata, "metadata must be a dict")
    try:
        return Event(
            event_type,
            item.get("data"),
            metadata,
            id=item.get("id"),
            timestamp=item.get("timestamp"),
            version=item.get("version", 1),
            source=item.get("source"),
            subject=item.get("subject"),
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            raise
        if exc.__class__.__module__.startswith("pepperpy"):
            raise  # SerializationError etc. already say what is wrong
        raise _invalid(where, "a valid event", item, str(exc)) from exc


#: event types known to be valid topics (bounded; a hit costs a set lookup)
_TOPICS: set[str] = set()
_MAX_TOPICS = 4096


def _check_type(event_type: str, where: str) -> None:
    """Refuse an event type that is not a topic: patterns could never match it.

    Stored types are matched by store filters, subscriptions, replay and projections
    with the topic pattern language, so a type such as ``"Order Paid"`` is refused here,
    naming the reason, rather than stored and matched by nothing.
    """
    try:
        parse_topic(event_type)
    except PatternError as exc:
        problem = f"{exc.reason} (at {exc.position})"
        raise _invalid(
            f"{where}.type", "a topic (dot-separated tokens)", event_type, problem
        ) from None
    if len(_TOPICS) >= _MAX_TOPICS:
        _TOPICS.clear()
    _TOPICS.add(event_type)


def _invalid(path: str, expected: str, actual: Any, message: str) -> ValidationError:
    shown = actual if isinstance(actual, str) else repr(actual)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ValidationError(
        [ValidationProblem(path, expected, shown, message)], subject="event to append"
    )
