"""The CloudEvents 1.0 mapping of :class:`~pepperpy.event.Event` (structured mode, JSON).

:func:`write_cloudevent` and :func:`read_cloudevent` are the event's ``_cloudevent`` and
``_read_cloudevent`` (class attributes of :class:`Event`, so calling them costs what a
method defined in the class does); the public ``to_cloudevent``, ``from_cloudevent``,
``to_json`` and ``from_json`` stay on the class. Here too: which metadata travels as
extension attributes, and the reading of ``time``, ``data_base64`` and the
``pepperpyversion`` extension, every malformed input raising
:class:`~pepperpy.event.SerializationError`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import _json
from ._errors import SerializationError
from ._event_checks import _aware
from ._frozen import check_json, nested_too_deep, too_deep_read
from ._text import MAX_VERSION, text_problem

if TYPE_CHECKING:
    from ._event import Event

__all__ = ["read_cloudevent", "write_cloudevent"]

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
_PASSTHROUGH = frozenset({"dataschema", "datacontenttype"})
#: what ``datacontenttype`` is written as when metadata gives none: JSON data, or bytes
_JSON_TYPE = "application/json"
_BYTES_TYPE = "application/octet-stream"


def write_cloudevent(event: Event) -> dict[str, Any]:
    """:meth:`Event.to_cloudevent` with ``data`` as it is (the JSON encoder converts it)."""
    ce: dict[str, Any] = {
        "specversion": "1.0",
        "id": event.id,
        "source": event.source or _DEFAULT_SOURCE,
        "type": event._type,
        "time": _rfc3339(event.timestamp),
    }
    if event.subject is not None:
        ce["subject"] = event.subject
    if event._version != 1:
        ce[_VERSION_EXTENSION] = event._version
    data = event._data
    rest: dict[Any, Any] = {}
    for key, value in (event._metadata or {}).items():
        if (
            key.__class__ is str
            and (key not in _RESERVED or key == "datacontenttype")
            and _EXTENSION_NAME.fullmatch(key)
            and (value.__class__ in (str, bool) or _is_int32(value))
            and (key not in _PASSTHROUGH or _passes_through(key, value, data))
        ):
            ce[key] = value
        else:
            rest[key] = value
    if rest:
        # the rules for data, so that nothing comes back other than it went in (a
        # non-str key would come back as text, or merged with the key it turns into)
        check_json(rest, "metadata")
        ce[_METADATA_EXTENSION] = _json.dumps(rest).decode()
    if isinstance(data, bytes):
        if "datacontenttype" not in ce:
            ce["datacontenttype"] = _BYTES_TYPE
        ce["data_base64"] = base64.b64encode(data).decode("ascii")
    elif data is not None:
        if "datacontenttype" not in ce:
            ce["datacontenttype"] = _JSON_TYPE
        ce["data"] = data
    return ce


def _passes_through(key: str, value: Any, data: Any) -> bool:
    """Whether metadata ``key`` (``dataschema``, ``datacontenttype``) is written as the
    attribute: a non-empty str (CloudEvents requires one), and for ``datacontenttype``
    not the type written for ``data`` anyway, which travels packed so that reading it
    back (where the attribute holding that type is left out) restores it."""
    if value.__class__ is not str or value == "":
        return False
    return key != "datacontenttype" or value != _default_type(data)


def _default_type(data: Any) -> str | None:
    """The ``datacontenttype`` written for ``data`` when metadata gives none (none for
    no data)."""
    if data is None:
        return None
    return _BYTES_TYPE if isinstance(data, bytes) else _JSON_TYPE


def read_cloudevent(
    cls: type[Event], obj: Mapping[str, Any], *, parsed: bool, shallow: bool
) -> Event:
    """:meth:`Event.from_cloudevent`; ``parsed``: ``obj`` is orjson's reading of JSON,
    whose data needs no checks but its depth (:func:`~._frozen.freeze_parsed`);
    ``shallow``: that JSON was too short to nest anything too deep
    (:data:`~._frozen.SHALLOW_JSON`)."""
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
        restored = _read_packed_metadata(packed)
        metadata.update(restored)
    for key, value in obj.items():
        if key not in _RESERVED:
            metadata[key] = value
    content_type = obj.get("datacontenttype")
    if content_type is not None:
        # a producer's own type is kept, so that it is written back out: what a relay
        # sends on still says what its payload is; the type written for such data
        # anyway (an absent one reads as application/json, CloudEvents says) is not
        payload = b"" if "data_base64" in obj else obj.get("data")
        if content_type != _default_type(payload):
            metadata["datacontenttype"] = content_type
    if not shallow and nested_too_deep(metadata):  # no transport writes it (data: _restore)
        raise too_deep_read("metadata")
    raw_time = obj.get("time")
    timestamp = _parse_time(raw_time) if raw_time is not None else datetime.now(UTC)
    if "data_base64" in obj:
        if "data" in obj:  # CloudEvents: "MUST NOT be present when data_base64 is present"
            raise SerializationError(
                "CloudEvent has both 'data' and 'data_base64' (mutually exclusive: "
                "'data_base64' carries binary data, 'data' JSON data)"
            )
        data: Any = _decode_base64(obj["data_base64"])
    else:
        data = obj.get("data")  # a JSON string stays a string (CloudEvents JSON format)
    version = _read_version(obj.get(_VERSION_EXTENSION, 1))
    source = _plain(obj["source"])
    subject = obj.get("subject")
    return cls._restore(
        _plain(obj["type"]),
        data,
        metadata,
        _plain(obj["id"]),
        timestamp,
        version,
        None if source == _DEFAULT_SOURCE else source,
        _plain(subject) if isinstance(subject, str) and subject else None,
        parsed=parsed,
    )


def _plain(text: str) -> str:
    """``text`` as a plain str: a mapping built by code may hold a ``StrEnum`` or
    ``(str, Enum)`` member (an event type kept in an enum), which the event would keep
    as it is, so that ``str(event.type)`` printed ``Types.CREATED`` (CPython 3.12+) in
    logs, stores and ``to_dict()``, where ``Event()`` and ``emit`` keep the str it holds."""
    return text if text.__class__ is str else str.__str__(text)


def _read_packed_metadata(packed: Any) -> dict[str, Any]:
    """The ``pepperpymetadata`` extension's object (JSON text, or an object as given);
    anything else raises :class:`SerializationError` naming the attribute."""
    if isinstance(packed, str):
        try:
            restored = _json.loads(packed)
        except SerializationError as exc:
            raise SerializationError(
                f"CloudEvent attribute {_METADATA_EXTENSION!r} is not valid JSON: {exc}"
            ) from None
    else:
        restored = packed
    if not isinstance(restored, dict):
        raise SerializationError(
            f"CloudEvent attribute {_METADATA_EXTENSION!r} must hold a JSON object, "
            f"got {_quoted(restored)}"
        )
    return restored


def _is_int32(value: Any) -> bool:
    """CloudEvents' Integer type is 32-bit; larger ints travel packed in metadata."""
    return value.__class__ is int and -(2**31) <= value < 2**31


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
