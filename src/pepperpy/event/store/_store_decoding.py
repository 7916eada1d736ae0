"""Stored rows back into events, for :class:`~pepperpy.event.store.EventStore`, as a mixin.

The read hot path: a row's JSON parsed and checked (a row no event of this library could
have been is named in a :class:`~pepperpy.event.SerializationError`), an encrypted row
unsealed and checked, its data run through the registered upcasters, and an
:class:`~pepperpy.event.Event` built. Also :meth:`StoreDecoding.upcaster`, which
registers those functions, and the append-side check that follows from them: an event
appended at a version its type's upcasters treat as old is refused. The keys a page
needs are loaded before it is decoded (:mod:`._store_security`), so decoding stays
synchronous.
"""

from __future__ import annotations

import inspect
from base64 import b64decode
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, overload

import orjson

from .._errors import (
    ConfigurationError,
    EncryptionError,
    PatternError,
    SerializationError,
    StoreError,
    ValidationError,
    ValidationProblem,
)
from .._event import Event
from .._event import freeze_parsed_fast as _freeze_parsed
from .._event import restore_event_c as _restore_event
from .._frozen import MAX_DEPTH, SHALLOW_JSON, freeze, nested_too_deep, too_deep_read
from .._patterns import parse_topic
from .._text import MAX_VERSION
from ._records import BYTES_MARKER
from .base import NewRecord, Row

if TYPE_CHECKING:
    from ..security import StreamEncryption

Upcaster = Callable[[Any], Any]
F = TypeVar("F", bound=Upcaster)

_orjson_loads = orjson.loads
_fromtimestamp = datetime.fromtimestamp


class StoreDecoding:
    """Upcaster registration and row decoding for :class:`~pepperpy.event.store.EventStore`."""

    encryption: StreamEncryption | None
    _upcasters: dict[tuple[str, int], Upcaster]
    #: each upcast type's current version: one past the highest ``from_version`` registered
    _current_versions: dict[str, int]
    _last_recorded: tuple[int, datetime]

    @overload
    def upcaster(
        self, event_type: str, from_version: int = 1, func: None = None
    ) -> Callable[[F], F]: ...

    @overload
    def upcaster(self, event_type: str, from_version: int, func: F) -> F: ...

    def upcaster(
        self, event_type: str, from_version: int = 1, func: F | None = None
    ) -> F | Callable[[F], F]:
        """Register ``f(old_data) -> new_data`` turning ``from_version`` into the next.

        A decorator (``@store.upcaster("order.placed", 1)``) or a direct call
        (``store.upcaster("order.placed", 1, func)``), as the validator's upcasters.

        Applied on read and chained, so readers see the latest version (with
        ``event.version`` updated). Stored events are never rewritten.

        The type's current version is then one past the highest ``from_version``
        registered for it, and :meth:`append` refuses (``ValidationError``, nothing
        written) an event of that type at a lower version: read back, it would be taken
        for old data and upcast. Build new events with ``version=`` the current version;
        old events being imported go through a store with no upcasters registered.

        ``event_type`` is one exact type: a pattern (``order.*``) raises
        :class:`~pepperpy.event.PatternError`. The function must be synchronous (reads
        decode whole pages in one pass): an ``async def`` raises ``TypeError``. Should
        it raise on read, the read fails with :class:`~pepperpy.event.StoreError`
        naming the event, its type and version, with the original as ``__cause__``.
        """
        if not isinstance(event_type, str) or not event_type:
            raise TypeError(f"event_type must be a non-empty str, got {event_type!r}")
        wildcard = next((i for i, char in enumerate(event_type) if char in "*#"), None)
        if wildcard is not None:
            raise PatternError(
                event_type,
                wildcard,
                "upcaster(event_type=...) takes one exact event type, not a pattern; "
                "register the function for each type it upgrades",
            )
        parse_topic(event_type)  # a type no event can have would never be upcast
        if from_version.__class__ is not int or from_version < 1:
            message = f"from_version must be an int >= 1, got {from_version!r}"
            # a version that is no int (a bool, "2") is a wrong type (docs/errors.md)
            if from_version.__class__ is not int:
                raise TypeError(message)
            raise ConfigurationError(message)
        if from_version >= MAX_VERSION:  # its output, from_version + 1, is no event's version
            raise ConfigurationError(
                f"from_version must be below {MAX_VERSION}, the largest version an event "
                f"can have, got {from_version!r}"
            )
        key = (event_type, from_version)

        def register(function: F) -> F:
            if not callable(function):
                raise TypeError(f"an upcaster must be callable, got {function!r}")
            if _is_async(function):
                raise TypeError(
                    f"store upcasters must be synchronous functions, got the async "
                    f"{getattr(function, '__qualname__', function)!r} for {event_type!r} "
                    f"version {from_version}: an upcaster only reshapes the stored data"
                )
            if key in self._upcasters:
                raise ConfigurationError(
                    f"an upcaster for {event_type!r} version {from_version} already exists"
                )
            self._upcasters[key] = function
            current = self._current_versions.get(event_type, 1)
            self._current_versions[event_type] = max(current, from_version + 1)
            return function

        return register if func is None else register(func)

    def _refuse_old_versions(self, records: Sequence[NewRecord], batch: bool) -> None:
        """Refuse an append holding an event older than its type's current version.

        Such an event (typically new code that left ``version`` at its default, 1) would
        be read as the old data its upcasters convert, and they would fail on it or
        corrupt it on every read, for good: stored events are never rewritten. Raises
        :class:`ValidationError` listing every such event (``$`` or ``$[i]``), before
        anything is written. A version above the current one is accepted (a newer
        producer than this reader: it reads back as stored).
        """
        current = self._current_versions
        problems: list[ValidationProblem] = []
        types: set[str] = set()
        for index, record in enumerate(records):
            latest = current.get(record.type)
            if latest is None or record.version >= latest:
                continue
            types.add(record.type)
            where = f"$[{index}]" if batch else "$"
            problems.append(
                ValidationProblem(
                    f"{where}.version",
                    f"version {latest} or higher",
                    str(record.version),
                    f"this store's upcasters bring {record.type!r} up to version {latest}, "
                    f"so a version-{record.version} event would be read back as old data "
                    f"and upcast; build it with version={latest} (to import old events as "
                    "they are, append them through a store with no upcasters registered)",
                )
            )
        if problems:
            raise ValidationError(
                problems,
                event_type=next(iter(types)) if len(types) == 1 else None,
                subject="events to append",
            )

    def _decode(self, row: Row) -> Event:
        """Turn a stored row into an Event (upcast to the latest version): the read hot path."""
        event_type = row[4]
        version = row[5]
        raw = row[7]
        try:
            data = _orjson_loads(row[6])
            metadata = None if raw is None else _orjson_loads(raw)
        except ValueError as exc:
            raise _unreadable(row, exc) from exc
        if raw is not None and len(raw) >= SHALLOW_JSON and nested_too_deep(metadata):
            raise _unreadable(row, too_deep_read("metadata"))
        shredded = False
        if self.encryption is not None:
            data, metadata, extra = self._unseal(row, data, metadata)
            # a shredded event has no data to upcast: it stays at its stored version
            # (an upcaster given None failed the read of the stream, and of the log)
            shredded = (
                data is None and metadata.__class__ is dict and "pepperpyshredded" in metadata
            )
        else:
            extra = row[9], row[10]
        if raw is not None and metadata.__class__ is dict and BYTES_MARKER in metadata:
            data, metadata = _unmark(row, data, metadata)
        if (
            self._current_versions
            and not shredded
            and version < self._current_versions.get(event_type, 0)
        ):
            data, version = self._upcast(row, data)
        else:
            try:
                data = _freeze_parsed(data)
            except SerializationError as exc:  # deeper than any event this library writes
                raise _unreadable(row, exc) from None
        recorded = row[11]
        if recorded != self._last_recorded[0]:  # a batch shares one recorded_at
            self._last_recorded = (recorded, _fromtimestamp(recorded / 1e6, UTC))
        # the timestamp stays integer nanoseconds until read, as for a new Event
        where = (*extra, row[1], row[2], row[0], self._last_recorded[1])
        if _restore_event is not None:  # in C
            return _restore_event(event_type, data, metadata, row[3], row[8] * 1000, version, where)
        # its Python version, inlined (a call costs ~5% of the read path there)
        event: Event = _new_event(Event)
        event._type = event_type
        event._data = data
        event._metadata = metadata
        event._id = row[3]
        event._ts = row[8] * 1000
        event._version = version
        event._extra = where
        return event

    def _unseal(
        self, row: Row, envelope: Any, metadata: Any
    ) -> tuple[Any, Any, tuple[str | None, str | None]]:
        """An encrypted row's ``(data, metadata, (source, subject))``, checked.

        Refuses (:class:`EncryptionError`) what an encrypted store never writes: data
        that is not an envelope, and a source or subject in clear text. A shredded
        event reads with data, source and subject None and is marked in its metadata.
        """
        assert self.encryption is not None
        if row[9] is not None or row[10] is not None:
            raise EncryptionError(
                f"event {row[3]} of {row[1]!r} has its source or subject in clear text, where"
                " an encrypted store keeps them inside the envelope: refused as tampered"
            )
        plaintext = self.encryption.decrypt_loaded(
            row[1], row[3], envelope, context=(row[4], row[5], row[8], row[7])
        )
        if plaintext is None:
            return None, dict(metadata or {}, pepperpyshredded=True), (None, None)
        try:
            sealed = _orjson_loads(plaintext)
        except ValueError:
            sealed = None
        if sealed.__class__ is not list or len(sealed) != 3:  # authentic, not the store's
            raise EncryptionError(
                f"event {row[3]} of {row[1]!r} decrypted to something this store never"
                " writes (not [data, source, subject])"
            )
        return sealed[0], metadata, (sealed[1], sealed[2])

    def _upcast(self, row: Row, data: Any) -> tuple[Any, int]:
        """Run a stored event's data through its upcasters: (frozen data, final version).

        A failure names the event, its type and the version whose upcaster failed; so
        does a chain with a gap (an upcaster missing below the type's current version),
        rather than handing readers an event at a version between the two.
        """
        event_type, version = row[4], row[5]
        current = self._current_versions[event_type]
        while version < current:
            upcast = self._upcasters.get((event_type, version))
            if upcast is None:
                raise StoreError(
                    f"{_upcasting(row, version)} failed: no upcaster is registered for "
                    f"{event_type!r} from version {version}, and the type's upcasters bring "
                    f"it up to version {current}; register one for version {version} "
                    f"(the chain has a gap)"
                )
            try:
                data = upcast(data)
            except Exception as exc:
                raise StoreError(
                    f"{_upcasting(row, version)} failed: {type(exc).__name__}: {exc}"
                ) from exc
            if inspect.isawaitable(data):
                if inspect.iscoroutine(data):
                    data.close()  # never awaited: say so here, not in a warning later
                raise StoreError(
                    f"{_upcasting(row, version)} failed: it returned "
                    f"{type(data).__name__}; store upcasters must be synchronous"
                )
            version += 1
        try:
            return freeze(data), version  # an upcaster's output gets the full check
        except SerializationError as exc:
            raise SerializationError(
                f"{_upcasting(row, version - 1)} failed: the upcaster returned data "
                f"that is not JSON: {exc}"
            ) from exc


_new_event = object.__new__


def _unmark(row: Row, data: Any, metadata: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
    """A whole-bytes payload's ``(bytes, metadata)``: its base64 text decoded and the
    :data:`~._records.BYTES_MARKER` taken out of the metadata (None when it was all).

    Shredded data (None) stays None. A marked row whose data is not base64 text is no
    record this library writes, and is named as such.
    """
    rest = {key: value for key, value in metadata.items() if key != BYTES_MARKER}
    if data is not None:
        if metadata[BYTES_MARKER] is not True or data.__class__ is not str:
            raise _unreadable(
                row,
                SerializationError(
                    f"its metadata marks its data as bytes ({BYTES_MARKER!r}), but it "
                    f"holds {type(data).__name__}, not base64 text"
                ),
            )
        try:
            data = b64decode(data, validate=True)
        except ValueError as exc:
            raise _unreadable(
                row,
                SerializationError(
                    f"its metadata marks its data as bytes ({BYTES_MARKER!r}), but it is "
                    f"not valid base64: {exc}"
                ),
            ) from None
    return data, rest or None


def _unreadable(row: Row, exc: Exception) -> SerializationError:
    """The error for a stored row that is no event this library writes, naming it."""
    where = f"stored event {row[3]!r} in {row[1]!r} (position {row[2]})"
    if isinstance(exc, SerializationError):
        return SerializationError(f"{where}: {exc}")
    if "depth limit" in str(exc):  # orjson reads at most 1,024 levels
        return SerializationError(
            f"{where} is nested too deeply to read (an event's data and metadata hold at "
            f"most {MAX_DEPTH} levels of lists and objects): {exc}"
        )
    return SerializationError(f"{where} is not valid JSON: {exc}")


def _is_async(function: Callable[..., Any]) -> bool:
    """Whether calling ``function`` gives a coroutine or async generator (also for an
    object whose ``__call__`` is ``async def``)."""
    for candidate in (function, type(function).__call__):
        if inspect.iscoroutinefunction(candidate) or inspect.isasyncgenfunction(candidate):
            return True
    return False


def _upcasting(row: Row, version: int) -> str:
    """``upcasting event 'id' (type 't', version 1) in 's' at position 3``, for errors."""
    return (
        f"upcasting event {row[3]!r} (type {row[4]!r}, version {version}) "
        f"in {row[1]!r} at position {row[2]}"
    )
