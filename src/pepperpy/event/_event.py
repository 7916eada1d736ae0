"""The immutable :class:`Event`.

Its CloudEvents 1.0 mapping is in :mod:`._cloudevents`, the checks it applies to what it
is given in :mod:`._event_checks`, and :func:`json_native` in :mod:`._json_native`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any
from uuid import UUID

from . import _json
from ._cloudevents import read_cloudevent, write_cloudevent
from ._event_checks import (
    _IDENTITY,
    LONG_TYPE,
    _aware,
    _bad_version,
    _check_identity,
    _check_long_type,
    _check_optional_text,
    _check_text,
    _copy_metadata,
    _metadata_dict,
    _too_deep,
)
from ._frozen import (
    _ATOMS,
    _INT_MAX,
    _INT_MIN,
    SHALLOW_JSON,
    FrozenDict,
    freeze,
    freeze_parsed,
    thaw,
)
from ._ids import CLOCK, COUNTER, format_event_id, format_uuid7, next_counter, now_ns
from ._json_native import json_native
from ._nested import flatten, nested_equal, nested_repr, unflatten
from ._text import MAX_VERSION

__all__ = [
    "Event",
    "freeze_parsed_fast",
    "json_native",
    "make_event",
    "restore_event",
    "restore_event_c",
    "stored_identity",
]  # json_native: re-exported

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_ONE_US = timedelta(microseconds=1)
#: the metadata keys of :meth:`Event.caused` (CloudEvents extension attribute names)
CORRELATION_ID = "correlationid"
CAUSATION_ID = "causationid"
_REPLACEABLE = frozenset(
    {"type", "data", "metadata", "id", "timestamp", "version", "source", "subject"}
)


class Event:
    """An immutable fact: something of ``type`` happened, carrying ``data``.

    ``data`` is deep-frozen (read-only mappings and lists). ``metadata`` is the one
    mutable part, a plain ``dict`` that middleware may enrich. Events read from a store
    also carry ``stream``, ``position``, ``global_position`` and ``recorded_at``.
    """

    __slots__ = ("_data", "_extra", "_id", "_metadata", "_ts", "_type", "_version")

    _type: str
    _data: Any
    _metadata: dict[str, Any] | None
    _id: int | str
    _ts: int | datetime
    _version: int
    _extra: tuple[Any, ...] | None

    # ``_id`` holds the UUIDv7 counter (an int) until first formatted to text, with the
    # millisecond taken from ``_ts``; ``_ts`` holds wall-clock nanoseconds (an int) until
    # first turned into a datetime;
    # ``_extra`` is None or (source, subject, stream, position, global_position,
    # recorded_at): rarely set, so plain emits stay cheap to build.

    def __init__(
        self,
        type: str,
        data: Any = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        id: str | UUID | None = None,
        timestamp: datetime | None = None,
        version: int = 1,
        source: str | None = None,
        subject: str | None = None,
    ) -> None:
        if type.__class__ is not str or not type:
            type = _plain_type(type)
        if "\x00" in type or not type.isascii() or len(type) > LONG_TYPE:
            _check_text(type, "event type")  # a NUL, a lone surrogate, over 1,024 bytes
        self._type = type
        try:
            self._data = freeze(data)
        except RecursionError:
            raise _too_deep() from None
        self._metadata = None if metadata is None else _metadata_dict(metadata)
        if id is None:
            counter = next_counter()
            if timestamp is None:
                self._ts = now_ns()
                self._id = counter
            else:  # the id still tells creation order, not the event's own time
                self._ts = _aware(timestamp, "timestamp")
                self._id = format_uuid7(now_ns() // 1_000_000, counter)
        elif id.__class__ is not str or not id:
            if not isinstance(id, UUID):
                raise TypeError(f"event id must be a non-empty str or a UUID, got {id!r}")
            self._id = str(id)  # its canonical text, as a store and the wire keep it
            self._ts = now_ns() if timestamp is None else _aware(timestamp, "timestamp")
        else:
            _check_text(id, "event id")
            self._id = id
            self._ts = now_ns() if timestamp is None else _aware(timestamp, "timestamp")
        if version.__class__ is not int or not 1 <= version <= MAX_VERSION:
            raise _bad_version(version)
        self._version = version
        if source is None and subject is None:
            self._extra = None
        else:
            _check_optional_text(source, "event source")
            _check_optional_text(subject, "event subject")
            self._extra = (source, subject, None, None, None, None)

    # -- construction used by backends (data already validated) -----------------------

    @classmethod
    def _restore(
        cls,
        type: str,
        data: Any,
        metadata: dict[str, Any] | None,
        id: str,
        timestamp: datetime,
        version: int = 1,
        source: str | None = None,
        subject: str | None = None,
        stream: str | None = None,
        position: int | None = None,
        global_position: int | None = None,
        recorded_at: datetime | None = None,
        *,
        parsed: bool = False,
    ) -> Event:
        """Rebuild an event read back from storage or the wire (no new id or time);
        ``parsed``: ``data`` is orjson's reading of JSON (see :func:`freeze_parsed`)."""
        event = _new(cls)
        event._type = type
        event._data = freeze_parsed(data) if parsed else freeze(data)
        event._metadata = metadata
        event._id = id
        event._ts = timestamp
        event._version = version
        if source is None and subject is None and stream is None:
            event._extra = None
        else:
            event._extra = (source, subject, stream, position, global_position, recorded_at)
        return event

    def _with_position(
        self, stream: str, position: int, global_position: int, recorded_at: datetime
    ) -> Event:
        """A copy of this event as recorded in ``stream`` (used by stores)."""
        event = self.replace()
        event._extra = (self.source, self.subject, stream, position, global_position, recorded_at)
        return event

    def replace(self, **changes: Any) -> Event:
        """Return a copy with the given public attributes changed (same id unless given).

        The copy is not positioned in any stream (it has not been recorded yet).
        """
        unknown = set(changes) - _REPLACEABLE
        if unknown:
            raise TypeError(f"replace() got unknown attribute(s): {', '.join(sorted(unknown))}")
        if not changes.keys().isdisjoint(_IDENTITY):
            _check_identity(changes)
        event = _new(Event)
        event._type = _plain_type(changes["type"]) if "type" in changes else self._type
        if "data" in changes:
            try:
                event._data = freeze(changes["data"])
            except RecursionError:
                raise _too_deep() from None
        else:
            event._data = self._data
        meta = changes.get("metadata", self._metadata)
        event._metadata = None if meta is None else _copy_metadata(_metadata_dict(meta))
        event._id = _id_text(changes["id"]) if "id" in changes else self.id
        if "timestamp" in changes:
            event._ts = _aware(changes["timestamp"], "timestamp")
        else:
            event._ts = self._ts
        event._version = changes.get("version", self._version)
        source = changes.get("source", self.source)
        subject = changes.get("subject", self.subject)
        event._extra = (
            None
            if source is None and subject is None
            else (source, subject, None, None, None, None)
        )
        return event

    def __replace__(self, **changes: Any) -> Event:
        """``copy.replace(event, **changes)`` (Python 3.13): :meth:`replace`."""
        return self.replace(**changes)

    def caused(
        self,
        type: str,
        data: Any = None,
        metadata: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Event:
        """A new event that this one caused: ``Event(type, data, metadata, **options)``
        whose metadata also says so. ``causationid`` is this event's id;
        ``correlationid`` is this event's own ``correlationid``, or its id when it has
        none, so every event of one chain carries the id of the first. Keys given in
        ``metadata`` win. Both names are CloudEvents extension attributes on the wire.
        """
        own = self._metadata
        correlation = None if own is None else own.get(CORRELATION_ID)
        links: dict[str, Any] = {
            CORRELATION_ID: correlation if isinstance(correlation, str) else self.id,
            CAUSATION_ID: self.id,
        }
        if metadata is not None:
            links.update(_metadata_dict(metadata))
        return Event(type, data, links, **options)

    # -- read-only attributes ---------------------------------------------------------

    @property
    def type(self) -> str:
        """The event type, a dot-separated topic such as ``user.created``."""
        return self._type

    @property
    def data(self) -> Any:
        """The payload, deep-frozen: mappings and lists cannot be modified."""
        return self._data

    @property
    def metadata(self) -> dict[str, Any]:
        """Context about the event (trace ids, principal, ...): the one mutable part."""
        value = self._metadata
        if value is None:
            value = self._metadata = {}
        return value

    @property
    def id(self) -> str:
        """Unique, time-ordered id (UUIDv7 text unless given explicitly)."""
        value = self._id
        if isinstance(value, int):
            ts = self._ts
            ms = ts // 1_000_000 if isinstance(ts, int) else (ts - _EPOCH) // _ONE_MS
            value = self._id = format_event_id(ms, value)
        return value

    @property
    def timestamp(self) -> datetime:
        """When the event happened: a timezone-aware UTC datetime."""
        value = self._ts
        if isinstance(value, int):
            value = self._ts = datetime.fromtimestamp(value // 1_000_000_000, UTC).replace(
                microsecond=(value // 1000) % 1_000_000
            )
        return value

    @property
    def version(self) -> int:
        """Schema version of ``data``."""
        return self._version

    @property
    def source(self) -> str | None:
        """Who produced the event (CloudEvents ``source``), if known."""
        extra = self._extra
        return None if extra is None else extra[0]

    @property
    def subject(self) -> str | None:
        """What the event is about within its source (CloudEvents ``subject``)."""
        extra = self._extra
        return None if extra is None else extra[1]

    @property
    def stream(self) -> str | None:
        """The stream this event was read from, for events read from a store."""
        extra = self._extra
        return None if extra is None else extra[2]

    @property
    def position(self) -> int | None:
        """0-based index inside its stream, for events read from a store."""
        extra = self._extra
        return None if extra is None else extra[3]

    @property
    def global_position(self) -> int | None:
        """Position in the store's global log, for events read from a store."""
        extra = self._extra
        return None if extra is None else extra[4]

    @property
    def recorded_at(self) -> datetime | None:
        """When the store recorded the event, for events read from a store."""
        extra = self._extra
        return None if extra is None else extra[5]

    # -- value semantics --------------------------------------------------------------

    # Comparing, printing and pickling walk ``data`` (up to MAX_DEPTH levels) with stacks
    # of their own (``_nested``) where Python's own recursion would run out of the
    # caller's stack: the answer is the same from a handler deep in recursion.

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        if self.id != other.id or self._type != other._type or self._version != other._version:
            return False
        try:
            return bool(self._data == other._data)
        except RecursionError:
            return nested_equal(self._data, other._data)

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        where = ""
        if self.stream is not None:
            where = f", stream={self.stream!r}, position={self.position!r}"
        try:
            data = repr(self._data)
        except RecursionError:
            data = nested_repr(self._data)
        return f"Event(type={self._type!r}, data={data}, id={self.id!r}{where})"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (and copied by ``copy``) as flat lists: ``data`` and ``metadata`` taken
        apart by :func:`~pepperpy.event._nested.flatten`, which pickle and deepcopy go
        through without recursion. Metadata holding a reference cycle raises
        :class:`SerializationError`, as in ``replace()``."""
        metadata = self._metadata
        return (
            Event._unpickle,
            (
                self._type,
                *flatten(self._data, "data"),
                *((None, None) if metadata is None else flatten(metadata, "metadata")),
                self.id,
                self.timestamp,
                self._version,
                *(self._extra or (None,) * 6),
            ),
        )

    @classmethod
    def _unpickle(
        cls,
        type: str,
        data_shape: list[int],
        data_leaves: list[Any],
        metadata_shape: list[int] | None,
        metadata_leaves: list[Any] | None,
        *rest: Any,
    ) -> Event:
        """An event from :meth:`__reduce__`'s flat form (``rest``: ``_restore``'s own)."""
        data = unflatten(data_shape, data_leaves)
        metadata = (
            None
            if metadata_shape is None or metadata_leaves is None
            else unflatten(metadata_shape, metadata_leaves)
        )
        return cls._restore(type, data, metadata, *rest)

    # -- dict form --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A plain, mutable dict of the event's attributes (the library's own form).

        ``data`` and ``metadata`` are mutable copies holding the values the event holds
        (a ``Decimal`` or ``datetime`` stays one); :meth:`to_json` gives JSON.
        """
        out: dict[str, Any] = {
            "id": self.id,
            "type": self._type,
            "data": thaw(self._data),
            "metadata": _copy_metadata(self.metadata),
            "timestamp": self.timestamp.isoformat(),
            "version": self._version,
        }
        if self.source is not None:
            out["source"] = self.source
        if self.subject is not None:
            out["subject"] = self.subject
        if self.stream is not None:
            out["stream"] = self.stream
            out["position"] = self.position
            out["global_position"] = self.global_position
            recorded_at = self.recorded_at
            if recorded_at is not None:
                out["recorded_at"] = recorded_at.isoformat()
        return out

    # -- CloudEvents 1.0 (structured mode, JSON format) --------------------------------

    def to_cloudevent(self) -> dict[str, Any]:
        """The CloudEvents 1.0 structured-mode JSON object for this event.

        Metadata entries whose key is a valid CloudEvents attribute name and whose value
        is a str, int or bool become extension attributes; the rest travel together in
        the ``pepperpymetadata`` extension (a JSON string) and come back as they were.
        ``data`` holds JSON values only: a datetime, Decimal, UUID or bytes inside it is
        given in its JSON form (a string), as :meth:`to_json` writes it.
        """
        ce = self._cloudevent()
        data = ce.get("data")
        if data is not None and not json_native(data):
            ce["data"] = _json.loads(_json.dumps(data))
        return ce

    _cloudevent = write_cloudevent  # to_cloudevent() with data as it is (_cloudevents)

    @classmethod
    def from_cloudevent(cls, obj: Mapping[str, Any]) -> Event:
        """Read a CloudEvents 1.0 structured-mode JSON object (as a mapping).

        Malformed input, whatever it holds, raises :class:`SerializationError` only: a
        transport reading events written by any producer skips such a message and goes on.
        That includes ``data`` and ``data_base64`` together (CloudEvents allows one) and a
        ``pepperpymetadata`` attribute that is not a JSON object (the error names it).
        """
        return cls._read_cloudevent(obj, parsed=False, shallow=False)

    _read_cloudevent = classmethod(read_cloudevent)  # from_cloudevent(), see _cloudevents

    def to_json(self) -> bytes:
        """The CloudEvents structured-mode JSON document, as UTF-8 bytes."""
        return _json.dumps(self._cloudevent())

    @classmethod
    def from_json(cls, raw: bytes | bytearray | memoryview | str) -> Event:
        """Read a CloudEvents structured-mode JSON document."""
        return cls._read_cloudevent(_json.loads(raw), parsed=True, shallow=len(raw) < SHALLOW_JSON)


def stored_identity(event: Event) -> tuple[str, int]:
    """What a store needs of an event's identity: (id, timestamp in us), no datetime built."""
    ts = event._ts
    return event.id, ts // 1000 if isinstance(ts, int) else (ts - _EPOCH) // _ONE_US


_new = object.__new__


def _make_event_py(type: str, data: Any, metadata: Mapping[str, Any] | None) -> Event:
    """Build an event on the hot emit path: what ``Event(type, data, metadata)`` does.

    :data:`make_event` is this function, or the same in C where the ``_cevent``
    extension was built (see :func:`_c_module`).
    """
    event: Event = _new(Event)
    if type.__class__ is not str or not type:
        type = _plain_type(type)
    if len(type) > LONG_TYPE:  # may pass the byte limit (the rest is the emit path's check)
        _check_long_type(type)
    event._type = type
    if data.__class__ is dict:
        # freeze()'s flat-dict fast path, inlined: the common payload costs one call less
        for key, item in data.items():
            kind = item.__class__
            if key.__class__ is not str or not (
                kind in _ATOMS
                or (kind is int and _INT_MIN <= item <= _INT_MAX)
                or (kind is float and item - item == 0.0)
            ):
                event._data = _freeze_nested(data)
                break
        else:
            event._data = FrozenDict(data)
    else:
        event._data = _freeze_nested(data)
    event._metadata = None if metadata is None else _metadata_dict(metadata)
    now = _time_ns()
    if now < CLOCK[0]:
        now = CLOCK[0]
    else:
        CLOCK[0] = now
    event._ts = now
    event._id = next_counter()
    event._version = 1
    event._extra = None
    return event


def _plain_type(kind: Any) -> str:
    """An event type given as a str subclass (a ``StrEnum`` member) as its plain str;
    ``TypeError`` for anything else but a non-empty str."""
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"event type must be a non-empty str, got {kind!r}")
    return str.__str__(kind)


def _freeze_nested(data: Any) -> Any:
    try:
        return freeze(data)
    except RecursionError:
        raise _too_deep() from None


_time_ns = time.time_ns  # looked up per call, by _cevent too: tests replace it


def _c_module() -> ModuleType | None:
    """The C versions of :func:`_make_event_py`, :func:`_restore_event_py` and
    :func:`~._frozen.freeze_parsed`, bound to this module's classes and helpers: they
    leave events in the very state the Python ones do (tests/core/test_cevent.py), in
    a third of the time or less. None where the extension was not built (no C compiler
    at install)."""
    try:
        from . import _cevent
    except ImportError:
        return None
    _cevent.bind(
        Event,
        FrozenDict,
        tuple(_ATOMS),
        _freeze_nested,
        _metadata_dict,
        _check_long_type,
        LONG_TYPE,
        CLOCK,
        COUNTER,
        globals(),
        freeze_parsed,
    )
    return _cevent


def _c_make_event() -> Callable[[str, Any, Mapping[str, Any] | None], Event] | None:
    """``make_event`` in C, or None where the extension was not built."""
    module = _c_module()
    return None if module is None else module.make_event


def _restore_event_py(
    type: str,
    data: Any,
    metadata: dict[str, Any] | None,
    id: int | str,
    ts: int | datetime,
    version: int,
    extra: tuple[Any, ...] | None,
) -> Event:
    """An event holding these seven values as they are: a store's read path, where each
    is checked or built already (``ts``: nanoseconds or an aware datetime, as ``_ts``)."""
    event: Event = _new(Event)
    event._type = type
    event._data = data
    event._metadata = metadata
    event._id = id
    event._ts = ts
    event._version = version
    event._extra = extra
    return event


_C = None if os.environ.get("PEPPERPY_EVENT_PURE_PYTHON") else _c_module()
#: build an event on the hot emit path: what ``Event(type, data, metadata)`` does
#: (in C unless the extension is missing or ``PEPPERPY_EVENT_PURE_PYTHON`` is non-empty)
make_event: Callable[[str, Any, Mapping[str, Any] | None], Event] = (
    _make_event_py if _C is None else _C.make_event
)
_Restore = Callable[
    [str, Any, dict[str, Any] | None, int | str, int | datetime, int, tuple[Any, ...] | None],
    Event,
]
#: :func:`_restore_event_py`, in C where built
restore_event: _Restore = _restore_event_py if _C is None else _C.restore
#: the same in C, or None (for a read path that inlines the Python version)
restore_event_c: _Restore | None = None if _C is None else _C.restore
#: :func:`~._frozen.freeze_parsed`, in C (for flat objects and scalars) where built
freeze_parsed_fast: Callable[[Any], Any] = freeze_parsed if _C is None else _C.freeze_parsed


def _id_text(event_id: Any) -> str:
    """An id given to ``replace()`` (checked already), as the constructor keeps it."""
    return str(event_id) if isinstance(event_id, UUID) else event_id
