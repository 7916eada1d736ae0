"""Where keys live: master keys in a :class:`KeyRing`, wrapped data keys in a :class:`KeyStore`.

:class:`MemoryKeyStore` keeps them in memory; ``SQLiteKeyStore`` (``_sqlite_keys``) in a
file; ``PostgresKeyStore`` (``_postgres_keys``) in a PostgreSQL table. :class:`StreamKeys`
is what one load of a stream's rows gave, as ``StreamEncryption`` caches it.
"""

from __future__ import annotations

import abc
import hmac
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypeAlias

from .._errors import ClosedError, ConfigurationError, EncryptionError

__all__ = ["SHREDDED", "KeyRing", "KeyStore", "MemoryKeyStore", "StreamKeys"]

#: the master key id of a shredded version's tombstone (no KeyRing id can be empty)
SHREDDED = ""
#: live keys :meth:`KeyStore.rewrap_all` reads, re-wraps and writes at a time: all a
#: rotation holds in memory (about 250 bytes a key), however many keys there are
ROTATION_PAGE = 2000

#: a live key as a rotation reads and writes it: ``(stream, version, master_key_id,
#: wrapped)``
WrappedKey: TypeAlias = tuple[str, int, str, bytes]
#: what :meth:`KeyStore.rewrap_all` calls with each page of live keys: the same keys
#: re-wrapped (under the primary master key)
Rewrap: TypeAlias = Callable[[list[WrappedKey]], list[WrappedKey]]


def page_size(page: int | None) -> int:
    """The page of :meth:`KeyStore.rewrap_all`: ``page``, or :data:`ROTATION_PAGE`
    (read now, so a test can lower it)."""
    size = ROTATION_PAGE if page is None else page
    if size.__class__ is not int or size < 1:
        raise ValueError(f"a rotation's page is an int >= 1 (keys at a time), got {size!r}")
    return size


class KeyRing:
    """Named 256-bit master keys; the ``primary`` one wraps new data keys.

    A ring of several keys needs ``primary=`` (``ConfigurationError`` without it): which
    key wraps new data keys is never taken from the mapping's order.
    """

    def __init__(
        self, keys: Mapping[str, bytes] | None = None, *, primary: str | None = None
    ) -> None:
        self._keys: dict[str, bytes] = {}
        for key_id, key in (keys or {}).items():
            self.add(key_id, key)
        if primary is not None and primary not in self._keys:
            raise ConfigurationError(f"primary key {primary!r} is not in the key ring")
        if primary is None and len(self._keys) > 1:
            # it was the mapping's last key: a ring built in another order (keys read
            # from a directory listing, a secret manager) wrapped new data keys under the
            # old master key after a rotation, which retiring that key then lost
            raise ConfigurationError(
                f"a key ring of several master keys ({list(self._keys)!r}) needs primary=,"
                " the id of the key that wraps new data keys (the newest): it is not"
                " taken from the mapping's order; KeyRing({...}, primary=key_id)"
            )
        self.primary = primary or (next(iter(self._keys)) if self._keys else None)

    @classmethod
    def generate(cls, key_id: str = "k1") -> KeyRing:
        """A key ring with one fresh random master key."""
        return cls({key_id: os.urandom(32)})

    def add(self, key_id: str, key: bytes, *, primary: bool = False) -> None:
        """Add a master key (32 bytes); make it the primary when asked.

        An id already in the ring is refused with :class:`ConfigurationError` if ``key``
        is another key: wrapped data keys name their master key by id, so an id that
        stood for two keys would leave some of them unreadable by any ring. The same key
        again is accepted (and made the primary, if asked).
        """
        if not isinstance(key, bytes) or len(key) != 32:
            raise ConfigurationError(
                f"master key {key_id!r} must be 32 bytes (AES-256), got {_shown_key(key)}"
            )
        if not isinstance(key_id, str) or not key_id or "." in key_id:
            raise ConfigurationError(f"invalid master key id {key_id!r}")
        known = self._keys.get(key_id)
        if known is not None and not hmac.compare_digest(known, key):
            raise ConfigurationError(
                f"master key {key_id!r} is already in the key ring, as another key: data "
                f"keys wrapped under {key_id!r} need that one; give the new key an id of "
                "its own"
            )
        self._keys[key_id] = key
        if primary or getattr(self, "_primary", None) is None:
            self.primary = key_id

    @property
    def primary(self) -> str | None:
        """The id of the master key that wraps new data keys (None: the ring is empty)."""
        return self._primary

    @primary.setter
    def primary(self, key_id: str | None) -> None:
        # checked as the constructor checks it: an id not in the ring failed later, at
        # the first encryption, with a bare KeyError
        if key_id is None and not getattr(self, "_keys", None):
            self._primary = None
            return
        if key_id not in self._keys:
            raise ConfigurationError(
                f"primary key {key_id!r} is not in the key ring (it holds {list(self._keys)!r})"
            )
        self._primary = key_id

    def key(self, key_id: str) -> bytes:
        try:
            return self._keys[key_id]
        except KeyError:
            raise EncryptionError(f"master key {key_id!r} is not in the key ring") from None

    def _has(self, key_id: str) -> bool:
        """Whether the ring holds a master key named ``key_id``."""
        return key_id in self._keys

    def _ids(self) -> list[str]:
        """The ids of the ring's master keys, in the order they were added."""
        return list(self._keys)

    def primary_key(self) -> tuple[str, bytes]:
        if self.primary is None:
            raise EncryptionError("the key ring has no master key")
        return self.primary, self._keys[self.primary]


def _shown_key(key: object) -> str:
    """What was given as a master key, for the error: its type and size, never its value."""
    if isinstance(key, str):
        return (
            f"a str of {len(key)} characters: a key kept as text (base64, hex) must be"
            " decoded to its 32 raw bytes first (base64.b64decode(text), bytes.fromhex(text))"
        )
    if isinstance(key, bytes | bytearray | memoryview):
        return f"{type(key).__name__} of {len(bytes(key))} bytes"
    return type(key).__name__


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

    async def load_many(self, streams: Sequence[str]) -> dict[str, dict[int, tuple[str, bytes]]]:
        """:meth:`load` for several streams: each one named maps to its versions (empty
        when none). The SQLite and PostgreSQL key stores read them in one query; this
        default calls :meth:`load` for each (the default :meth:`rewrap_all` reads a
        page of streams at a time with it)."""
        return {stream: await self.load(stream) for stream in streams}

    async def rewrap(self, keys: Sequence[tuple[str, int, str, bytes]]) -> None:
        """Write re-wrapped live keys, ``(stream, version, master_key_id, wrapped)`` each,
        as :meth:`replace` writes a live key (over a live key only): what the default
        :meth:`rewrap_all` writes each page with.

        The SQLite and PostgreSQL key stores write them all in one transaction, all or
        none. This default calls :meth:`replace` for each, one write at a time.
        """
        for stream, version, master_key_id, wrapped in keys:
            await self.replace(stream, version, master_key_id, wrapped)

    async def rewrap_all(self, rewrap: Rewrap, *, page: int | None = None) -> int:
        """Re-wrap every live key, ``page`` keys at a time (:data:`ROTATION_PAGE`, 2,000,
        when None); return how many: what :meth:`StreamEncryption.rotate` runs.

        Each page of live keys read, ``[(stream, version, master_key_id, wrapped)]``, is
        given to ``rewrap``, and the keys it returns (the same ones re-wrapped) are
        written as :meth:`rewrap` writes them (over a live key only: a key shredded
        meanwhile stays shredded) before the next page is read, so a rotation holds
        one page in memory, never every key. ``rewrap`` is plain code (no ``await``);
        the SQLite key store calls it on its worker thread.

        The SQLite and PostgreSQL key stores read and write every page in one
        transaction (all or none: an exception from ``rewrap``, or any failure, rolls
        every page back), and the memory key store never lets another call in between
        and puts every key back if one fails. This default reads
        :meth:`streams` and :meth:`load_many` a page of streams at a time and writes
        each page with one :meth:`rewrap`: cut off half-way, some pages are left under
        each master key (a key store of your own: override it to make a rotation
        atomic).
        """
        size = page_size(page)
        streams = await self.streams()
        count = 0
        keys: list[WrappedKey] = []
        for start in range(0, len(streams), size):
            loaded = await self.load_many(streams[start : start + size])
            for stream, rows in loaded.items():
                for version, (master_id, wrapped) in sorted(rows.items()):
                    if master_id == SHREDDED:
                        continue
                    keys.append((stream, version, master_id, wrapped))
                    if len(keys) == size:
                        count += await self._rewrap_page(rewrap, keys)
                        keys = []
        if keys:
            count += await self._rewrap_page(rewrap, keys)
        return count

    async def _rewrap_page(self, rewrap: Rewrap, keys: list[WrappedKey]) -> int:
        """One page of the default :meth:`rewrap_all`: re-wrapped, then written."""
        rewrapped = rewrap(keys)
        await self.rewrap(rewrapped)
        return len(rewrapped)

    async def tombstone(self, stream: str, versions: Sequence[int]) -> None:
        """Replace each of ``versions`` of ``stream`` with a tombstone, as :meth:`replace`
        does one: what :meth:`StreamEncryption.shred` writes.

        The SQLite and PostgreSQL key stores write them in one transaction, so a shred
        that fails (or a crash) leaves none of them shredded rather than some. This
        default calls :meth:`replace` for each.
        """
        for version in versions:
            await self.replace(stream, version, SHREDDED, b"")

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
    """Data keys in memory (for tests and single-process use).

    Once closed it refuses every call with :class:`~pepperpy.event.ClosedError`, as the
    SQLite and PostgreSQL key stores do (it used to go on working, so code that used a
    key store after closing it passed its tests and failed in production).
    """

    def __init__(self) -> None:
        self._keys: dict[str, dict[int, tuple[str, bytes]]] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the memory key store is closed")

    async def load(self, stream: str) -> dict[int, tuple[str, bytes]]:
        self._check_open()
        return dict(self._keys.get(stream, {}))

    async def save(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> bool:
        self._check_open()
        versions = self._keys.setdefault(stream, {})
        if version in versions:
            return False
        versions[version] = (master_key_id, wrapped)
        return True

    async def replace(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> None:
        self._check_open()
        versions = self._keys.get(stream, {})
        if master_key_id == SHREDDED:
            self._keys.setdefault(stream, versions)[version] = (SHREDDED, b"")
        elif version in versions and versions[version][0] != SHREDDED:
            versions[version] = (master_key_id, wrapped)

    async def rewrap_all(self, rewrap: Rewrap, *, page: int | None = None) -> int:
        """Every live key re-wrapped a page at a time, with no other call in between
        (nothing here waits); if ``rewrap`` raises, every key re-wrapped so far is put
        back as it was, so a rotation is all or nothing here too.

        The keys replaced stay referenced until the rotation is over (to put them back):
        a memory key store holds every key in memory anyway."""
        self._check_open()
        size = page_size(page)
        replaced: list[tuple[dict[int, tuple[str, bytes]], int, tuple[str, bytes]]] = []
        count = 0
        keys: list[WrappedKey] = []
        try:
            for stream, versions in list(self._keys.items()):
                for version, (master_id, wrapped) in sorted(versions.items()):
                    if master_id != SHREDDED:
                        keys.append((stream, version, master_id, wrapped))
                    if len(keys) == size:
                        count += self._rewrap_in_place(rewrap, keys, replaced)
                        keys = []
            if keys:
                count += self._rewrap_in_place(rewrap, keys, replaced)
        except BaseException:
            for versions, version, row in reversed(replaced):
                versions[version] = row
            raise
        return count

    def _rewrap_in_place(
        self,
        rewrap: Rewrap,
        keys: list[WrappedKey],
        replaced: list[tuple[dict[int, tuple[str, bytes]], int, tuple[str, bytes]]],
    ) -> int:
        """One page of :meth:`rewrap_all`, each key replaced noted in ``replaced``."""
        rewrapped = rewrap(keys)
        for stream, version, master_id, wrapped in rewrapped:
            versions = self._keys.get(stream, {})
            row = versions.get(version)
            if row is not None and row[0] != SHREDDED and master_id != SHREDDED:
                replaced.append((versions, version, row))
                versions[version] = (master_id, wrapped)
        return len(rewrapped)

    async def delete(self, stream: str) -> int:
        self._check_open()
        return len(self._keys.pop(stream, {}))

    async def streams(self) -> list[str]:
        self._check_open()
        return sorted(self._keys)

    async def purge(self) -> None:
        self._check_open()

    async def close(self) -> None:
        """Refuse every later call (the keys it held are dropped). Idempotent."""
        self._closed = True
        self._keys = {}


@dataclass(slots=True, weakref_slot=True)
class StreamKeys:
    """What the last load of a stream's key store rows gave (updated in place by the next
    load, so a page holding it sees that load too)."""

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
