"""The lines of an export file (:mod:`._store_export`): written, and read back checked.

Format version 2: a header line (``{"format":"pepperpy-event-export","version":2}``),
one JSON object per event, in global position order, then an end line
(``{"end":true,"events":N}``, N the event lines before it). The end line is what tells a
whole file from one cut off at a line break (an interrupted copy, ``head -n``, an export
killed while writing to a pipe): without it such a file would import without an error,
short of the events after the cut. Version 1 files (no end line) are still read; a cut
in one cannot be seen.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from .._errors import PatternError, StoreError
from .._frozen import MAX_DEPTH, SHALLOW_JSON, nested_too_deep
from .._patterns import parse_name
from .._text import shown, text_problem
from ._records import BYTES_MARKER
from .base import StoredRow

__all__ = [
    "FORMAT",
    "CutOff",
    "bad",
    "bad_file",
    "end_line",
    "event_line",
    "event_rows",
    "header_line",
]

#: the header line's ``format``
FORMAT = "pepperpy-event-export"
#: the version written; versions read: 1 (no end line) and 2
VERSION = 2
_READ = (1, 2)
#: an event line's keys, in the order of a stored row's columns
_FIELDS = (
    "global_position",
    "stream",
    "position",
    "id",
    "type",
    "version",
    "data",
    "metadata",
    "timestamp",
    "source",
    "subject",
    "recorded_at",
    "visible",
)
_LARGEST = 2**63 - 1
#: what a JSON value is called, by its Python type from orjson
_JSON_KINDS = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}
#: the timestamps an event can have, in microseconds since the epoch: datetime's years 1
#: to 9999 (UTC). Any other value was stored, and every read of the event then failed
#: ("year 148108 is out of range")
_FIRST_TIME, _LAST_TIME = -62_135_596_800_000_000, 253_402_300_799_999_999
#: the latest recorded_at read back (as a float of seconds: the last second's fraction
#: may round up to year 10000): 9999-12-31T23:59:59Z
_LAST_RECORDED = 253_402_300_799_000_000
_MISSING = object()


class CutOff(StoreError):
    """A version 2 file that ends without its end line: cut off at a line break.

    Its message says where; the import adds what was written (nothing, from a path).
    """

    def __init__(self, name: str, line: int, events: int) -> None:
        super().__init__(
            f"{name}: the file ends after line {line} without its end line: it was cut "
            f"off ({events} event{'' if events == 1 else 's'} read)"
        )


def header_line() -> str:
    return orjson.dumps({"format": FORMAT, "version": VERSION}).decode() + "\n"


def event_line(row: StoredRow) -> str:
    values = list(row[:13])
    values[6] = binascii.b2a_base64(bytes(row[6]), newline=False).decode()
    if row[7] is not None:
        values[7] = binascii.b2a_base64(bytes(row[7]), newline=False).decode()
    values[12] = bool(row[12])
    return orjson.dumps(dict(zip(_FIELDS, values, strict=True))).decode() + "\n"


def end_line(events: int) -> str:
    """The last line of a file of ``events`` event lines."""
    return orjson.dumps({"end": True, "events": events}).decode() + "\n"


def event_rows(lines: Iterable[str], name: str) -> Iterator[tuple[int, StoredRow]]:
    """Each event line of ``lines`` as (line number, stored row), checked; then, for a
    version 2 file, its end line (:class:`CutOff` when there is none)."""
    number, previous, version = 0, -1, 0
    end = 0  # the end line's number, once read
    events = 0
    following: dict[str, int] = {}  # each stream's next position, as the file goes
    try:
        for number, text in enumerate(lines, start=1):  # noqa: B007 (read after the loop)
            if number == 1:
                version = _check_header(_without_bom(text), name)
                continue
            if end:
                raise bad(
                    name,
                    number,
                    f"a line after the end line (line {end}): an export ends with its end line",
                )
            if not text.strip():
                raise bad(name, number, "an empty line")
            value = _object(text, name, number)
            if version >= 2 and "end" in value:
                _check_end(value, events, name, number)
                end = number
                continue
            row = _parse(value, name, number)
            if row[0] <= previous:
                raise bad(
                    name,
                    number,
                    f"global_position {row[0]} does not follow {previous} (the events must "
                    "be in increasing global positions)",
                )
            expected = following.get(row[1], 0)
            if row[2] != expected:
                raise bad(
                    name,
                    number,
                    f"the event at global position {row[0]} is at position {row[2]} of stream "
                    f"{row[1]!r}, whose next position in this file is {expected} (an export "
                    "holds each stream's events from position 0, one after another)",
                )
            following[row[1]] = expected + 1
            previous = row[0]
            events += 1
            yield number, row
    except UnicodeDecodeError as exc:
        raise StoreError(f"{name} line {number + 1}: not UTF-8 text ({exc.reason})") from None
    if number == 0:
        raise StoreError(f"{name} is empty: an export starts with its header line")
    if version >= 2 and not end:
        raise CutOff(name, number, events)


def _without_bom(text: str | bytes) -> Any:
    """The first line without the UTF-8 byte order mark that Windows tools (Notepad,
    PowerShell's ``Out-File -Encoding utf8``) write at the start of a file: as a
    character from a text stream or a path, as its three bytes from a binary stream."""
    if isinstance(text, str):
        return text.removeprefix("\ufeff")
    return text.removeprefix(b"\xef\xbb\xbf")


def _check_header(text: str, name: str) -> int:
    """The version of the file whose first line is ``text``."""
    try:
        header = orjson.loads(text)
    except orjson.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise bad(
            name, 1, f"not a pepperpy-event export (its first line must be {header_line().strip()})"
        )
    # an int exactly: JSON's true and 1.0 are equal to 1 in Python, and were taken for it
    version = header.get("version", _MISSING)
    if type(version) is not int or version not in _READ:
        got = "no such field" if version is _MISSING else orjson.dumps(version).decode()
        got = got if len(got) <= 40 else f"{got[:30]}... ({len(got)} characters)"
        raise bad(
            name,
            1,
            f'the header\'s "version" must be the integer {" or ".join(map(str, _READ))} '
            f"(the export format versions this pepperpy-event reads), got {got}",
        )
    return version


def _check_end(value: dict[str, Any], events: int, name: str, number: int) -> None:
    """The end line (``value``, line ``number``), after ``events`` event lines."""
    claimed = value.get("events")
    if (
        set(value) != {"end", "events"}
        or value["end"] is not True
        or isinstance(claimed, bool)
        or not isinstance(claimed, int)
    ):
        raise bad(
            name,
            number,
            f"an end line must be {end_line(events).strip()} (with its count of event "
            f"lines), got {shown(orjson.dumps(value).decode())}",
        )
    if claimed != events:
        raise bad(
            name,
            number,
            f"the end line counts {claimed} event lines, the file has {events} before it "
            "(lines were removed or added)",
        )


def bad(name: str, number: int, why: str) -> StoreError:
    return StoreError(f"{name} line {number}: {why}; nothing of its batch was written")


def bad_file(exc: StoreError) -> StoreError:
    """A bad line found by the read through a file before the import: nothing at all
    was written."""
    return StoreError(str(exc).replace("nothing of its batch was written", "nothing was written"))


def _object(text: str, name: str, number: int) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise bad(name, number, f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise bad(name, number, f"not a JSON object but {type(value).__name__}")
    return value


def _parse(value: dict[str, Any], name: str, number: int) -> StoredRow:
    missing = [key for key in _FIELDS if key not in value]
    if missing:
        raise bad(name, number, f"missing {', '.join(missing)}")
    extra = sorted(set(value) - set(_FIELDS))
    if extra:
        raise bad(name, number, f"unknown field {', '.join(map(repr, extra))}")

    def number_of(key: str, low: int, high: int = _LARGEST, unit: str = "") -> int:
        found = value[key]
        if isinstance(found, bool) or not isinstance(found, int) or not low <= found <= high:
            raise bad(
                name, number, f"{key} must be an integer from {low} to {high}{unit}: {found!r}"
            )
        return found

    def text_of(key: str, *, optional: bool = False, named: bool = False) -> Any:
        found = value[key]
        if found is None and optional:
            return None
        if not isinstance(found, str) or not found:
            raise bad(name, number, f"{key} must be a non-empty string, got {found!r}")
        problem = None if named else text_problem(found)  # as an Event checks it
        if problem is not None:
            raise bad(name, number, f"{key} {shown(found)} {problem}")
        if named:
            try:
                parse_name(found, key)
            except PatternError as exc:
                raise bad(name, number, f"{key} {found!r}: {exc}") from None
        return found

    def json_of(key: str, *, optional: bool = False) -> bytes | None:
        """A base64 field that holds JSON, as every event's data and metadata do (an
        encrypted event's data too: its envelope is JSON), no deeper than an event's may
        be; metadata (``optional``) is a JSON object, as every store writes it (an event's
        metadata is a dict: a list read back as its metadata broke ``.get()``)."""
        found = bytes_of(key, optional=optional)
        if found is not None:
            try:
                parsed = orjson.loads(found)
            except orjson.JSONDecodeError as exc:
                raise bad(name, number, f"{key} is base64 but not of JSON ({exc})") from None
            if optional and not isinstance(parsed, dict):  # as every store writes it
                raise bad(
                    name,
                    number,
                    f"{key} must be null or base64 of a JSON object, got base64 of a JSON "
                    f"{_JSON_KINDS.get(type(parsed), type(parsed).__name__)}",
                )
            # read back, it would fail every read over the event (SerializationError)
            if len(found) >= SHALLOW_JSON and nested_too_deep(parsed):
                raise bad(
                    name,
                    number,
                    f"{key} is nested more than {MAX_DEPTH} levels of lists and objects "
                    f"deep, deeper than an event's {key} may be",
                )
            parsed_json[key] = parsed
        return found

    def bytes_of(key: str, *, optional: bool = False) -> bytes | None:
        found = value[key]
        if found is None and optional:
            return None
        if not isinstance(found, str):
            raise bad(name, number, f"{key} must be a base64 string, got {found!r}")
        try:
            return binascii.a2b_base64(found, strict_mode=True)
        except binascii.Error as exc:
            raise bad(name, number, f"{key} is not base64 ({exc})") from None

    visible = value["visible"]
    if not isinstance(visible, bool):
        raise bad(name, number, f"visible must be true or false, got {visible!r}")
    parsed_json: dict[str, Any] = {}  # data's and metadata's JSON, parsed
    row = (
        number_of("global_position", 0),
        text_of("stream", named=True),
        number_of("position", 0),
        text_of("id"),
        text_of("type", named=True),
        number_of("version", 1, 2**31 - 1),
        json_of("data"),
        json_of("metadata", optional=True),
        number_of(
            "timestamp", _FIRST_TIME, _LAST_TIME, " (microseconds since 1970, UTC: years 1 to 9999)"
        ),
        text_of("source", optional=True),
        text_of("subject", optional=True),
        number_of("recorded_at", 0, _LAST_RECORDED, " (microseconds since 1970, UTC)"),
        visible,
    )
    problem = _bytes_problem(parsed_json.get("data"), parsed_json.get("metadata"))
    if problem is not None:
        raise bad(name, number, problem)
    return row


def _bytes_problem(data: Any, metadata: Any) -> str | None:
    """What is wrong with an event line whose metadata marks its data as bytes
    (:data:`~._records.BYTES_MARKER`), as the store writes a bytes payload: the marker
    ``true``, and the data base64 text (null once shredded; an envelope, encrypted).
    Anything else was imported, and every read of the event then failed."""
    if metadata.__class__ is not dict or BYTES_MARKER not in metadata:
        return None
    if metadata[BYTES_MARKER] is not True:
        marker = orjson.dumps(metadata[BYTES_MARKER]).decode()
        return f"metadata's {BYTES_MARKER!r} must be true, got {shown(marker)}"
    if data is None:
        return None
    if data.__class__ is str:
        try:
            binascii.a2b_base64(data, strict_mode=True)
        except binascii.Error as exc:
            return f"metadata marks data as bytes ({BYTES_MARKER!r}), but it is not base64 ({exc})"
        return None
    from ..security._envelope import is_envelope

    if is_envelope(data):
        return None
    kind = _JSON_KINDS.get(type(data), "object")
    return (
        f"metadata marks data as bytes ({BYTES_MARKER!r}), but it holds a JSON {kind}, "
        "not base64 text"
    )
