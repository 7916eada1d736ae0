"""Encryption at rest for event data: AES-256-GCM, per-stream keys, rotation, shredding.

Envelope encryption: each stream has its own random 256-bit *data key*; data keys are
stored wrapped (AES-256-GCM) under a *master key* from a :class:`KeyRing`. Event data is
encrypted with the stream's data key. The associated data names what the ciphertext is
(an event or a snapshot), its stream, the event id or snapshot version, and whatever
else the caller binds it to (``context``: the event store binds an event's type, schema
version, timestamp and metadata), so a ciphertext moved to another event, snapshot or
stream, or one whose clear labels were changed, fails authentication.

* Master key rotation: add a new master key and call :meth:`StreamEncryption.rotate`;
  data keys are re-wrapped, event data is untouched.
* Data key rotation: :meth:`StreamEncryption.rotate_stream` starts a new data key
  version for a stream; older events stay readable with the older versions.
* Crypto-shredding: :meth:`StreamEncryption.shred` replaces a stream's data keys with
  tombstones, so its events can no longer be decrypted anywhere, backups included. The
  tombstones keep the version numbers taken: a key written to the stream afterwards gets
  a new version, so old envelopes keep reading as shredded instead of meeting a new key
  under their old number. Only a version with a tombstone reads as shredded: an envelope
  naming a version the key store never held for its stream (forged, or its rows
  deleted) raises :class:`EncryptionError`. Other instances sharing the key store notice
  a shred when they next encrypt (the key store is checked before every encryption) and
  stop decrypting within ``key_cache_ttl`` seconds.

Data keys live in a :class:`KeyStore` kept apart from the events: memory, or an SQLite
file (``SQLiteKeyStore``). Metadata, types and stream names stay in clear text, so
stores can still filter and route.

Only one envelope format is read: ``{MARKER: FORMAT, "key": version, "blob": ...}``.
Anything else where an envelope belongs (plain data, another format) raises
:class:`EncryptionError`; there is no fallback to plain data or to an older binding.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import functools
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypeGuard

import orjson

from .._deps import require
from .._errors import ClosedError, ConfigurationError, EncryptionError
from .._loops import settled
from .._sqlite import OneConnection, open_wal, track_forks
from ..store._sqlite_schema import NOTHING_WRITTEN, named_error, read_only_file

__all__ = ["KeyRing", "KeyStore", "MemoryKeyStore", "SQLiteKeyStore", "StreamEncryption"]

MARKER = "$pepperpy.encrypted"
_MARKER_BYTES = MARKER.encode()
#: the envelope format written and read (the value under MARKER); the layout of the
#: associated data is part of it, so envelopes of another format are refused, not guessed
FORMAT = 2
#: the kinds of ciphertext, first in the associated data: no event's can equal a snapshot's
EVENT = "event"
SNAPSHOT = "snapshot"
#: a projection's saved state (:meth:`StreamEncryption.encrypt_state`)
STATE = "projection state"
#: more values a ciphertext is bound to (associated data), in a fixed order
Context = Sequence[str | int | bytes | None]
_NONCE = 12
#: the master key id of a shredded version's tombstone (no KeyRing id can be empty)
SHREDDED = ""
_ATTEMPTS = 10

logger = logging.getLogger("pepperpy.event.security")


def _aesgcm(key: bytes) -> Any:
    """An AES-256-GCM cipher with ``key`` (made once per key: it costs microseconds)."""
    return _aesgcm_class()(key)


@functools.cache
def _aesgcm_class() -> Any:
    module = require(
        "cryptography.hazmat.primitives.ciphers.aead", extra="crypto", feature="encryption"
    )
    return module.AESGCM


class KeyRing:
    """Named 256-bit master keys; the ``primary`` one wraps new data keys."""

    def __init__(
        self, keys: Mapping[str, bytes] | None = None, *, primary: str | None = None
    ) -> None:
        self._keys: dict[str, bytes] = {}
        for key_id, key in (keys or {}).items():
            self.add(key_id, key)
        if primary is not None and primary not in self._keys:
            raise ConfigurationError(f"primary key {primary!r} is not in the key ring")
        self.primary = primary or (next(reversed(self._keys)) if self._keys else None)

    @classmethod
    def generate(cls, key_id: str = "k1") -> KeyRing:
        """A key ring with one fresh random master key."""
        return cls({key_id: os.urandom(32)})

    def add(self, key_id: str, key: bytes, *, primary: bool = False) -> None:
        """Add a master key (32 bytes); make it the primary when asked."""
        if not isinstance(key, bytes) or len(key) != 32:
            raise ConfigurationError(f"master key {key_id!r} must be 32 bytes (AES-256)")
        if not key_id or "." in key_id:
            raise ConfigurationError(f"invalid master key id {key_id!r}")
        self._keys[key_id] = key
        if primary or getattr(self, "primary", None) is None:
            self.primary = key_id

    def key(self, key_id: str) -> bytes:
        try:
            return self._keys[key_id]
        except KeyError:
            raise EncryptionError(f"master key {key_id!r} is not in the key ring") from None

    def primary_key(self) -> tuple[str, bytes]:
        if self.primary is None:
            raise EncryptionError("the key ring has no master key")
        return self.primary, self._keys[self.primary]


class KeyStore(abc.ABC):
    """Where wrapped data keys live: ``stream -> {version: (master_key_id, wrapped)}``.

    A shredded version stays as a tombstone ``(SHREDDED, b"")`` so that its number is
    never given to another key.
    """

    @abc.abstractmethod
    async def load(self, stream: str) -> dict[int, tuple[str, bytes]]:
        """Every data key version of ``stream``, tombstones included (empty when none)."""

    @abc.abstractmethod
    async def save(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> bool:
        """Store a version unless it exists; False if another writer stored it first."""

    @abc.abstractmethod
    async def replace(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> None:
        """Overwrite a version: a tombstone always; a live key only over a live key.

        Re-wrapping (under a new master key) must never bring back a version that was
        shredded meanwhile, nor one that was deleted.
        """

    @abc.abstractmethod
    async def delete(self, stream: str) -> int:
        """Forget ``stream`` entirely, tombstones too; return how many rows went.

        Not a shred: version numbers can be reused afterwards, and the stream's events
        then raise :class:`EncryptionError` (they name keys the key store never held)
        instead of reading as shredded. Use :meth:`StreamEncryption.shred`.
        """

    @abc.abstractmethod
    async def streams(self) -> list[str]:
        """Streams that have data keys or tombstones."""

    async def purge(self) -> None:  # noqa: B027 - optional hook
        """Remove what is left of the keys tombstoned so far (never waiting for readers).

        :meth:`StreamEncryption.shred` calls it once, after all of a stream's tombstones
        are written. :meth:`delete` purges by itself.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class MemoryKeyStore(KeyStore):
    """Data keys in memory (for tests and single-process use)."""

    def __init__(self) -> None:
        self._keys: dict[str, dict[int, tuple[str, bytes]]] = {}

    async def load(self, stream: str) -> dict[int, tuple[str, bytes]]:
        return dict(self._keys.get(stream, {}))

    async def save(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> bool:
        versions = self._keys.setdefault(stream, {})
        if version in versions:
            return False
        versions[version] = (master_key_id, wrapped)
        return True

    async def replace(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> None:
        versions = self._keys.get(stream, {})
        if master_key_id == SHREDDED:
            self._keys.setdefault(stream, versions)[version] = (SHREDDED, b"")
        elif version in versions and versions[version][0] != SHREDDED:
            versions[version] = (master_key_id, wrapped)

    async def delete(self, stream: str) -> int:
        return len(self._keys.pop(stream, {}))

    async def streams(self) -> list[str]:
        return sorted(self._keys)


class SQLiteKeyStore(OneConnection, KeyStore):
    """Data keys in an SQLite file (WAL, synchronous=FULL), apart from the events.

    Every query runs on a worker thread (``asyncio.to_thread``), never on the event loop.
    ``async with`` or ``with`` closes the file on exit; a closed key store raises
    :class:`~pepperpy.event.ClosedError`. A child made by ``os.fork()`` leaves the
    parent's connection alone and opens its own on first use.

    A removed key's page is cleared from the ``-wal`` file by :meth:`purge` (which
    :meth:`StreamEncryption.shred` and :meth:`delete` call once), never waiting for
    another connection reading the file: if one is, a warning says so and the purge is
    tried again after each later write and at :meth:`close`.

    A failure of SQLite's, opening the file included, raises
    :class:`~pepperpy.event.EncryptionError` naming the file, SQLite's error and code,
    and the likely cause, as the event store's errors do (a write also says nothing of it
    was written). A file found read-only by a write has its connection opened again
    before every write until one succeeds: SQLite opened it read-only, and it would stay
    so after the file became writable.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        #: held around every use of the connection, and by fork() (``.._sqlite``)
        self._lock = threading.Lock()
        self._closed = False
        #: a key was removed since the WAL was last truncated: its page may be there
        self._unpurged = False
        #: a purge found the WAL in use (warned): retried after each write and at close
        self._purge_pending = False
        self._db: sqlite3.Connection | None = None
        #: a write found the file read-only: each write opens the connection again, until
        #: one succeeds
        self._reopen = False
        track_forks(self)
        with self._lock:
            try:
                self._db = self._open()
            except sqlite3.Error as exc:
                raise self._failure(exc) from exc

    def _failure(self, error: sqlite3.Error, outcome: str = "") -> BaseException:
        """``error`` as an :class:`EncryptionError` naming the file and its cause (lock
        held). A read-only file: see ``_reopen``."""
        self._reopen = self._reopen or read_only_file(error)
        path = os.path.abspath(self.path)
        return named_error(
            error, path, outcome, head=f"the key store {path!r} failed", kind=EncryptionError
        )

    def _open(self) -> sqlite3.Connection:
        connection = open_wal(
            self.path,
            schema="CREATE TABLE IF NOT EXISTS data_keys (stream TEXT NOT NULL, version INTEGER"
            " NOT NULL, master_key TEXT NOT NULL, wrapped BLOB NOT NULL,"
            " PRIMARY KEY (stream, version))",
        )
        # a key overwritten by a tombstone (or deleted) is zeroed where it was, not left
        # in free space of its page for whoever holds the master key to unwrap
        connection.execute("PRAGMA secure_delete=ON")
        return connection

    def __repr__(self) -> str:
        return f"SQLiteKeyStore({self.path!r})"

    def _run(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        """Run one statement (on a worker thread: every caller goes through to_thread).

        After one that wrote (changed rows), a purge that found the WAL in use is tried
        again. A write (any statement but a SELECT) that fails says nothing of it was
        written.
        """
        writes = not sql.startswith("SELECT")
        with self._lock:
            if self._closed:
                raise ClosedError(f"the key store {self.path!r} is closed")
            try:
                if writes and self._reopen and self._db is not None:
                    db, self._db = self._db, None
                    db.close()
                if self._db is None:  # a forked child: its own connection
                    self._db = self._open()
                cursor = self._db.execute(sql, args)
                result = [cursor.rowcount, *cursor.fetchall()]
            except sqlite3.Error as exc:
                raise self._failure(exc, NOTHING_WRITTEN if writes else "") from exc
            if writes:
                self._reopen = False
            if self._purge_pending and cursor.rowcount > 0:
                self._retry_purge(self._db)
            return result

    def _truncate(self, db: sqlite3.Connection) -> bool:
        """``PRAGMA wal_checkpoint(TRUNCATE)`` without waiting: True if the WAL was reset.

        With the lock held. The checkpoint waits for every reader of the file to leave
        the WAL, calling the busy handler meanwhile: with the connection's busy timeout
        (5 s) one open read transaction elsewhere (a backup, Litestream, the sqlite3
        shell) would hold the lock, and every key store call of the process, that long.
        So it runs with the busy timeout at 0 and reports busy at once.
        """
        (timeout,) = db.execute("PRAGMA busy_timeout").fetchone()
        db.execute("PRAGMA busy_timeout=0")
        try:
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError as exc:  # some builds raise instead of a row
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            busy = 1
        finally:
            db.execute(f"PRAGMA busy_timeout={int(timeout)}")
        if busy:
            return False
        self._unpurged = self._purge_pending = False
        return True

    def _purge(self) -> None:
        """Truncate the WAL after keys were removed (on a worker thread, never waiting).

        Until then the frames written before (the page that held a key) stay in the
        ``-wal`` file for as long as the key store is open. If another connection is
        reading the file, the key is removed all the same; a warning (once, until the
        WAL is truncated) says its old page remains, and the purge is tried again
        after each later write and at :meth:`close`.
        """
        with self._lock:
            if self._closed:
                raise ClosedError(f"the key store {self.path!r} is closed")
            if not self._unpurged or self._db is None:
                return  # nothing removed (a forked child's new connection wrote nothing)
            try:
                truncated = self._truncate(self._db)
            except sqlite3.Error as exc:
                raise self._failure(exc) from exc
            if not truncated and not self._purge_pending:
                self._purge_pending = True
                logger.warning(
                    "key store %r: a key was removed, but another connection reading the"
                    " file kept the WAL from being truncated; the removed key may stay in"
                    " %s-wal until the next write to the key store or its close once that"
                    " reader is done (end long read transactions on the file)",
                    self.path,
                    self.path,
                )

    def _retry_purge(self, db: sqlite3.Connection) -> None:
        """After a write (lock held): try again a purge that found the WAL in use."""
        try:
            truncated = self._truncate(db)
        except sqlite3.Error:  # the write itself went through: keep trying later
            logger.debug("key store %r: truncating the WAL failed", self.path, exc_info=True)
            return
        if truncated:
            logger.info(
                "key store %r: the WAL is truncated; the removed keys left %s-wal",
                self.path,
                self.path,
            )

    async def purge(self) -> None:
        """Truncate the WAL once keys were removed, without waiting for other readers."""
        await asyncio.to_thread(self._purge)

    async def load(self, stream: str) -> dict[int, tuple[str, bytes]]:
        _, *rows = await asyncio.to_thread(
            self._run,
            "SELECT version, master_key, wrapped FROM data_keys WHERE stream = ?",
            (stream,),
        )
        return {version: (master, bytes(wrapped)) for version, master, wrapped in rows}

    async def save(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> bool:
        count, *_ = await asyncio.to_thread(
            self._run,
            "INSERT OR IGNORE INTO data_keys VALUES (?, ?, ?, ?)",
            (stream, version, master_key_id, wrapped),
        )
        return bool(count)

    async def replace(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> None:
        shred = master_key_id == SHREDDED
        if shred:
            sql = "INSERT OR REPLACE INTO data_keys VALUES (?, ?, ?, ?)"
            args: tuple[Any, ...] = (stream, version, SHREDDED, b"")
        else:  # one statement: a shred between a load and this re-wrap wins
            sql = (
                "UPDATE data_keys SET master_key = ?, wrapped = ?"
                " WHERE stream = ? AND version = ? AND master_key != ?"
            )
            args = (master_key_id, wrapped, stream, version, SHREDDED)
        await asyncio.to_thread(self._run, sql, args)
        if shred:  # purged by purge(), once for all of a shred's tombstones
            self._unpurged = True

    async def delete(self, stream: str) -> int:
        count, *_ = await asyncio.to_thread(
            self._run, "DELETE FROM data_keys WHERE stream = ?", (stream,)
        )
        if count:
            self._unpurged = True
            await self.purge()
        return int(count)

    async def streams(self) -> list[str]:
        _, *rows = await asyncio.to_thread(
            self._run, "SELECT DISTINCT stream FROM data_keys ORDER BY stream", ()
        )
        return [row[0] for row in rows]

    async def close(self) -> None:
        """Close the file, after a query still running on a worker thread. Idempotent."""
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:  # after a query still running on another thread
            if self._db is not None and not self._closed and self._unpurged:
                self._purge_at_close(self._db)
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None

    def _purge_at_close(self, db: sqlite3.Connection) -> None:
        """The last try to truncate the WAL after keys were removed (lock held, no wait)."""
        try:
            if self._truncate(db):
                return
        except sqlite3.Error:
            logger.debug("key store %r: truncating the WAL failed", self.path, exc_info=True)
        # closing the last connection to the file would checkpoint it, but not while
        # another one reads it
        logger.warning(
            "key store %r closed while another connection kept the WAL from being"
            " truncated: a removed key may stay in %s-wal until that connection's last"
            " checkpoint",
            self.path,
            self.path,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._close()


def _associated(kind: str, stream: str, name: str | int, context: Context) -> bytes:
    """The associated data of a ciphertext: its kind, stream, name and context, in order.

    A JSON array, so no two different lists of fields give the same bytes (``"ab"`` is
    not ``"a"``, ``"b"``; ``1`` is not ``"1"``; None is not ``""``). Bytes go in as
    ``["<hex>"]``, so they never equal a str. The kind comes first: an event's
    associated data never equals a snapshot's, whatever the event id.
    """
    fields: list[Any] = [kind, stream, name]
    append = fields.append
    for value in context:
        if value.__class__ in _AS_IS:
            append(value)
        elif value.__class__ is bytes:
            append([value.hex()])
        elif isinstance(value, bytearray | memoryview):
            append([bytes(value).hex()])
        elif isinstance(value, str | int) and value.__class__ is not bool:
            append(value)  # a subclass
        else:
            raise TypeError(f"encryption context values are str, int, bytes or None, got {value!r}")
    try:
        return _dumps(fields)
    except orjson.JSONEncodeError as exc:  # a lone surrogate, an int beyond 64 bits
        raise TypeError(f"cannot bind a ciphertext to {fields[1:]!r}: {exc}") from None


_dumps = orjson.dumps
_AS_IS = frozenset({str, int, type(None)})


def _seal(associated: bytes, plaintext: bytes, version: int, cipher: Any) -> dict[str, Any]:
    nonce = os.urandom(_NONCE)
    sealed = cipher.encrypt(nonce, plaintext, associated)
    return {MARKER: FORMAT, "key": version, "blob": base64.b64encode(nonce + sealed).decode()}


def _what(kind: str, name: str | int) -> str:
    """``event <id>``, ``the snapshot at version <n>`` or ``the state saved at position
    <n>``, for error messages."""
    if kind == EVENT:
        return f"event {name}"
    if kind == STATE:
        return f"the state saved at position {name}"
    return f"the snapshot at version {name}"


def state_keys(projection: str) -> str:
    """The key store entry holding the data keys of ``projection``'s saved state.

    It starts with ``#`` and holds a space, so it is never a stream's name (a stream
    name is a topic: no whitespace, no ``#`` but as a wildcard, which a topic has not).
    """
    return f"# projection {projection}"


@dataclass(slots=True)
class _StreamKeys:
    """What one load of a stream's key store rows gave."""

    ciphers: dict[int, Any]  # live versions: an AES-GCM cipher with each unwrapped key
    wrapped: dict[int, bytes]  # the wrapped form of each, to skip unwrapping it again
    highest: int  # the highest version ever stored, tombstones included
    loaded_at: float  # time.monotonic() of the load (-inf: stale, read again)
    #: versions whose key was shredded (a tombstone): only these read as shredded
    shredded: frozenset[int] = frozenset()
    #: versions up to this one were looked for in the key store: one that is neither
    #: live nor shredded never existed (forged); a higher one may have been made
    #: elsewhere since, and needs a reload
    checked: int = 0

    def __post_init__(self) -> None:
        self.checked = max(self.checked, self.highest)

    def settle(self, version: int) -> None:
        """Record that ``version`` was looked for by the load that made this entry."""
        self.checked = max(self.checked, version)


class StreamEncryption:
    """Encrypts event data per stream; plug into ``EventStore(url, encryption=...)``.

    ``on_shredded="redact"`` (the default) reads events of a shredded stream with
    ``data=None`` and ``metadata["pepperpyshredded"] = True``, so projections over the
    whole log keep running; ``"error"`` raises :class:`EncryptionError` instead. Either
    way only versions :meth:`shred` made tombstones of read as shredded; any other key
    version the key store does not have raises :class:`EncryptionError`.

    Unwrapped keys are cached. Before every encryption the key store is read again, so
    no instance writes with a key another instance shredded; for decryption a cached
    entry is reloaded once it is ``key_cache_ttl`` seconds old (``0``: on every page),
    which bounds how long another instance's shred takes to be seen here. The key store
    is only ever read with ``await`` (:meth:`preload_page` before a page is decoded),
    so decryption never blocks the event loop on it.
    """

    def __init__(
        self,
        keyring: KeyRing,
        key_store: KeyStore | None = None,
        *,
        on_shredded: str = "redact",
        key_cache_ttl: float = 1.0,
    ) -> None:
        if on_shredded not in ("redact", "error"):
            raise ConfigurationError("on_shredded must be 'redact' or 'error'")
        if (
            isinstance(key_cache_ttl, bool)
            or not isinstance(key_cache_ttl, int | float)
            or not math.isfinite(key_cache_ttl)
            or key_cache_ttl < 0
        ):
            raise ConfigurationError(
                f"key_cache_ttl must be a finite number of seconds >= 0, got {key_cache_ttl!r}"
            )
        self.keyring = keyring
        self.key_store = key_store or MemoryKeyStore()
        self.on_shredded = on_shredded
        self.key_cache_ttl = float(key_cache_ttl)
        self._cache: dict[str, _StreamKeys] = {}

    async def _load(self, stream: str) -> _StreamKeys:
        """Read the stream's rows from the key store and refresh the cache with them."""
        return self._apply(stream, await self.key_store.load(stream))

    def _apply(self, stream: str, rows: Mapping[int, tuple[str, bytes]]) -> _StreamKeys:
        previous = self._cache.get(stream)
        ciphers: dict[int, Any] = {}
        wrapped: dict[int, bytes] = {}
        shredded: set[int] = set()
        for version, (master_id, blob) in rows.items():
            if master_id == SHREDDED:
                shredded.add(version)
                continue
            if previous is not None and previous.wrapped.get(version) == blob:
                ciphers[version] = previous.ciphers[version]
            else:
                ciphers[version] = _aesgcm(self._unwrap(stream, version, master_id, blob))
            wrapped[version] = blob
        # nothing stored yet: the absence is kept (so an envelope naming a key of this
        # stream is refused as forged, not taken for a page that was not preloaded) but
        # stale, so the next preload asks again (another instance may make a key)
        loaded_at = time.monotonic() if rows else -math.inf
        entry = _StreamKeys(ciphers, wrapped, max(rows, default=0), loaded_at, frozenset(shredded))
        self._cache[stream] = entry
        return entry

    def _unwrap(self, stream: str, version: int, master_id: str, wrapped: bytes) -> bytes:
        nonce, sealed = wrapped[:_NONCE], wrapped[_NONCE:]
        try:
            key: bytes = _aesgcm(self.keyring.key(master_id)).decrypt(
                nonce, sealed, f"{stream}#{version}".encode()
            )
        except EncryptionError:
            raise
        except Exception as exc:
            raise EncryptionError(f"cannot unwrap data key {version} of {stream!r}") from exc
        return key

    def _wrap(self, stream: str, version: int, key: bytes) -> tuple[str, bytes]:
        master_id, master = self.keyring.primary_key()
        nonce = os.urandom(_NONCE)
        sealed = _aesgcm(master).encrypt(nonce, key, f"{stream}#{version}".encode())
        return master_id, nonce + sealed

    async def _current(self, stream: str) -> tuple[int, Any]:
        """The version and cipher new data is encrypted with, checked against the key store.

        The newest live key is used only if no newer version was shredded; otherwise a
        new version is made above every version ever stored, shredded ones included.
        """
        for _ in range(_ATTEMPTS):
            entry = await self._load(stream)
            live = max(entry.ciphers, default=0)
            if live and live == entry.highest:
                return live, entry.ciphers[live]
            version = entry.highest + 1
            cipher = await self._create(stream, version)
            if cipher is not None:
                return version, cipher
        raise EncryptionError(f"could not settle on a data key for {stream!r} (key store busy)")

    async def _create(self, stream: str, version: int) -> Any:
        """A new key stored as ``version``, as a cipher; None if another writer took it."""
        key = os.urandom(32)
        cipher = _aesgcm(key)
        master_id, wrapped = self._wrap(stream, version, key)
        # finished even if the caller is cancelled: a key store on a worker thread would
        # go on writing it unseen after the cancellation
        if not await settled(self.key_store.save(stream, version, master_id, wrapped)):
            return None
        entry = self._cache.get(stream)
        if entry is None:
            self._cache[stream] = _StreamKeys({}, {}, 0, time.monotonic())
            entry = self._cache[stream]
        elif not entry.highest:  # the absence was cached: now there is a key
            entry.loaded_at = time.monotonic()
        if version > entry.highest:
            entry.ciphers[version] = cipher
            entry.wrapped[version] = wrapped
            entry.highest = version
            entry.settle(version)
        return cipher

    async def encrypt(
        self, stream: str, event_id: str, plaintext: bytes, *, context: Context = ()
    ) -> dict[str, Any]:
        """Encrypt an event's serialized data; returns the JSON object stored in its place.

        The ciphertext is bound to ``stream``, ``event_id`` and the ``context`` values
        (str, int, bytes or None, in order): decrypting needs the same ones.
        """
        version, cipher = await self._current(stream)
        return _seal(_associated(EVENT, stream, event_id, context), plaintext, version, cipher)

    async def encrypt_many(
        self, stream: str, items: Iterable[tuple[str, bytes, Context]]
    ) -> list[dict[str, Any]]:
        """:meth:`encrypt` for ``(event_id, plaintext, context)`` triples: one key store check."""
        version, cipher = await self._current(stream)
        return [
            _seal(_associated(EVENT, stream, event_id, context), plaintext, version, cipher)
            for event_id, plaintext, context in items
        ]

    async def encrypt_snapshot(
        self, stream: str, version: int, plaintext: bytes, *, context: Context = ()
    ) -> dict[str, Any]:
        """Encrypt a snapshot of ``stream`` taken at stream position ``version``.

        Its associated data is of another kind than any event's, so an event ciphertext
        never decrypts as a snapshot (nor the reverse), whatever the event's id.
        """
        key_version, cipher = await self._current(stream)
        associated = _associated(SNAPSHOT, stream, version, context)
        return _seal(associated, plaintext, key_version, cipher)

    @staticmethod
    def is_encrypted(value: Any) -> TypeGuard[Mapping[str, Any]]:
        """Whether ``value`` is an envelope of the format this version reads."""
        if value.__class__ is not dict and not isinstance(value, Mapping):
            return False
        marker = value.get(MARKER)
        return marker.__class__ is int and marker == FORMAT

    @staticmethod
    def key_version(stored: str | bytes) -> int:
        """The data key version named by stored event data (JSON text); 0 if not encrypted.

        Plain data is only searched for the marker; malformed JSON or a malformed
        envelope also gives 0, left for the decoding of the event to report.
        """
        if isinstance(stored, str):
            if MARKER not in stored:
                return 0
        elif isinstance(stored, bytes | bytearray) and _MARKER_BYTES not in stored:
            return 0
        try:
            value = orjson.loads(stored)
        except orjson.JSONDecodeError:
            return 0
        if not StreamEncryption.is_encrypted(value):
            return 0
        version = value.get("key")
        return version if version.__class__ is int and version > 0 else 0

    async def preload(
        self, streams: Iterable[str], *, versions: Mapping[str, int] | None = None
    ) -> None:
        """Load the data keys of ``streams`` so :meth:`decrypt_loaded` can run synchronously.

        Keys loaded less than ``key_cache_ttl`` seconds ago are kept; older ones are
        read again, so a shred made elsewhere is seen. ``versions`` maps a stream to the
        highest data key version about to be decrypted: a stream whose cached keys stop
        below it is read again however fresh (another instance made that key since).
        """
        now = time.monotonic()
        needed = versions or {}
        for stream in {*streams, *needed}:
            entry = self._cache.get(stream)
            version = needed.get(stream, 0)
            if (
                entry is None
                or now - entry.loaded_at >= self.key_cache_ttl
                or version > entry.checked
            ):
                (await self._load(stream)).settle(version)

    async def preload_page(self, page: Iterable[tuple[str, str | bytes]]) -> None:
        """:meth:`preload` for a page of stored ``(stream, data)`` about to be decoded.

        Collects the data key version each envelope names first, so a version made by
        another instance after this one loaded the stream is read from the key store
        here, with ``await``, and not in the middle of decoding.
        """
        versions: dict[str, int] = {}
        for stream, stored in page:
            version = self.key_version(stored)
            if version >= versions.get(stream, 0):
                versions[stream] = version
        await self.preload(versions, versions=versions)

    async def decrypt(
        self, stream: str, event_id: str, envelope: object, *, context: Context = ()
    ) -> bytes | None:
        """The plaintext, or None when the stream was shredded and redaction is on.

        ``envelope`` must be an envelope of this format bound to the same stream, event
        id and ``context`` as when it was encrypted; anything else (plain data included)
        raises :class:`EncryptionError`. Reads the key store first, so a shred made by
        any instance is seen at once (the paged reads of the event store use
        :meth:`preload` and :meth:`decrypt_loaded`).
        """
        await self._settle(stream, envelope)
        return self._open(EVENT, stream, event_id, envelope, context)

    async def decrypt_snapshot(
        self, stream: str, version: int, envelope: object, *, context: Context = ()
    ) -> bytes | None:
        """:meth:`decrypt` for what :meth:`encrypt_snapshot` gave."""
        await self._settle(stream, envelope)
        return self._open(SNAPSHOT, stream, version, envelope, context)

    async def encrypt_state(
        self, projection: str, position: int, plaintext: bytes
    ) -> dict[str, Any]:
        """Seal the state ``projection`` saves at global ``position`` (serialized JSON).

        Under a data key of its own (:func:`state_keys`, in the same key store), bound
        to the projection's name and the position, so a state moved to another
        projection or claimed for another position fails authentication.
        """
        keys = state_keys(projection)
        version, cipher = await self._current(keys)
        return _seal(_associated(STATE, keys, position, ()), plaintext, version, cipher)

    async def decrypt_state(self, projection: str, position: int, envelope: object) -> bytes:
        """What :meth:`encrypt_state` sealed; :class:`EncryptionError` for anything else.

        A state sealed under a key shredded since (:meth:`shred_state`) is an error,
        whatever ``on_shredded`` says: a state cannot be read as redacted.
        """
        keys = state_keys(projection)
        await self._settle(keys, envelope)
        plaintext = self._open(STATE, keys, position, envelope, ())
        if plaintext is None:
            raise EncryptionError(
                f"the state of projection {projection!r} saved at position {position} was"
                " sealed under a key shredded since: rebuild the projection"
            )
        return plaintext

    async def has_state_keys(self, projection: str) -> bool:
        """Whether a state of ``projection`` was ever sealed (its keys, or tombstones)."""
        return bool(await self.key_store.load(state_keys(projection)))

    async def shred_state(self, projection: str) -> bool:
        """Shred the keys of ``projection``'s saved states (:meth:`shred`).

        Every state sealed so far, copies in backups or free pages included, can no
        longer be read; the next :meth:`encrypt_state` makes a new key.
        """
        return await self.shred(state_keys(projection))

    async def _settle(self, stream: str, envelope: object) -> None:
        """Read the stream's keys, noting the envelope's version as looked for."""
        entry = await self._load(stream)
        version = envelope.get("key") if isinstance(envelope, Mapping) else None
        if version.__class__ is int:
            entry.settle(version)

    def decrypt_loaded(
        self, stream: str, event_id: str, envelope: object, *, context: Context = ()
    ) -> bytes | None:
        """:meth:`decrypt` for a stream whose keys :meth:`preload_page` already loaded.

        Never reads the key store. A key version newer than the ones loaded raises
        :class:`EncryptionError` (and the next preload reads the stream's keys again).
        """
        return self._open(EVENT, stream, event_id, envelope, context)

    def _open(
        self, kind: str, stream: str, name: str | int, envelope: object, context: Context
    ) -> bytes | None:
        """Check the envelope, find its key and decrypt: None if shredded (redacting)."""
        if not self.is_encrypted(envelope):
            raise EncryptionError(_not_an_envelope(kind, stream, name, envelope))
        version = envelope.get("key")
        if version.__class__ is not int or version < 1:
            raise EncryptionError(
                f"{_what(kind, name)} of {stream!r} has a malformed encryption envelope:"
                f" its data key version is {version!r}, not an int >= 1"
            )
        entry = self._cache.get(stream)
        if entry is None:
            raise EncryptionError(
                f"the data keys of stream {stream!r} were not loaded here: preload the page"
                f" with StreamEncryption.preload_page before decrypting {_what(kind, name)}"
            )
        if version > entry.checked:
            entry.loaded_at = -math.inf  # the next preload reads the key store again
            raise EncryptionError(
                f"data key {version} of stream {stream!r} is newer than the keys loaded here"
                f" (up to {entry.highest}), made by another instance since; preload the page"
                " with StreamEncryption.preload_page before decrypting it"
            )
        cipher = entry.ciphers.get(version)
        if cipher is None:
            if version not in entry.shredded:
                # only a shred makes a version unreadable on purpose; any other missing
                # version never had a key here: a forged envelope, or rows deleted
                entry.loaded_at = -math.inf  # read the keys again before the next page
                raise EncryptionError(
                    f"{_what(kind, name)} of {stream!r} names data key {version}, which the"
                    " key store never held for this stream (neither a live key nor a shredded"
                    " one): refused as tampered (or its key store rows were deleted)"
                )
            if self.on_shredded == "redact":
                return None
            raise EncryptionError(
                f"data key {version} of stream {stream!r} was shredded:"
                f" {_what(kind, name)} cannot be read"
            )
        try:
            raw = base64.b64decode(envelope["blob"], validate=True)
            plaintext: bytes = cipher.decrypt(
                raw[:_NONCE], raw[_NONCE:], _associated(kind, stream, name, context)
            )
        except Exception as exc:
            raise EncryptionError(
                f"{_what(kind, name)} of {stream!r} failed authentication (tampered or moved):"
                " its ciphertext, or a value it is bound to, is not what was encrypted"
            ) from exc
        return plaintext

    async def rotate(self) -> int:
        """Re-wrap every live data key under the primary master key; return how many.

        Each key is re-wrapped in one write, so a rotation cut off half-way (an error, a
        crash, a cancellation) leaves some keys under the old master key and some under
        the new one, all readable while both are in the key ring; run it again to finish
        before retiring the old master key. Cancelled, it raises only once the write under
        way is over, so the key table is then what it stays.
        """
        count = 0
        for stream in await self.key_store.streams():
            for version, (master_id, wrapped) in (await self.key_store.load(stream)).items():
                if master_id == SHREDDED:
                    continue
                key = self._unwrap(stream, version, master_id, wrapped)
                new_master, new_wrapped = self._wrap(stream, version, key)
                await settled(self.key_store.replace(stream, version, new_master, new_wrapped))
                count += 1
        for entry in self._cache.values():  # the keys themselves did not change: pages
            entry.loaded_at = -math.inf  # already preloaded still decode; the next reloads
        return count

    async def rotate_stream(self, stream: str) -> int:
        """Start a new data key version for ``stream``; return the version number."""
        entry = await self._load(stream)
        version = entry.highest + 1
        await self._create(stream, version)  # if another writer took it, theirs is as new
        return version

    async def shred(self, stream: str) -> bool:
        """Replace every data key of ``stream`` with a tombstone: its events become unreadable.

        Returns False when the stream had no live key. Version numbers stay taken, so
        events written to the stream later get a new key and read normally, while the
        old ones keep reading as shredded. Once started it runs to its end even if the
        caller is cancelled (the cancellation is raised after), so no stream is left
        half-shredded.
        """
        return await settled(self._shred(stream))

    async def _shred(self, stream: str) -> bool:
        rows = await self.key_store.load(stream)
        live = [version for version, (master_id, _) in rows.items() if master_id != SHREDDED]
        for version in live:
            await self.key_store.replace(stream, version, SHREDDED, b"")
        # what the key store now holds: a page preloaded before reads as shredded
        self._apply(stream, dict.fromkeys(rows, (SHREDDED, b"")))
        if live:  # once for all the versions (an SQLite WAL truncated: never waits)
            await self.key_store.purge()
        return bool(live)

    async def mark_shredded(self, stream: str, versions: Iterable[int]) -> int:
        """Write a tombstone for each of ``versions`` that ``stream`` has no row for.

        For key stores written before shredding kept tombstones (it deleted the rows):
        an envelope naming a version the key store never held is refused as forged, so
        the events of a stream shredded back then raise :class:`EncryptionError` until
        their versions are marked shredded here. A live key or a tombstone already
        stored is left as it is, even one stored by another instance while this runs
        (this never shreds a key: use :meth:`shred`). Returns how many tombstones were
        written.
        """
        wanted = list(versions)
        for version in wanted:
            if version.__class__ is not int or version < 1:
                raise ValueError(f"a data key version is an int >= 1, got {version!r}")
        return await settled(self._mark_shredded(stream, sorted(set(wanted))))

    async def _mark_shredded(self, stream: str, versions: list[int]) -> int:
        rows = await self.key_store.load(stream)
        written = 0
        for version in versions:
            # insert-only (KeyStore.save): another instance can store a live key under
            # a missing version between the load above and this write (the first key
            # of a stream whose rows an old shred deleted); overwriting it would shred
            # the events just encrypted with it
            if version not in rows and await self.key_store.save(stream, version, SHREDDED, b""):
                written += 1
        self._apply(stream, await self.key_store.load(stream))
        return written


def _not_an_envelope(kind: str, stream: str, name: str | int, value: object) -> str:
    """Why ``value`` is refused where an envelope belongs."""
    what = f"{_what(kind, name)} of {stream!r}"
    marker = value.get(MARKER) if isinstance(value, Mapping) else None
    if marker is None:
        return (
            f"{what} is not encrypted: plain data where the encrypted store keeps an"
            " envelope (written around the library, or before encryption was turned on);"
            " it is refused, never read as genuine"
        )
    return (
        f"{what} has an encryption envelope of format {marker!r}; this version reads"
        f" format {FORMAT} only"
    )
