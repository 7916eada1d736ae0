"""The :class:`~pepperpy.event.store.EventStore`'s security plumbing, as a mixin.

What the store's ``encryption``, ``access`` and ``audit`` options add around each call:
the options checked when the store is made (a ``SQLiteKeyStore`` refused in the events'
own file), ``read``/``append``/``delete`` checked with each denial recorded before it
raises, readers and subscriptions checked again when the rules change, changes and their
audit entries made as one unit no cancellation splits, records sealed before they are
written and the data keys a page needs loaded before it is decoded. Decrypting a row is
part of decoding it (:mod:`._store_decoding`).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from .. import _json
from .._errors import (
    AccessDenied,
    ClosedError,
    ConcurrencyError,
    ConfigurationError,
    EncryptionError,
)
from .._loops import settled
from .._options import check_instance
from ..security._principal import PRINCIPAL, current_principal
from .base import NewRecord, Row, StoreBackend

if TYPE_CHECKING:
    from ..security import AccessControl, AuditLog, StreamEncryption

T = TypeVar("T")

_dumps = orjson.dumps


class StoreSecurity:
    """Access checks, auditing and sealing for :class:`~pepperpy.event.store.EventStore`."""

    encryption: StreamEncryption | None
    access: AccessControl | None
    audit: AuditLog | None

    async def _audited(
        self,
        change: Awaitable[T],
        action: str,
        target: str,
        details: Callable[[T], dict[str, Any]],
    ) -> T:
        """Make ``change``, then record it in the audit log: one unit no cancellation splits.

        A write cannot be taken back once the backend has it (SQLite's writer thread
        commits it, PostgreSQL may commit a statement it received), so a cancellation
        landing in between would leave a change the audit log never records. Both run
        to their end (the entry is recorded whenever the change is made), then the
        cancellation propagates (see :func:`~pepperpy.event._loops.settled`).
        """
        audit = self.audit
        assert audit is not None
        principal = current_principal()

        async def change_and_record() -> T:
            result = await change
            await audit.arecord(action, target, principal=principal, details=details(result))
            return result

        return await settled(change_and_record())

    async def _audited_each(
        self,
        change: Awaitable[T],
        action: str,
        entries: Callable[[T], list[tuple[str, dict[str, Any]]]],
    ) -> T:
        """:meth:`_audited` for a change to several targets: one entry per (target,
        details) that ``entries`` lists, recorded in order, all or none by cancellation."""
        audit = self.audit
        assert audit is not None
        principal = current_principal()

        async def change_and_record() -> T:
            result = await change
            for target, details in entries(result):
                await audit.arecord(action, target, principal=principal, details=details)
            return result

        return await settled(change_and_record())

    async def _encrypt(self, stream: str, records: list[NewRecord]) -> list[NewRecord]:
        """The records sealed: one key store check for the whole batch.

        The envelope holds ``[data, source, subject]`` (so shredding erases all three) and
        is bound to what stays in clear: the stream and id, and as ``context`` the type,
        version, timestamp and metadata (the stored bytes), which :meth:`_unseal` gives
        back from the row.
        """
        assert self.encryption is not None
        envelopes = await self.encryption.encrypt_many(
            stream,
            [
                (
                    record.id,
                    b"[%b,%b,%b]" % (record.data, _dumps(record.source), _dumps(record.subject)),
                    (record.type, record.version, record.timestamp, record.metadata),
                )
                for record in records
            ],
        )
        return [
            record._replace(data=_json.dumps(envelope), source=None, subject=None)
            for record, envelope in zip(records, envelopes, strict=True)
        ]

    def _withhold_version(self, conflict: ConcurrencyError) -> None:
        """Hide a conflict's actual version from a principal that may not read its stream.

        The conflict itself is still reported (the append wrote nothing, and its writer
        must know), but the stream's version, or whether it exists at all, is what
        reading it tells: ``conflict.actual`` becomes None and the message says it is
        withheld. Not a denial, so nothing is audited for it.
        """
        access = self.access
        if access is None:
            return
        who = current_principal()
        if access.is_allowed(who, "read", conflict.stream):
            return
        conflict.actual = None
        conflict.args = (
            f"stream {conflict.stream!r}: expected version {conflict.expected!r}, not met "
            f"(the actual version is withheld: principal {who or 'anonymous'!r} may not "
            "read the stream)",
        )

    def _check_read(self, streams: str | Sequence[str] | None) -> None:
        """Check ``read`` on each pattern, for a reader made synchronously.

        A refusal is raised at once, and its audit entries never block a running event
        loop: on a file log they go to the log's writer thread
        (:meth:`~pepperpy.event.security.AuditLog.record_off_loop`).
        """
        if self.access is None:
            return
        for pattern in _read_patterns(streams):
            refusal = self.access._refusal("read", pattern)
            if refusal is not None:
                for log, whose in self._denial_logs():
                    try:
                        log.record_off_loop(**refusal.entry)
                    except ClosedError as exc:
                        _unaudited(refusal.error, whose, exc)
                raise refusal.error

    async def _acheck_read(self, streams: str | Sequence[str] | None) -> None:
        """:meth:`_check_read` for the async reads: a refusal is written (off the loop)
        before it is raised."""
        if self.access is not None:
            for pattern in _read_patterns(streams):
                await self._acheck_access("read", pattern)

    async def _acheck_access(self, action: str, target: str) -> None:
        """Check an action; a denial is recorded, on a worker thread, before it raises.

        It goes to the ``AccessControl``'s own log (if it has one, as ``check`` writes
        it) and to the store's log (if it has another one). The ``AccessControl`` is
        never changed: it may be shared with a bus or another store.
        """
        assert self.access is not None
        await self._adenied(self.access, action, target)

    async def _adenied(
        self, access: AccessControl, action: str, target: str, needed_by: str | None = None
    ) -> None:
        """Raise ``AccessDenied``, recorded first, if ``access`` refuses the action."""
        refusal = access._refusal(action, target, needed_by=needed_by)
        if refusal is None:
            return
        for log, whose in self._denial_logs(access):
            try:
                await log.arecord(**refusal.entry)
            except ClosedError as exc:
                _unaudited(refusal.error, whose, exc)
        raise refusal.error

    async def _forget_checkpoint(
        self,
        delete: Callable[[], Awaitable[bool]],
        key: str,
        streams: Sequence[str] | None,
        needed_by: str,
    ) -> bool:
        """Delete a consumer's checkpoint (``key``) with what running the consumer needs.

        The consumer reads ``streams`` (``#`` when None): deleting where it got to makes
        its next run read them all again, so it needs ``read`` on each, checked (a
        refusal audited as any denial, its message saying what ``needed_by`` it) before
        ``delete`` is called. With ``audit=``, the deletion is recorded as a
        ``checkpoint.delete`` entry on ``key`` (details: ``deleted``, ``streams``), as
        :meth:`delete_stream` records its own.
        """
        self._check_audit_open()
        if self.access is not None:
            for pattern in _read_patterns(streams):
                await self._adenied(self.access, "read", pattern, needed_by)
        if self.audit is None:
            return await delete()
        patterns = list(_read_patterns(streams))
        return await self._audited(
            delete(),
            "checkpoint.delete",
            key,
            lambda deleted: {"deleted": deleted, "streams": patterns},
        )

    def _denial_logs(self, access: AccessControl | None = None) -> list[tuple[AuditLog, str]]:
        """Where a denial is recorded, each log once: the ``AccessControl``'s, the store's."""
        access = access or self.access
        assert access is not None
        logs: list[tuple[AuditLog, str]] = []
        if access.audit is not None:
            logs.append((access.audit, "the access control's"))
        if self.audit is not None and self.audit is not access.audit:
            logs.append((self.audit, "the store's"))
        return logs

    def _read_guard(
        self, streams: str | Sequence[str] | None
    ) -> Callable[[], Awaitable[None]] | None:
        """For a reader or subscription: check ``read`` again before each page whenever
        the rules changed since the last check, for the principal that made it.

        A right revoked (a deny added, an allow removed, the default changed) thus stops
        a reader or subscription already open at its next page: ``AccessDenied``,
        recorded as any denial. Unchanged rules cost one comparison per page. Events of
        a page fetched before the change may still be delivered.
        """
        access = self.access
        if access is None:
            return None
        principal = current_principal()
        patterns = list(_read_patterns(streams))
        checked = access._version

        async def guard() -> None:
            nonlocal checked
            version = access._version
            if version == checked:
                return
            acting = PRINCIPAL.set(principal)  # whoever iterates: the reader's principal
            try:
                for pattern in patterns:
                    await self._adenied(access, "read", pattern)
            finally:
                PRINCIPAL.reset(acting)
            checked = version

        return guard

    async def _prepare(self, rows: list[Row]) -> object:
        """Load the data keys a page of rows needs (every key version its envelopes
        name), so decoding stays synchronous and never reads the key store. Returns
        what holds them: keep it until the page is decoded (the key cache is bounded)."""
        if self.encryption is not None and rows:
            return await self.encryption._preload_page((row[1], row[6]) for row in rows)
        return None

    def _check_audit_open(self) -> None:
        """Refuse, before writing anything, a change the closed audit log could not record.

        A log closed while a write is already under way still refuses the entry: that
        write is stored and its call raises ``ClosedError`` afterwards.
        """
        if self.audit is not None and self.audit.closed:
            raise ClosedError("the store's audit log is closed: nothing was written")


def _read_patterns(streams: str | Sequence[str] | None) -> Sequence[str]:
    """The patterns a read needs ``read`` on: the whole log (``#``) when none are named."""
    return ["#"] if streams is None else [streams] if isinstance(streams, str) else streams


def _unaudited(denied: AccessDenied, whose: str, closed: ClosedError) -> None:
    """Note on ``denied`` that ``whose`` closed audit log could not record it."""
    denied.add_note(f"the denial was not recorded: {whose} audit log is closed")
    denied.__cause__ = closed


def _check_security(encryption: object, access: object, audit: object) -> None:
    """Refuse a wrong-typed security option here, not by an AttributeError at first use."""
    from ..security import AccessControl, AuditLog, StreamEncryption

    check_instance(encryption, StreamEncryption, "encryption", optional=True)
    check_instance(access, AccessControl, "access", optional=True)
    check_instance(audit, AuditLog, "audit", optional=True)


def sealed_destination(destination: object) -> bool:
    """Whether a copy or import writes to a store opened with ``encryption=``."""
    from ._store import EventStore

    return isinstance(destination, EventStore) and destination.encryption is not None


def refuse_plain(rows: Sequence[Row]) -> None:
    """For a copy or import into a store with ``encryption=``: refuse, before the batch
    is written, a record that is not sealed (data that is no envelope, or a ``source``
    or ``subject`` in clear).

    A copy writes stored records as they are, so a plain store's events would be kept in
    clear in the store meant to encrypt them (its file, WAL and backups), where every
    read then refuses them.
    """
    from ..security._envelope import is_envelope

    for row in rows:
        try:
            value = orjson.loads(row[6])
        except orjson.JSONDecodeError:
            value = None
        if is_envelope(value) and row[9] is None and row[10] is None:
            continue
        what = "its data" if not is_envelope(value) else "its source or subject"
        raise EncryptionError(
            f"event {row[3]} of {row[1]!r} (global position {row[0]}) is not encrypted "
            f"({what} in clear), and the destination store has encryption=: a copy writes "
            "stored records as they are, so it would be kept there in clear; nothing of "
            "this batch was written. To encrypt a plain store's events, append them to "
            "the encrypted store (docs/security.md, switching a plain store to encryption)"
        )


def _check_keys_apart(encryption: StreamEncryption, backend: StoreBackend) -> None:
    """Refuse a ``SQLiteKeyStore`` in the event database's own file.

    Encryption at rest protects the events only from whoever holds them without the
    keys: with both in one file, every copy of the events (a backup, a stolen disk, a
    replica) carries the keys that open them, and a shred leaves the file with the
    events.
    """
    from ..security._encryption import SQLiteKeyStore

    key_store = encryption.key_store
    events_path = getattr(backend, "path", None)
    if not isinstance(key_store, SQLiteKeyStore) or not isinstance(events_path, str):
        return
    keys, events = os.path.realpath(key_store.path), os.path.realpath(events_path)
    same = keys == events
    if not same and os.path.exists(keys) and os.path.exists(events):
        same = os.path.samefile(keys, events)  # a hard link, another mount of the file
    if same:
        raise ConfigurationError(
            f"the key store {key_store.path!r} is the event database {events_path!r}: keep "
            "the data keys in another file (SQLiteKeyStore('keys.db')) or a KMS, or every "
            "copy of the events carries the keys that decrypt them, and shredding a stream "
            "leaves its key in the same file"
        )
