"""Encryption at rest for event data: AES-256-GCM, per-stream keys, rotation, shredding.

Envelope encryption: each stream has its own random 256-bit *data key*; data keys are
stored wrapped (AES-256-GCM) under a *master key* from a :class:`KeyRing`. Event data is
encrypted with the stream's data key, with the stream name and event id as associated
data, so a ciphertext cannot be moved to another event or stream unnoticed.

* Master key rotation: add a new master key and call :meth:`StreamEncryption.rotate`;
  data keys are re-wrapped, event data is untouched.
* Data key rotation: :meth:`StreamEncryption.rotate_stream` starts a new data key
  version for a stream; older events stay readable with the older versions.
* Crypto-shredding: :meth:`StreamEncryption.shred` deletes a stream's data keys, so its
  events can no longer be decrypted anywhere, backups included.

Data keys live in a :class:`KeyStore` kept apart from the events: memory, or an SQLite
file (``SQLiteKeyStore``). Metadata, types and stream names stay in clear text, so
stores can still filter and route.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from .._deps import require
from .._errors import ConfigurationError, EncryptionError
from .._sqlite import open_wal

__all__ = ["KeyRing", "KeyStore", "MemoryKeyStore", "SQLiteKeyStore", "StreamEncryption"]

MARKER = "$pepperpy.encrypted"
_NONCE = 12


def _aesgcm(key: bytes) -> Any:
    module = require(
        "cryptography.hazmat.primitives.ciphers.aead", extra="crypto", feature="encryption"
    )
    return module.AESGCM(key)


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
    """Where wrapped data keys live: ``stream -> {version: (master_key_id, wrapped)}``."""

    @abc.abstractmethod
    async def load(self, stream: str) -> dict[int, tuple[str, bytes]]:
        """Every data key version of ``stream`` (empty when none or shredded)."""

    @abc.abstractmethod
    async def save(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> bool:
        """Store a version unless it exists; False if another writer stored it first."""

    @abc.abstractmethod
    async def replace(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> None:
        """Overwrite a version (used when re-wrapping under a new master key)."""

    @abc.abstractmethod
    async def delete(self, stream: str) -> int:
        """Delete every version of ``stream``; return how many were deleted."""

    @abc.abstractmethod
    async def streams(self) -> list[str]:
        """Streams that have data keys."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


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
        self._keys.setdefault(stream, {})[version] = (master_key_id, wrapped)

    async def delete(self, stream: str) -> int:
        return len(self._keys.pop(stream, {}))

    async def streams(self) -> list[str]:
        return sorted(self._keys)


class SQLiteKeyStore(KeyStore):
    """Data keys in an SQLite file (WAL, synchronous=FULL), apart from the events."""

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._db = open_wal(
            path,
            schema="CREATE TABLE IF NOT EXISTS data_keys (stream TEXT NOT NULL, version INTEGER"
            " NOT NULL, master_key TEXT NOT NULL, wrapped BLOB NOT NULL,"
            " PRIMARY KEY (stream, version))",
        )

    def _run(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        with self._lock:
            cursor = self._db.execute(sql, args)
            return [cursor.rowcount, *cursor.fetchall()]

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
        await asyncio.to_thread(
            self._run,
            "INSERT OR REPLACE INTO data_keys VALUES (?, ?, ?, ?)",
            (stream, version, master_key_id, wrapped),
        )

    async def delete(self, stream: str) -> int:
        count, *_ = await asyncio.to_thread(
            self._run, "DELETE FROM data_keys WHERE stream = ?", (stream,)
        )
        return int(count)

    async def streams(self) -> list[str]:
        _, *rows = await asyncio.to_thread(
            self._run, "SELECT DISTINCT stream FROM data_keys ORDER BY stream", ()
        )
        return [row[0] for row in rows]

    async def close(self) -> None:
        with self._lock:
            self._db.close()


class StreamEncryption:
    """Encrypts event data per stream; plug into ``EventStore(url, encryption=...)``.

    ``on_shredded="redact"`` (the default) reads events of a shredded stream with
    ``data=None`` and ``metadata["pepperpyshredded"] = True``, so projections over the
    whole log keep running; ``"error"`` raises :class:`EncryptionError` instead.
    """

    def __init__(
        self,
        keyring: KeyRing,
        key_store: KeyStore | None = None,
        *,
        on_shredded: str = "redact",
    ) -> None:
        if on_shredded not in ("redact", "error"):
            raise ConfigurationError("on_shredded must be 'redact' or 'error'")
        self.keyring = keyring
        self.key_store = key_store or MemoryKeyStore()
        self.on_shredded = on_shredded
        self._cache: dict[str, dict[int, bytes]] = {}

    async def _keys(self, stream: str) -> dict[int, bytes]:
        cached = self._cache.get(stream)
        if cached is not None:
            return cached
        keys = {
            version: self._unwrap(stream, version, master_id, wrapped)
            for version, (master_id, wrapped) in (await self.key_store.load(stream)).items()
        }
        if keys:
            self._cache[stream] = keys
        return keys

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

    async def _current(self, stream: str) -> tuple[int, bytes]:
        keys = await self._keys(stream)
        if keys:
            version = max(keys)
            return version, keys[version]
        return await self._new_version(stream, 1)

    async def _new_version(self, stream: str, version: int) -> tuple[int, bytes]:
        key = os.urandom(32)
        master_id, wrapped = self._wrap(stream, version, key)
        if not await self.key_store.save(stream, version, master_id, wrapped):
            self._cache.pop(stream, None)  # another writer won: use theirs
            keys = await self._keys(stream)
            return version, keys[version]
        self._cache.setdefault(stream, {})[version] = key
        return version, key

    async def encrypt(self, stream: str, event_id: str, plaintext: bytes) -> dict[str, Any]:
        """Encrypt serialized data; returns the JSON object stored in its place."""
        version, key = await self._current(stream)
        nonce = os.urandom(_NONCE)
        sealed = _aesgcm(key).encrypt(nonce, plaintext, f"{stream}\x00{event_id}".encode())
        return {MARKER: 1, "key": version, "blob": base64.b64encode(nonce + sealed).decode()}

    @staticmethod
    def is_encrypted(value: Any) -> bool:
        return isinstance(value, Mapping) and value.get(MARKER) == 1

    async def preload(self, streams: Iterable[str]) -> None:
        """Load the data keys of ``streams`` so :meth:`decrypt_loaded` can run synchronously."""
        for stream in set(streams):
            if stream not in self._cache:
                await self._keys(stream)

    async def decrypt(
        self, stream: str, event_id: str, envelope: Mapping[str, Any]
    ) -> bytes | None:
        """The plaintext, or None when the stream was shredded and redaction is on."""
        await self.preload((stream,))
        return self.decrypt_loaded(stream, event_id, envelope)

    def decrypt_loaded(
        self, stream: str, event_id: str, envelope: Mapping[str, Any]
    ) -> bytes | None:
        """:meth:`decrypt` for a stream whose keys :meth:`preload` already loaded."""
        keys = self._cache.get(stream, {})
        version = envelope.get("key")
        key = keys.get(version) if isinstance(version, int) else None
        if key is None:
            if self.on_shredded == "redact":
                return None
            raise EncryptionError(
                f"data key {version!r} of stream {stream!r} is gone (shredded or never stored)"
            )
        cipher = _aesgcm(key)
        try:
            raw = base64.b64decode(envelope["blob"], validate=True)
            plaintext: bytes = cipher.decrypt(
                raw[:_NONCE], raw[_NONCE:], f"{stream}\x00{event_id}".encode()
            )
        except Exception as exc:
            raise EncryptionError(
                f"event {event_id} of {stream!r} failed authentication (tampered or moved)"
            ) from exc
        return plaintext

    async def rotate(self) -> int:
        """Re-wrap every data key under the primary master key; return how many."""
        count = 0
        for stream in await self.key_store.streams():
            for version, (master_id, wrapped) in (await self.key_store.load(stream)).items():
                key = self._unwrap(stream, version, master_id, wrapped)
                new_master, new_wrapped = self._wrap(stream, version, key)
                await self.key_store.replace(stream, version, new_master, new_wrapped)
                count += 1
        self._cache.clear()
        return count

    async def rotate_stream(self, stream: str) -> int:
        """Start a new data key version for ``stream``; return the version number."""
        keys = await self._keys(stream)
        version, _ = await self._new_version(stream, max(keys, default=0) + 1)
        return version

    async def shred(self, stream: str) -> bool:
        """Delete every data key of ``stream``: its events become unreadable for good."""
        self._cache.pop(stream, None)
        deleted = await self.key_store.delete(stream)
        return deleted > 0
