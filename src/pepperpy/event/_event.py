"""The immutable :class:`Event` and its CloudEvents 1.0 mapping."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from . import _json
from ._errors import SerializationError
from ._frozen import (
    _ATOMS,
    _INT_MAX,
    _INT_MIN,
    MAX_DEPTH,
    SHALLOW_JSON,
    FrozenDict,
    FrozenList,
    check_json,
    copy_nested,
    freeze,
    freeze_parsed,
    nested_too_deep,
    thaw,
    too_deep,
    too_deep_read,
)
from ._ids import CLOCK, format_uuid7, next_counter, now_ns
from ._nested import flatten, nested_equal, nested_repr, unflatten
from ._text import MAX_VERSION, shown, text_problem

__all__ = ["Event", "make_event", "stored_identity"]

_DEFAULT_SOURCE = "pepperpy-event"
_VERSION_EXTENSION = "pepperpyversion"
_METADATA_EXTENSION = "pepperpymetadata"
_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")
#: CloudEvents context attributes (never written from metadata as extensions)
_RESERVED = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "datacontenttype",
        "data",
        "data_base64",
        _VERSION_EXTENSION,
        _METADATA_EXTENSION,
    }
)
#: optional attributes that metadata may carry through as themselves
_PASSTHROUGH = frozenset({"dataschema"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_ONE_US = timedelta(microseconds=1)
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
        id: str | None = None,
        timestamp: datetime | None = None,
        version: int = 1,
        source: str | None = None,
        subject: str | None = None,
    ) -> None:
        if type.__class__ is not str or not type:
            raise TypeError(f"event type must be a non-empty str, got {type!r}")
        if "\x00" in type or not type.isascii():
            _check_text(type, "event type")
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
            raise TypeError(f"event id must be a non-empty str, got {id!r}")
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
        event._type = changes.get("type", self._type)
        if "data" in changes:
            try:
                event._data = freeze(changes["data"])
            except RecursionError:
                raise _too_deep() from None
        else:
            event._data = self._data
        meta = changes.get("metadata", self._metadata)
        event._metadata = None if meta is None else _copy_metadata(_metadata_dict(meta))
        event._id = changes["id"] if "id" in changes else self.id
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
            value = self._id = format_uuid7(ms, value)
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
        """A plain JSON-able dict of the event's attributes (the library's own form)."""
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

    def _cloudevent(self) -> dict[str, Any]:
        """:meth:`to_cloudevent` with ``data`` as it is (the JSON encoder converts it)."""
        ce: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source or _DEFAULT_SOURCE,
            "type": self._type,
            "time": _rfc3339(self.timestamp),
        }
        if self.subject is not None:
            ce["subject"] = self.subject
        if self._version != 1:
            ce[_VERSION_EXTENSION] = self._version
        rest: dict[Any, Any] = {}
        for key, value in (self._metadata or {}).items():
            if (
                key.__class__ is str
                and key not in _RESERVED
                and _EXTENSION_NAME.fullmatch(key)
                and (value.__class__ in (str, bool) or _is_int32(value))
                and (key not in _PASSTHROUGH or (value.__class__ is str and value != ""))
            ):
                ce[key] = value
            else:
                rest[key] = value
        if rest:
            # the rules for data, so that nothing comes back other than it went in (a
            # non-str key would come back as text, or merged with the key it turns into)
            check_json(rest, "metadata")
            ce[_METADATA_EXTENSION] = _json.dumps(rest).decode()
        data = self._data
        if isinstance(data, bytes):
            ce["datacontenttype"] = "application/octet-stream"
            ce["data_base64"] = base64.b64encode(data).decode("ascii")
        elif data is not None:
            ce["datacontenttype"] = "application/json"
            ce["data"] = data
        return ce

    @classmethod
    def from_cloudevent(cls, obj: Mapping[str, Any]) -> Event:
        """Read a CloudEvents 1.0 structured-mode JSON object (as a mapping).

        Malformed input, whatever it holds, raises :class:`SerializationError` only: a
        transport reading events written by any producer skips such a message and goes on.
        """
        return cls._read_cloudevent(obj, parsed=False, shallow=False)

    @classmethod
    def _read_cloudevent(cls, obj: Mapping[str, Any], *, parsed: bool, shallow: bool) -> Event:
        """:meth:`from_cloudevent`; ``parsed``: ``obj`` is orjson's reading of JSON, whose
        data needs no checks but its depth (:func:`freeze_parsed`); ``shallow``: that
        JSON was too short to nest anything too deep (:data:`SHALLOW_JSON`)."""
        if not isinstance(obj, Mapping):
            kind = type(obj).__name__
            raise SerializationError(f"a CloudEvent must be a JSON object, got {kind}")
        spec = obj.get("specversion")
        if not isinstance(spec, str) or spec != "1.0":
            raise SerializationError(
                f"unsupported CloudEvents specversion {_quoted(spec)} (need '1.0')"
            )
        for attribute in ("id", "source", "type", "subject"):
            value = obj.get(attribute)
            if attribute == "subject" and (not isinstance(value, str) or not value):
                continue  # optional: anything but a non-empty string reads as none
            if not isinstance(value, str) or not value:
                raise SerializationError(
                    f"CloudEvent attribute {attribute!r} must be a non-empty string"
                )
            problem = text_problem(value)
            if problem is not None:
                raise SerializationError(f"CloudEvent attribute {attribute!r} {problem}")
        metadata: dict[str, Any] = {}
        packed = obj.get(_METADATA_EXTENSION)
        if packed is not None:
            restored = _json.loads(packed) if isinstance(packed, str) else packed
            if not isinstance(restored, dict):
                raise SerializationError(f"{_METADATA_EXTENSION} must hold a JSON object")
            metadata.update(restored)
        for key, value in obj.items():
            if key not in _RESERVED:
                metadata[key] = value
        if not shallow and nested_too_deep(metadata):  # no transport writes it (data: _restore)
            raise too_deep_read("metadata")
        raw_time = obj.get("time")
        timestamp = _parse_time(raw_time) if raw_time is not None else datetime.now(UTC)
        if "data_base64" in obj:
            data: Any = _decode_base64(obj["data_base64"])
        else:
            data = obj.get("data")  # a JSON string stays a string (CloudEvents JSON format)
        version = _read_version(obj.get(_VERSION_EXTENSION, 1))
        source = obj["source"]
        subject = obj.get("subject")
        return cls._restore(
            obj["type"],
            data,
            metadata,
            obj["id"],
            timestamp,
            version,
            None if source == _DEFAULT_SOURCE else source,
            subject if isinstance(subject, str) and subject else None,
            parsed=parsed,
        )

    def to_json(self) -> bytes:
        """The CloudEvents structured-mode JSON document, as UTF-8 bytes."""
        return _json.dumps(self._cloudevent())

    @classmethod
    def from_json(cls, raw: bytes | bytearray | memoryview | str) -> Event:
        """Read a CloudEvents structured-mode JSON document."""
        return cls._read_cloudevent(_json.loads(raw), parsed=True, shallow=len(raw) < SHALLOW_JSON)


#: values that a JSON round trip gives back as they are
_SCALARS = frozenset({str, int, float, bool, type(None)})


def json_native(value: Any, depth: int = 1) -> bool:
    """True when ``value`` survives a trip through JSON unchanged: no datetime, Decimal,
    UUID, bytes or enum member inside, which JSON carries as strings, no key other than
    a str, no string holding a lone surrogate, which UTF-8 JSON cannot carry at all
    (encoding such a value raises :class:`SerializationError`, as it should), and no
    nesting deeper than event data may have (``depth`` counts the lists and objects
    down to ``value``), which a reference cycle would be.

    A string costs one ``isascii()``; only non-ASCII text is encoded to look. The answer
    is the same whatever the depth of the caller's stack: a look that runs out of it is
    made again, without recursion.
    """
    cls = value.__class__
    if cls is str:
        return value.isascii() or _utf8(value)
    if cls in _SCALARS:
        return True
    if depth > MAX_DEPTH:
        return False
    try:
        if cls is FrozenDict or cls is dict:
            for key, item in value.items():
                if key.__class__ is not str or not (key.isascii() or _utf8(key)):
                    return False
                kind = item.__class__
                if kind is str:
                    if not (item.isascii() or _utf8(item)):
                        return False
                elif kind not in _SCALARS and not json_native(item, depth + 1):
                    return False
            return True
        if cls is FrozenList or cls is list or cls is tuple:
            for item in value:
                kind = item.__class__
                if kind is str:
                    if not (item.isascii() or _utf8(item)):
                        return False
                elif kind not in _SCALARS and not json_native(item, depth + 1):
                    return False
            return True
    except RecursionError:
        if depth > 1:
            raise
        return _json_native_by_levels(value)
    return False


def _json_native_by_levels(value: Any) -> bool:
    """:func:`json_native` for a container, looked into level by level (no recursion)."""
    level: list[Any] = [value]
    below: list[Any] = []  # the values under ``level`` other than JSON's scalars
    depth = 1  # the lists and objects down to ``level``'s
    while True:
        for value in level:
            cls = value.__class__
            if cls is FrozenDict or cls is dict:
                for key, item in value.items():
                    if key.__class__ is not str or not (key.isascii() or _utf8(key)):
                        return False
                    kind = item.__class__
                    if kind is str:
                        if not (item.isascii() or _utf8(item)):
                            return False
                    elif kind not in _SCALARS:
                        below.append(item)
            elif cls is FrozenList or cls is list or cls is tuple:
                for item in value:
                    kind = item.__class__
                    if kind is str:
                        if not (item.isascii() or _utf8(item)):
                            return False
                    elif kind not in _SCALARS:
                        below.append(item)
            else:
                return False
        if not below:
            return True
        if depth == MAX_DEPTH:  # deeper than event data may be (a cycle too)
            return False
        level, below = below, []
        depth += 1


def _utf8(text: str) -> bool:
    """True unless ``text`` holds a lone surrogate (not valid UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def stored_identity(event: Event) -> tuple[str, int]:
    """What a store needs of an event's identity: (id, timestamp in us), no datetime built."""
    ts = event._ts
    return event.id, ts // 1000 if isinstance(ts, int) else (ts - _EPOCH) // _ONE_US


#: the attributes whose ``replace()`` runs the constructor's checks
_IDENTITY = frozenset({"type", "id", "version", "source", "subject"})


def _check_identity(changes: Mapping[str, Any]) -> None:
    """Apply the constructor's checks to a ``replace()`` of type, id, version, etc."""
    kind = changes.get("type", "x")
    if kind.__class__ is not str or not kind:
        raise TypeError(f"event type must be a non-empty str, got {kind!r}")
    _check_text(kind, "event type")
    event_id = changes.get("id", "x")
    if event_id.__class__ is not str or not event_id:
        raise TypeError(f"event id must be a non-empty str, got {event_id!r}")
    _check_text(event_id, "event id")
    version = changes.get("version", 1)
    if version.__class__ is not int or not 1 <= version <= MAX_VERSION:
        raise _bad_version(version)
    _check_optional_text(changes.get("source"), "event source")
    _check_optional_text(changes.get("subject"), "event subject")


def _metadata_dict(metadata: Any) -> dict[str, Any]:
    """A copy of ``metadata`` as a dict; anything but a mapping is refused clearly."""
    if metadata.__class__ is dict or isinstance(metadata, Mapping):
        return dict(metadata)
    raise TypeError(f"metadata must be a mapping (dict) or None, got {metadata!r}")


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


def _check_optional_text(value: Any, what: str) -> None:
    """``value`` is None or a non-empty str a store can hold (CloudEvents' rule)."""
    if value is None:
        return
    if value.__class__ is not str or not value:
        raise TypeError(f"{what} must be a non-empty str or None, got {value!r}")
    _check_text(value, what)


def _bad_version(version: Any) -> ValueError:
    return ValueError(f"event version must be an int from 1 to {MAX_VERSION}, got {version!r}")


def _is_int32(value: Any) -> bool:
    """CloudEvents' Integer type is 32-bit; larger ints travel packed in metadata."""
    return value.__class__ is int and -(2**31) <= value < 2**31


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


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _read_version(raw: Any) -> int:
    """The ``pepperpyversion`` extension's value: an int, or its decimal text (as an
    extension attribute may carry it); anything else raises :class:`SerializationError`.

    Text is read only when it is ASCII digits and short enough to be in range: ``"²"``
    and the other Unicode digits pass ``str.isdigit()`` but not ``int()``, and ``int()``
    refuses text of more than 4,300 digits with a ValueError of its own.
    """
    version = raw
    if (
        raw.__class__ is str
        and 0 < len(raw) <= len(str(MAX_VERSION))
        and raw.isascii()
        and raw.isdigit()
    ):
        version = int(raw)
    if version.__class__ is not int or not 1 <= version <= MAX_VERSION:
        raise SerializationError(
            f"{_VERSION_EXTENSION} must be an int from 1 to {MAX_VERSION}, got {_quoted(raw)}"
        )
    return int(version)


def _quoted(value: Any) -> str:
    """``repr(value)`` for an error message about input: shortened, and never failing
    (the repr of an int of more than 4,300 digits raises, as may a foreign object's)."""
    try:
        text = repr(value)
    except Exception:
        if isinstance(value, int):
            return f"an int of {value.bit_length()} bits"
        return f"a {type(value).__name__} with no printable form"
    if len(text) <= 80:
        return text
    return f"{text[:60]}...{text[-10:]} ({len(text)} characters)"


def _parse_time(raw: Any) -> datetime:
    if isinstance(raw, datetime):
        try:
            return _aware(raw, "time")
        except ValueError as exc:  # naive, or out of range once in UTC
            raise SerializationError(f"CloudEvent 'time': {exc}") from None
    if not isinstance(raw, str):
        raise SerializationError(
            f"CloudEvent 'time' must be an RFC 3339 string, got {_quoted(raw)}"
        )
    try:
        parsed = datetime.fromisoformat(raw.upper())  # RFC 3339 allows "t" and "z"
    except ValueError as exc:
        raise SerializationError(f"CloudEvent 'time' is not RFC 3339: {_quoted(raw)}") from exc
    if parsed.tzinfo is None:
        raise SerializationError(f"CloudEvent 'time' has no UTC offset: {_quoted(raw)}")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise SerializationError(
            f"CloudEvent 'time' is outside the range of datetime once in UTC: {_quoted(raw)}"
        ) from None


def _decode_base64(raw: Any) -> bytes:
    if not isinstance(raw, str):
        raise SerializationError(f"CloudEvent 'data_base64' must be a string, got {_quoted(raw)}")
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError as exc:
        raise SerializationError(f"CloudEvent 'data_base64' is not valid base64: {exc}") from exc


_new = object.__new__


def make_event(type: str, data: Any, metadata: Mapping[str, Any] | None) -> Event:
    """Build an event on the hot emit path: what ``Event(type, data, metadata)`` does."""
    event: Event = _new(Event)
    if type.__class__ is not str or not type:
        raise TypeError(f"event type must be a non-empty str, got {type!r}")
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


def _freeze_nested(data: Any) -> Any:
    try:
        return freeze(data)
    except RecursionError:
        raise _too_deep() from None


_time_ns = time.time_ns
