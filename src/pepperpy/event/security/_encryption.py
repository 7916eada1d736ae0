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

Data keys live in a :class:`KeyStore` kept apart from the events: memory, an SQLite
file (``SQLiteKeyStore``), or a PostgreSQL table (``PostgresKeyStore``). A memory key
store (the default) forgets them when its process ends: events written to a store that
outlives the process are unreadable after it.
Metadata, types and stream names stay in clear text, so stores can still filter and
route.

Only one envelope format is read: ``{MARKER: FORMAT, "key": version, "blob": ...}``.
Anything else where an envelope belongs (plain data, another format) raises
:class:`EncryptionError`; there is no fallback to plain data or to an older binding.

Beside this module: the envelope format and the cipher (``_envelope``), the master key
ring and the data key stores (``_keys``, ``_sqlite_keys``).
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import threading
import time
import weakref
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, TypeGuard, TypeVar

from .._errors import ConfigurationError, EncryptionError
from .._loops import settled
from .._seconds import check_seconds
from ._envelope import (
    EVENT,
    NONCE,
    SNAPSHOT,
    STATE,
    Context,
    aesgcm,
    associated_data,
    check_plaintext,
    describe,
    is_envelope,
    not_an_envelope,
    seal,
    state_keys,
    stored_key_version,
)
from ._keys import SHREDDED, KeyRing, KeyStore, MemoryKeyStore, StreamKeys, WrappedKey
from ._postgres_keys import PostgresKeyStore
from ._sqlite_keys import SQLiteKeyStore

__all__ = [
    "KeyRing",
    "KeyStore",
    "MemoryKeyStore",
    "PostgresKeyStore",
    "SQLiteKeyStore",
    "StreamEncryption",
]

_ATTEMPTS = 10
#: streams whose unwrapped keys stay cached while unused (about 2.5 KB each): a process
#: touching millions of streams (one per user, as shredding suggests) kept them all
_CACHE_SIZE = 10_000


class StreamEncryption:
    """Encrypts event data per stream; plug into ``EventStore(url, encryption=...)``.

    ``key_store`` holds the data keys: without one, a :class:`MemoryKeyStore`, which
    forgets them when the process ends (for tests, and stores that do not outlive the
    process); give an ``SQLiteKeyStore(path)`` for a store on disk, or a
    ``PostgresKeyStore(url)`` to keep them in PostgreSQL.

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
        if not isinstance(keyring, KeyRing):
            raise TypeError(
                f"keyring must be a KeyRing (KeyRing.generate(), KeyRing({{...}})), "
                f"got {type(keyring).__name__}"
            )
        if key_store is not None and not isinstance(key_store, KeyStore):
            raise TypeError(
                "key_store must be a KeyStore (MemoryKeyStore(), SQLiteKeyStore(path), "
                "PostgresKeyStore(url), or your own subclass) or None, got "
                f"{type(key_store).__name__}"
            )
        if on_shredded not in ("redact", "error"):
            raise ConfigurationError(
                f"on_shredded must be 'redact' or 'error', got {on_shredded!r}"
            )
        key_cache_ttl = check_seconds(key_cache_ttl, "key_cache_ttl", zero=True)
        self.keyring = keyring
        self.key_store = key_store or MemoryKeyStore()
        self.on_shredded = on_shredded
        self.key_cache_ttl = key_cache_ttl
        #: the streams used last, least recently used first, at most _CACHE_SIZE
        self._cache: dict[str, StreamKeys] = {}
        #: every entry still held: the cache's, and those a page being decoded holds
        #: (what preload_page returned), evicted from the cache meanwhile or not
        self._held: weakref.WeakValueDictionary[str, StreamKeys] = weakref.WeakValueDictionary()

    def _entry(self, stream: str) -> StreamKeys | None:
        """The stream's cached keys, if any are still held."""
        entry = self._cache.get(stream)
        return entry if entry is not None else self._held.get(stream)

    def _touch(self, stream: str, entry: StreamKeys) -> None:
        """Make ``entry`` the stream's, used last; evict the least recently used beyond
        the cache's size (a page holding one keeps it until it is decoded)."""
        cache = self._cache
        cache.pop(stream, None)
        cache[stream] = entry
        self._held[stream] = entry
        while len(cache) > _CACHE_SIZE:
            del cache[next(iter(cache))]

    async def _load(self, stream: str) -> StreamKeys:
        """Read the stream's rows from the key store and refresh the cache with them."""
        return self._apply(stream, await self.key_store.load(stream))

    def _apply(self, stream: str, rows: Mapping[int, tuple[str, bytes]]) -> StreamKeys:
        previous = self._entry(stream)
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
                ciphers[version] = aesgcm(self._unwrap(stream, version, master_id, blob))
            wrapped[version] = blob
        # nothing stored yet: the absence is kept (so an envelope naming a key of this
        # stream is refused as forged, not taken for a page that was not preloaded) but
        # stale, so the next preload asks again (another instance may make a key)
        loaded_at = time.monotonic() if rows else -math.inf
        highest = max(rows, default=0)
        if previous is None:
            entry = StreamKeys(ciphers, wrapped, highest, loaded_at, frozenset(shredded))
        else:  # in place: a page holding it (evicted from the cache) sees this load too
            entry = previous
            entry.ciphers, entry.wrapped, entry.highest = ciphers, wrapped, highest
            entry.loaded_at, entry.shredded = loaded_at, frozenset(shredded)
            entry.checked = highest  # what this load looked for, as a new entry says
        self._touch(stream, entry)
        return entry

    def _unwrap(self, stream: str, version: int, master_id: str, wrapped: bytes) -> bytes:
        nonce, sealed = wrapped[:NONCE], wrapped[NONCE:]
        if not self.keyring._has(master_id):
            raise EncryptionError(
                f"cannot unwrap data key {version} of {stream!r}: it is wrapped under master"
                f" key {master_id!r}, which is not in the key ring (it holds"
                f" {self.keyring._ids()!r}); add that key to the ring (ring.add({master_id!r},"
                " key)): retire a master key only once rotate() re-wrapped every data key"
                " under its successor (see 'Keeping the master key' in docs/security.md)"
            )
        try:
            key: bytes = aesgcm(self.keyring.key(master_id)).decrypt(
                nonce, sealed, f"{stream}#{version}".encode()
            )
        except Exception as exc:
            raise EncryptionError(
                f"cannot unwrap data key {version} of {stream!r} with master key"
                f" {master_id!r}: the key ring's {master_id!r} is probably not the key that"
                " wrapped it (KeyRing.generate() makes a new random key on every run: load"
                " the same master key each time, see 'Keeping the master key' in"
                " docs/security.md), or the stored data key was altered"
            ) from exc
        return key

    def _wrap(self, stream: str, version: int, key: bytes) -> tuple[str, bytes]:
        master_id, master = self.keyring.primary_key()
        nonce = os.urandom(NONCE)
        sealed = aesgcm(master).encrypt(nonce, key, f"{stream}#{version}".encode())
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
        cipher = aesgcm(key)
        master_id, wrapped = self._wrap(stream, version, key)
        # finished even if the caller is cancelled: a key store on a worker thread would
        # go on writing it unseen after the cancellation
        if not await settled(self.key_store.save(stream, version, master_id, wrapped)):
            return None
        entry = self._entry(stream)
        if entry is None:
            entry = StreamKeys({}, {}, 0, time.monotonic())
            self._touch(stream, entry)
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
        check_plaintext(plaintext, "plaintext")
        version, cipher = await self._current(stream)
        return seal(associated_data(EVENT, stream, event_id, context), plaintext, version, cipher)

    async def encrypt_many(
        self, stream: str, items: Iterable[tuple[str, bytes, Context]]
    ) -> list[dict[str, Any]]:
        """:meth:`encrypt` for ``(event_id, plaintext, context)`` triples: one key store check."""
        items = list(items)
        for index, (_, plaintext, _) in enumerate(items):
            check_plaintext(plaintext, f"the plaintext of item {index}")
        version, cipher = await self._current(stream)
        return [
            seal(associated_data(EVENT, stream, event_id, context), plaintext, version, cipher)
            for event_id, plaintext, context in items
        ]

    async def encrypt_snapshot(
        self, stream: str, version: int, plaintext: bytes, *, context: Context = ()
    ) -> dict[str, Any]:
        """Encrypt a snapshot of ``stream`` taken at stream position ``version``.

        Its associated data is of another kind than any event's, so an event ciphertext
        never decrypts as a snapshot (nor the reverse), whatever the event's id.
        """
        check_plaintext(plaintext, "plaintext")
        key_version, cipher = await self._current(stream)
        associated = associated_data(SNAPSHOT, stream, version, context)
        return seal(associated, plaintext, key_version, cipher)

    @staticmethod
    def is_encrypted(value: Any) -> TypeGuard[Mapping[str, Any]]:
        """Whether ``value`` is an envelope of the format this version reads."""
        return is_envelope(value)

    @staticmethod
    def key_version(stored: str | bytes) -> int:
        """The data key version named by stored event data (JSON text); 0 if not encrypted.

        Plain data is only searched for the marker; malformed JSON or a malformed
        envelope also gives 0, left for the decoding of the event to report.
        """
        return stored_key_version(stored)

    async def preload(
        self, streams: Iterable[str], *, versions: Mapping[str, int] | None = None
    ) -> None:
        """Load the data keys of ``streams`` so :meth:`decrypt_loaded` can run synchronously.

        Keys loaded less than ``key_cache_ttl`` seconds ago are kept; older ones are
        read again, so a shred made elsewhere is seen. ``versions`` maps a stream to the
        highest data key version about to be decrypted: a stream whose cached keys stop
        below it is read again however fresh (another instance made that key since).

        The cache keeps the keys of the 10,000 streams used last: decrypt what was
        preloaded before other work loads more (the event store holds a page's keys
        until the page is decoded).
        """
        await self._preload(streams, versions)

    async def _preload(
        self, streams: Iterable[str], versions: Mapping[str, int] | None
    ) -> tuple[StreamKeys, ...]:
        """:meth:`preload`, returning what holds the keys: while it is held, they stay
        loaded, evicted from the cache meanwhile or not."""
        now = time.monotonic()
        needed = versions or {}
        held = []
        for stream in {*streams, *needed}:
            entry = self._entry(stream)
            version = needed.get(stream, 0)
            if (
                entry is None
                or now - entry.loaded_at >= self.key_cache_ttl
                or version > entry.checked
            ):
                entry = await self._load(stream)
                entry.settle(version)
            else:
                self._touch(stream, entry)
            held.append(entry)
        return tuple(held)

    async def preload_page(self, page: Iterable[tuple[str, str | bytes]]) -> None:
        """:meth:`preload` for a page of stored ``(stream, data)`` about to be decoded.

        Collects the data key version each envelope names first, so a version made by
        another instance after this one loaded the stream is read from the key store
        here, with ``await``, and not in the middle of decoding.
        """
        await self._preload_page(page)

    async def _preload_page(
        self, page: Iterable[tuple[str, str | bytes]]
    ) -> tuple[StreamKeys, ...]:
        """:meth:`preload_page`, returning what holds the page's keys (:meth:`_preload`):
        the event store holds it until the page is decoded."""
        versions: dict[str, int] = {}
        for stream, stored in page:
            version = self.key_version(stored)
            if version >= versions.get(stream, 0):
                versions[stream] = version
        return await self._preload(versions, versions)

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
        check_plaintext(plaintext, "plaintext")
        keys = state_keys(projection)
        version, cipher = await self._current(keys)
        return seal(associated_data(STATE, keys, position, ()), plaintext, version, cipher)

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
            raise EncryptionError(not_an_envelope(kind, stream, name, envelope))
        version = envelope.get("key")
        if version.__class__ is not int or version < 1:
            raise EncryptionError(
                f"{describe(kind, name)} of {stream!r} has a malformed encryption envelope:"
                f" its data key version is {version!r}, not an int >= 1"
            )
        entry = self._cache.get(stream)
        if entry is None:
            entry = self._held.get(stream)  # evicted from the cache, held by its page
        if entry is None:
            raise EncryptionError(
                f"the data keys of stream {stream!r} were not loaded here: preload the page"
                f" with StreamEncryption.preload_page before decrypting {describe(kind, name)}"
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
                    f"{describe(kind, name)} of {stream!r} names data key {version}, which the"
                    " key store never held for this stream (neither a live key nor a shredded"
                    " one): refused as tampered (or its key store rows were deleted)"
                    + self._forgetful_store()
                )
            if self.on_shredded == "redact":
                return None
            raise EncryptionError(
                f"data key {version} of stream {stream!r} was shredded:"
                f" {describe(kind, name)} cannot be read"
            )
        try:
            raw = base64.b64decode(envelope["blob"], validate=True)
            plaintext: bytes = cipher.decrypt(
                raw[:NONCE], raw[NONCE:], associated_data(kind, stream, name, context)
            )
        except Exception as exc:
            raise EncryptionError(
                f"{describe(kind, name)} of {stream!r} failed authentication (tampered or moved):"
                " its ciphertext, or a value it is bound to, is not what was encrypted"
                + self._forgetful_store()
            ) from exc
        return plaintext

    def _forgetful_store(self) -> str:
        """Why an envelope may name a key the key store does not have, or another key
        under its version, without anyone tampering: a :class:`MemoryKeyStore` (the
        default) forgets its keys when its process ends, so events written by an earlier
        process name keys it never held, or versions it has since given to new keys.
        For a key store that keeps them (a file, a database), the same happens when it
        is not the one the events were written with: another path (a typo, a relative
        path from another working directory, a volume not mounted) opens an empty key
        store, whose first key for a stream then takes the version its old events name.
        """
        store = self.key_store
        if store.__class__ is not MemoryKeyStore and not (
            isinstance(store, SQLiteKeyStore) and store.path in ("", ":memory:")
        ):
            return (
                f"; or {store!r} is not the key store the events were written with"
                " (another file or database: check its path or URL; a key written to it"
                " for this stream takes the version number its older events name)"
            )
        return (
            "; or the events were written by another process: this"
            " StreamEncryption keeps its data keys in a MemoryKeyStore (the default"
            " without key_store=), which forgets them when its process ends, so they are"
            " lost for good; keep data keys that must outlive the process in an"
            " SQLiteKeyStore(path) (see 'Encryption at rest' in docs/security.md)"
        )

    async def rotate(self) -> int:
        """Re-wrap every live data key under the primary master key; return how many.

        The key store does it a page of keys at a time (:meth:`KeyStore.rewrap_all`,
        2,000 keys), so a rotation holds one page in memory however many keys there
        are. The SQLite and PostgreSQL key stores read and write every page in one
        transaction (the memory key store lets no other call in between): a rotation
        cut off (an error, a crash, a cancellation) leaves every key under its old
        master key, and one that returned left every key it counted under the new one.
        A key store of your own without a ``rewrap_all`` of its own writes a page at a
        time: cut off half-way, some keys are left under each master key, all readable
        while both are in the key ring; run it again to finish. Either way, retire the
        old master key only once a rotation returned. A key shredded while this runs
        stays shredded (a re-wrap never overwrites a tombstone). Cancelled, it stops
        before its next page and rolls back, and raises only once the key store is done
        (a rotation already committing finishes first), so the key table is then what
        it stays.
        """
        stop = threading.Event()  # set by a cancellation; read on SQLite's worker thread

        def rewrap(keys: list[WrappedKey]) -> list[WrappedKey]:
            if stop.is_set():
                raise _Stopped("the rotation was cancelled")
            return [
                (
                    stream,
                    version,
                    *self._wrap(stream, version, self._unwrap(stream, version, master_id, wrapped)),
                )
                for stream, version, master_id, wrapped in keys
            ]

        count = await _stopping(self.key_store.rewrap_all(rewrap), stop)
        for entry in list(self._held.values()):  # the keys themselves did not change:
            entry.loaded_at = -math.inf  # pages preloaded still decode; the next reloads
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
        half-shredded; the tombstones are written with one :meth:`KeyStore.tombstone`
        (one transaction on SQLite and PostgreSQL), so a shred that fails, or a crash,
        leaves the stream as it was (shred it again), not some of its versions readable.
        """
        return await settled(self._shred(stream))

    async def _shred(self, stream: str) -> bool:
        try:
            rows = await self.key_store.load(stream)
            # in version order, as a rotation locks them (PostgreSQL: no deadlock with one)
            live = sorted(
                version for version, (master_id, _) in rows.items() if master_id != SHREDDED
            )
            # one write (one transaction on SQLite and PostgreSQL): a shred that fails
            # leaves the stream as it was, never half-shredded
            await self.key_store.tombstone(stream, live)
        except EncryptionError as exc:
            # the key store's words ("nothing of this call was written; reads go on")
            # did not say that the erasure asked for was not made
            raise EncryptionError(
                f"could not shred {stream!r}: {exc}; the stream may not be shredded (its"
                " events may still be readable): shred it again once the cause is gone"
                " (shredding a stream already shredded changes nothing)"
            ) from exc
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


class _Stopped(Exception):
    """Raised into a rotation's key store by its ``rewrap`` once the rotation was
    cancelled: the key store rolls back."""


T = TypeVar("T")


async def _stopping(operation: Coroutine[Any, Any, T], stop: threading.Event) -> T:
    """:func:`~pepperpy.event._loops.settled` for a rotation: run ``operation`` to its
    end even if the caller is cancelled meanwhile, but set ``stop`` then, so that it
    stops at its next page and rolls back instead of going on for minutes. The
    cancellation is raised once it is over (its commit, if it was committing)."""
    task = asyncio.ensure_future(operation)
    interrupted: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError as exc:
            interrupted = exc
            stop.set()
    if interrupted is None:
        return task.result()
    failure = None if task.cancelled() else task.exception()
    raise interrupted from (None if isinstance(failure, _Stopped) else failure)
