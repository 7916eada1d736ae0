"""The :class:`EventStore` facade: one API over the memory, SQLite and PostgreSQL backends.

Everything that is not storage lives here, once: turning ``Event``/dict input into
validated JSON records (with :mod:`._records`), decoding rows back into
:class:`~pepperpy.event.Event`, upcasting, readers and subscriptions, snapshots' values,
and choosing a backend from a URL. Backends implement the small contract in :mod:`.base`.
This module holds the writes, snapshots and lifecycle; the reads (readers,
subscriptions, head, stream names, counts) come from the mixin in :mod:`._store_reading`,
access checks, auditing and sealing from the one in :mod:`._store_security`, decoding
rows and upcasting from the one in :mod:`._store_decoding`, and the position and version
checks both sides share from :mod:`._store_checks`.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import _json
from .._errors import (
    ClosedError,
    ConcurrencyError,
    ConfigurationError,
    SerializationError,
    ValidationError,
)
from .._event import Event
from .._patterns import parse_name
from ._reader import StoreSubscription
from ._records import event_records
from ._states import encode_state
from ._store_checks import MAX_POSITION as MAX_POSITION  # imported from here elsewhere
from ._store_checks import STREAM_NAME, _check_expected, _refused
from ._store_decoding import StoreDecoding, Upcaster
from ._store_reading import StoreReading
from ._store_security import StoreSecurity, _check_keys_apart, _check_security
from .base import (
    ANY,
    AppendResult,
    ExpectedVersion,
    NewRecord,
    PendingAppend,
    Snapshot,
    SnapshotRow,
    StoreBackend,
    from_micros,
    redact_url,
)

if TYPE_CHECKING:
    from ..security import AccessControl, AuditLog, StreamEncryption

__all__ = ["EventStore", "open_backend"]


def open_backend(url: str | None) -> StoreBackend:
    """The backend for a store URL (``memory://``, ``sqlite:///path``, ``postgresql://``).

    The scheme is matched without regard to case (RFC 3986), for every backend:
    ``MEMORY://``, ``SQLite:///events.db`` and ``POSTGRES://...`` work as their
    lower-case forms do.
    """
    if url is None:
        url = "memory://"
    if not isinstance(url, str):
        raise ConfigurationError(f"a store URL must be a str, got {type(url).__name__}")
    scheme, colon, rest = url.partition(":")
    scheme = scheme.lower()
    if colon and scheme == "memory":
        if rest not in ("", "//"):
            raise ConfigurationError(
                f"the memory store takes no address: {redact_url(url)!r} (use memory://)"
            )
        from .memory import MemoryBackend

        return MemoryBackend()
    if not colon or not rest.startswith("//"):
        raise ConfigurationError(
            f"not a store URL: {redact_url(url)!r} (use memory://, sqlite:///path/events.db or "
            "postgresql://user@host/db)"
        )
    rest = rest[2:]
    if scheme == "sqlite":
        from .sqlite import SQLiteBackend

        return SQLiteBackend.from_url(url)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresBackend

        return PostgresBackend(f"{scheme}://{rest}")
    raise ConfigurationError(
        f"unknown store URL scheme {scheme!r} in {redact_url(url)!r} "
        "(known: memory://, sqlite:///path, postgresql://)"
    )


class EventStore(StoreReading, StoreSecurity, StoreDecoding):
    """Streams of events for event sourcing, with a global log and live subscriptions.

    ``EventStore()`` keeps events in memory; ``EventStore("sqlite:///events.db")`` in an
    embedded, durable SQLite file; ``EventStore("postgresql://...")`` in PostgreSQL,
    shared by many processes. A backend object (see :mod:`pepperpy.event.store.base`)
    works too. The constructor needs no running event loop: connections open on first
    use.

    Security options (see :mod:`pepperpy.event.security`): ``encryption`` encrypts
    each event's ``data``, ``source`` and ``subject`` (and snapshots) with per-stream
    keys, bound to the event's stream, id, type, version, timestamp and metadata;
    ``access`` checks every read, append and delete against the principal set with
    ``acting_as``; ``audit`` records appends, snapshots, deletes, shreds and the
    store's access denials in a hash-chained log.
    """

    def __init__(
        self,
        url: str | StoreBackend | None = None,
        *,
        encryption: StreamEncryption | None = None,
        access: AccessControl | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        _check_security(encryption, access, audit)
        self.encryption = encryption
        self.access = access
        self.audit = audit
        if isinstance(url, StoreBackend):
            self._backend = url
            self.url = f"<{type(url).__name__}>"
        else:
            self._backend = open_backend(url)
            self.url = url or "memory://"
        if encryption is not None:
            _check_keys_apart(encryption, self._backend)
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._current_versions: dict[str, int] = {}
        self._last_recorded: tuple[int, datetime] = (-1, from_micros(0))
        self._subscriptions: weakref.WeakSet[StoreSubscription] = weakref.WeakSet()
        self._closed = False
        self._released = False  # the backend's close() has returned

    def __repr__(self) -> str:
        return f"EventStore({redact_url(self.url)!r})"

    @property
    def backend(self) -> StoreBackend:
        """The storage backend in use."""
        return self._backend

    # -- writing ----------------------------------------------------------------------

    async def append(
        self,
        stream: str,
        event_or_events: Event | Mapping[str, Any] | Sequence[Event | Mapping[str, Any]],
        *,
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        """Append one event or a batch to ``stream``, atomically and durably.

        ``expected_version`` is the stream's last position, ``NO_STREAM``,
        ``STREAM_EXISTS`` or ``ANY``; a mismatch raises
        :class:`~pepperpy.event.ConcurrencyError`. Events whose id is already in the
        stream are skipped, so retrying a batch is safe and returns the same result.

        An event whose type has upcasters registered must be at that type's current
        version or higher (see :meth:`upcaster`): an older one raises
        :class:`~pepperpy.event.ValidationError` and nothing of the call is written.

        With an audit log, a call cancelled once the backend has its events lets them be
        written and audited, then raises ``CancelledError`` (see :meth:`_audited`).
        """
        if self._closed:
            raise ClosedError("the event store is closed")
        self._check_audit_open()
        parse_name(stream, STREAM_NAME)
        if expected_version is not ANY:
            _check_expected(expected_version)
        if self.access is not None:
            await self._acheck_access("append", stream)
        records = await self._records(stream, event_or_events)
        try:
            if self.audit is None:
                return await self._backend.append(stream, records, expected_version)
            return await self._audited(
                self._backend.append(stream, records, expected_version),
                "append",
                stream,
                lambda result: _append_details(records, result),
            )
        except ConcurrencyError as conflict:
            self._withhold_version(conflict)  # from a principal that may not read it
            raise

    async def append_streams(
        self,
        events: Mapping[str, Event | Mapping[str, Any] | Sequence[Event | Mapping[str, Any]]],
        *,
        expected_versions: Mapping[str, ExpectedVersion] | None = None,
    ) -> dict[str, AppendResult]:
        """Append to several streams at once: every event of every stream, or none.

        ``events`` maps each stream to what :meth:`append` takes (one event or a batch);
        ``expected_versions`` gives a stream's expected version (``ANY`` for a stream it
        does not name). Every stream's expectation is checked before anything is
        written: a mismatch raises :class:`~pepperpy.event.ConcurrencyError` for that
        stream, a deleted one :class:`~pepperpy.event.StreamDeletedError`, and nothing
        of the call is written. Each stream is otherwise appended to as :meth:`append`
        does (names, event forms, ``append`` permission, encryption, upcasters' current
        versions; a stream whose ids are all stored already is a retry: its original
        result, nothing written), and the events written get consecutive global
        positions, the streams' in the mapping's order. Returns each stream's
        :class:`AppendResult`, in the mapping's order.

        With an audit log, each stream gets its own ``append`` entry (as :meth:`append`
        records it, plus the names of every stream of the call), so a stream's history
        in the log reads the same however it was appended to.
        """
        if self._closed:
            raise ClosedError("the event store is closed")
        self._check_audit_open()
        if not isinstance(events, Mapping):
            raise TypeError(
                "append_streams takes a mapping of stream name to event(s), got "
                f"{type(events).__name__}"
            )
        if not events:
            raise ValueError("append_streams needs at least one stream, got an empty mapping")
        expected = {} if expected_versions is None else expected_versions
        if not isinstance(expected, Mapping):
            raise TypeError(
                "expected_versions must be a mapping of stream name to expected version, "
                f"got {type(expected).__name__}"
            )
        for stream in events:
            parse_name(stream, STREAM_NAME)
        for stream, version in expected.items():
            if stream not in events:
                raise ValueError(
                    f"expected_versions names {stream!r}, which is not one of the streams "
                    f"appended to ({', '.join(map(repr, events))})"
                )
            if version is not ANY:
                _check_expected(version)
        for stream, event_or_events in events.items():
            if isinstance(event_or_events, list | tuple) and not event_or_events:
                raise ValueError(f"append_streams got no events for stream {stream!r}")
        if self.access is not None:  # every stream, before any is sealed
            for stream in events:
                await self._acheck_access("append", stream)
        appends: list[PendingAppend] = []
        for stream, event_or_events in events.items():
            try:
                records = await self._records(stream, event_or_events)
            except (ValidationError, SerializationError) as exc:
                exc.add_note(f"in the events for stream {stream!r} (nothing was written)")
                raise
            appends.append(PendingAppend(stream, records, expected.get(stream, ANY)))
        names = list(events)
        try:
            if self.audit is None:
                results = await self._backend.append_streams(appends)
            else:
                results = await self._audited_each(
                    self._backend.append_streams(appends),
                    "append",
                    lambda written: [
                        (
                            append.stream,
                            {**_append_details(append.records, result), "streams": names},
                        )
                        for append, result in zip(appends, written, strict=True)
                    ],
                )
        except ConcurrencyError as conflict:
            self._withhold_version(conflict)  # from a principal that may not read it
            raise
        return dict(zip(names, results, strict=True))

    async def _records(
        self,
        stream: str,
        event_or_events: Event | Mapping[str, Any] | Sequence[Event | Mapping[str, Any]],
    ) -> list[NewRecord]:
        """What ``append`` writes to ``stream``: the events as records, refused if older
        than their upcasters, sealed if encrypted."""
        records = event_records(event_or_events)
        if self._current_versions:
            self._refuse_old_versions(records, isinstance(event_or_events, list | tuple))
        if self.encryption is not None:
            records = await self._encrypt(stream, records)
        return records

    async def delete_stream(self, stream: str) -> bool:
        """Soft-delete ``stream``: its events and snapshot disappear from every read.

        Returns False when there was nothing to delete. Appending to a deleted stream
        raises :class:`~pepperpy.event.StreamDeletedError` unless
        ``expected_version=NO_STREAM``, which starts it again (positions continue after
        the deleted events, which stay hidden).
        """
        self._check_open()
        self._check_audit_open()
        parse_name(stream, STREAM_NAME)
        if self.access is not None:
            await self._acheck_access("delete", stream)
        if self.audit is None:
            return await self._backend.delete_stream(stream)
        return await self._audited(
            self._backend.delete_stream(stream),
            "delete",
            stream,
            lambda deleted: {"deleted": deleted},
        )

    async def shred_stream(self, stream: str) -> bool:
        """Crypto-shred ``stream``: delete its data keys so its data can never be read.

        Needs ``encryption``. Events stay in place (types, metadata, positions), their
        data reads as ``None`` (or raises, per the encryption's ``on_shredded``).
        """
        self._check_open()
        self._check_audit_open()
        parse_name(stream, STREAM_NAME)
        if self.encryption is None:
            raise ConfigurationError("shred_stream needs a store opened with encryption=")
        if self.access is not None:
            await self._acheck_access("delete", stream)
        if self.audit is None:
            return await self.encryption.shred(stream)
        return await self._audited(
            self.encryption.shred(stream),
            "shred",
            stream,
            lambda shredded: {"shredded": shredded},
        )

    # -- snapshots --------------------------------------------------------------------

    async def save_snapshot(self, stream: str, state: Any, version: int) -> None:
        """Keep ``state`` (JSON-able) as the stream's state as of position ``version``.

        ``state`` follows the rules for event data, except that it may hold no bytes
        (they would read back as base64 text): refused with ``SerializationError``.

        Checked as an ``append`` and audited as a ``snapshot`` entry; an audited store
        whose audit log is closed refuses it before writing, like ``append``.
        """
        self._check_open()
        self._check_audit_open()
        parse_name(stream, STREAM_NAME)
        if version.__class__ is not int or not 0 <= version <= MAX_POSITION:
            raise _refused(
                version,
                f"snapshot version must be a stream position, an int from 0 to {MAX_POSITION}, "
                f"got {version!r}",
            )
        if self.access is not None:
            await self._acheck_access("append", stream)
        encoded = encode_state(state, "snapshot state")
        taken_at = time.time_ns() // 1000
        if self.encryption is not None:
            envelope = await self.encryption.encrypt_snapshot(
                stream, version, encoded, context=(taken_at,)
            )
            encoded = _json.dumps(envelope)
        saving = self._backend.save_snapshot(stream, SnapshotRow(version, encoded, taken_at))
        if self.audit is None:
            await saving
            return
        await self._audited(saving, "snapshot", stream, lambda _: {"version": version})

    async def load_snapshot(self, stream: str) -> Snapshot | None:
        """The stream's latest snapshot, or None.

        With ``encryption``, a stored snapshot that is not an envelope bound to this
        stream, version and time raises :class:`~pepperpy.event.EncryptionError`.
        """
        self._check_open()
        parse_name(stream, STREAM_NAME)
        await self._acheck_read(stream)
        row = await self._backend.load_snapshot(stream)
        if row is None:
            return None
        state = _json.loads(row.state)
        if self.encryption is not None:
            plaintext = await self.encryption.decrypt_snapshot(
                stream, row.version, state, context=(row.taken_at,)
            )
            if plaintext is None:
                return None  # shredded: the snapshot is gone with the keys
            state = _json.loads(plaintext)
        return Snapshot(stream, row.version, state, from_micros(row.taken_at))

    # -- lifecycle --------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """End open subscriptions and release connections. Idempotent.

        Subscriptions are woken on their own loops, thread-safely; one left waiting on a
        loop that was closed meanwhile is skipped (it will never run again). The backend
        is released whatever happens: until its ``close()`` has returned, every call
        hands over to it again, so a call that was cancelled (or failed) is finished by
        the next one. What a cancelled ``close()`` leaves running is the backend's to
        say: SQLite's release goes on in its own thread, PostgreSQL cuts its
        connections off at once.
        """
        first = not self._closed
        self._closed = True
        try:
            if first:
                for subscription in list(self._subscriptions):
                    subscription._wake()
        finally:
            if not self._released:
                await self._backend.close()
                self._released = True

    async def __aenter__(self) -> EventStore:
        self._check_open()  # as a closed EventBus: refused here, not at the first use
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the event store is closed")


def _append_details(records: Sequence[NewRecord], result: AppendResult) -> dict[str, Any]:
    """An ``append`` audit entry's details."""
    return {
        "events": len(records),
        "ids": [record.id for record in records][:100],
        "global_position": result.global_position,
    }
