"""Data keys in a PostgreSQL table (:class:`PostgresKeyStore`), through asyncpg."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from .._deps import require
from .._errors import ClosedError, EncryptionError
from .._redact import redact_url
from ..store._pg_connect import cut, shielded_connect, tune_socket
from ..store._pg_options import parse_options
from ..store._pg_schema import schema_change
from ._keys import SHREDDED, KeyStore, Rewrap, WrappedKey, page_size

__all__ = ["PostgresKeyStore"]

logger = logging.getLogger("pepperpy.event.security")

T = TypeVar("T")

#: the table, in the URL's ``?schema=`` (or the connection's current schema)
TABLE = "pepperpy_data_keys"
_CREATE = (
    "CREATE TABLE IF NOT EXISTS {table} (stream TEXT NOT NULL, version INTEGER NOT NULL,"
    " master_key TEXT NOT NULL, wrapped BYTEA NOT NULL, PRIMARY KEY (stream, version))"
)
#: the connection's current schema, and whether the table is there
_FOUND = "SELECT current_schema(), to_regclass($1) IS NOT NULL"
_NOTHING_WRITTEN = "; nothing was written"
_UNKNOWN = (
    "; whether it was written is unknown (the connection was lost, or the server did not"
    " answer, once the statement was sent): load the stream's keys to see"
)


class _Raised(Exception):
    """What ``rewrap`` raised in :meth:`PostgresKeyStore.rewrap_all`, carried past the
    key store's own failure handling (it is the caller's, not the store's)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _Lost(Exception):
    """An attempt found its connection lost: ``error`` says so, if it is not tried again."""

    def __init__(self, error: EncryptionError) -> None:
        super().__init__(str(error))
        self.error = error


class _Share:
    """The key store's connection on one event loop (asyncpg's work on their own loop
    only); calls on that loop take turns on it.

    ``keeper`` is a task that only waits: ``asyncio.run`` cancels it as its loop shuts
    down, and it then drops the connection while the loop can still close the socket
    (left to the garbage collector, it was an unclosed transport and socket).
    """

    __slots__ = ("connection", "keeper", "lock", "openings")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.connection: Any = None
        self.keeper: asyncio.Task[None] | None = None
        #: connections being opened (see ``shielded_connect``)
        self.openings: set[asyncio.Future[Any]] = set()

    def drop(self) -> None:
        """Cut the connection off (lost, timed out, or its caller cancelled)."""
        connection, self.connection = self.connection, None
        if connection is not None:
            cut(connection)

    def keep(self) -> None:
        """Start the keeper on the running loop, if it has none."""
        if self.keeper is None or self.keeper.done():
            loop = asyncio.get_running_loop()
            keeper = loop.create_task(_keep(self), context=contextvars.Context())
            _KEEPERS.add(keeper)
            keeper.add_done_callback(_KEEPERS.discard)
            self.keeper = keeper

    def stop(self) -> None:
        """Drop the connection and stop the keeper (the key store is closing)."""
        keeper, self.keeper = self.keeper, None
        if keeper is not None and not keeper.done():
            with contextlib.suppress(RuntimeError):  # its loop is closed
                keeper.cancel()
        self.drop()


#: keepers under way: a task is otherwise referenced weakly by its loop alone
_KEEPERS: set[asyncio.Task[None]] = set()


async def _keep(share: _Share) -> None:
    """Wait until cancelled (the loop shutting down, or ``close()``); then drop the
    share's connection. Holds the share, not the key store: one dropped without
    ``close()`` has its connection closed with the loop, not left to the garbage
    collector."""
    try:
        await asyncio.Event().wait()
    finally:
        share.drop()


class PostgresKeyStore(KeyStore):
    """Data keys in a table (``pepperpy_data_keys``) of a PostgreSQL database, via asyncpg.

    The same contract as ``SQLiteKeyStore``: a version is stored once (``save``), a
    tombstone overwrites anything and a re-wrap only a live key (``replace``, one
    statement, so a shred between a load and a re-wrap wins), :meth:`rewrap_all` runs
    a rotation a page at a time in one transaction (all or none), ``delete`` forgets a
    stream.
    The URL is the event store's form, with its options: ``?schema=name`` puts the
    table in that schema (created if missing), ``command_timeout`` bounds each call's
    wait for the server, ``connect_timeout`` a new connection. The table is created on
    first use, idempotently, under the event store's schema lock, so key stores opened
    at once in several processes do not collide in the catalog.

    One connection per event loop, opened on first use there; calls on one loop take
    turns on it. A failure raises :class:`~pepperpy.event.EncryptionError` naming the
    store (its URL's password hidden) and the cause, and says whether a write was
    made: "nothing was written" when the server refused it or it was never sent,
    "unknown" when the connection was lost or silent after sending it. A lost or silent
    connection is cut off, and the next call opens a new one; a call that finds the
    connection it kept from before lost (the server restarted, failed over, or ended it
    while idle) is done once more on a new one (logged as a warning), except
    ``delete``. A closed key store raises :class:`~pepperpy.event.ClosedError`.

    Keep it in a database (or at least a schema) whose backups are not the events':
    every copy holding both the events and their keys defeats the encryption. A
    removed key stays readable in PostgreSQL's own copies until they are gone: the old
    row version until ``VACUUM`` reclaims it (:meth:`purge` runs one on the table),
    and the WAL segments and base backups taken meanwhile for as long as they are kept.
    """

    def __init__(self, url: str) -> None:
        if not isinstance(url, str):
            raise TypeError(f"a PostgreSQL key store URL must be a str, got {type(url).__name__}")
        self.url = url
        # a bad URL (port, host list, option) is refused here, before connecting
        self._dsn, self.options = parse_options(url)
        self.schema = self.options.schema
        self._settings = {} if self.schema is None else {"search_path": self.schema}
        self._shares: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Share] = (
            weakref.WeakKeyDictionary()
        )
        #: the table, qualified with the schema it was found in on the first connection
        self._table = TABLE
        self._closed = False
        self._asyncpg: Any = None

    def __repr__(self) -> str:
        return f"PostgresKeyStore({redact_url(self.url)!r})"

    # -- connections ------------------------------------------------------------------

    def _driver(self) -> Any:
        if self._asyncpg is None:
            self._asyncpg = require("asyncpg", extra="postgres", feature="a PostgreSQL key store")
        return self._asyncpg

    def _errors(self) -> tuple[type[BaseException], ...]:
        asyncpg = self._driver()
        # InternalClientError: what asyncpg raises for a connection the server ended
        # while it was idle (its FATAL message read as the next call begins)
        return (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
            OSError,
            ValueError,
        )

    def _share(self) -> _Share:
        loop = asyncio.get_running_loop()
        share = self._shares.get(loop)
        if share is None:
            share = self._shares[loop] = _Share()
        return share

    async def _open(self, share: _Share) -> Any:
        """A new connection, with the table set up on it (idempotent)."""
        asyncpg = self._driver()
        connection = await shielded_connect(
            share.openings,
            asyncpg.connect,
            self._dsn,
            server_settings=self._settings,
            timeout=self.options.connect_timeout,
        )
        try:
            tune_socket(connection, self.options.command_timeout)
            async with asyncio.timeout(self.options.command_timeout):
                current, found = await connection.fetchrow(_FOUND, TABLE)
                if current is not None:
                    self._table = f'"{current.replace(chr(34), chr(34) * 2)}".{TABLE}'
                if not found:  # other key stores may create it now: take turns
                    async with schema_change(connection, self.schema):
                        await connection.execute(_CREATE.format(table=self._table))
        except BaseException:
            cut(connection)
            raise
        return connection

    async def _call(
        self,
        doing: str,
        work: Callable[[Any], Awaitable[T]],
        *,
        write: bool,
        again: bool = True,
        bounded: bool = True,
    ) -> T:
        """Run ``work(connection)`` on this loop's connection, bounded by
        ``command_timeout``; asyncpg's failures as :class:`EncryptionError`.

        A connection kept from before that turns out lost (the server restarted, failed
        over, or ended it while idle) is replaced and the work done once more on the new
        one, logged as a warning, if ``again``: every call but ``delete`` (whose count a
        second run would not repeat) gives the same result done twice.
        """
        if self._closed:
            raise ClosedError(f"the key store {self!r} is closed")
        share = self._share()
        async with share.lock:
            for last in (False, True):
                if self._closed:
                    raise ClosedError(f"the key store {self!r} is closed")
                kept = share.connection is not None and not share.connection.is_closed()
                try:
                    return await self._attempt(share, doing, work, write, bounded)
                except _Lost as lost:
                    if last or not kept or not again:
                        raise lost.error from lost.error.__cause__
                    logger.warning("%s: %s; trying once more on a new connection", self, lost.error)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self,
        share: _Share,
        doing: str,
        work: Callable[[Any], Awaitable[T]],
        write: bool,
        bounded: bool,
    ) -> T:
        """One attempt of :meth:`_call` (its lock held); a lost connection as
        :class:`_Lost`. Not ``bounded``: ``work`` bounds each of its statements."""
        sent = False
        try:
            if share.connection is None or share.connection.is_closed():
                share.drop()
                share.connection = await self._open(share)
                share.keep()
            connection = share.connection
            sent = True
            async with asyncio.timeout(self.options.command_timeout if bounded else None):
                return await work(connection)
        except asyncio.CancelledError:
            share.drop()  # mid-statement: cut off, so the cancellation is at once
            raise
        except TimeoutError as exc:
            share.drop()
            if sent:
                bound = f"{self.options.command_timeout:g} s (command_timeout)"
            else:
                bound = f"{self.options.connect_timeout:g} s (connect_timeout) to connect"
            raise self._failure(
                doing,
                f"PostgreSQL did not answer within {bound}",
                (_UNKNOWN if sent else _NOTHING_WRITTEN) if write else "",
            ) from exc
        except self._errors() as exc:
            asyncpg = self._driver()
            refused = isinstance(exc, asyncpg.PostgresError) and not isinstance(
                exc, asyncpg.PostgresConnectionError
            )
            gone = share.connection is None or share.connection.is_closed()
            if not refused or gone:
                share.drop()
            outcome = _NOTHING_WRITTEN if refused or not sent else _UNKNOWN
            error = self._failure(doing, _reason(exc), outcome if write else "")
            error.__cause__ = exc
            if sent and (gone or not refused):
                raise _Lost(error) from exc
            raise error from exc

    def _failure(self, doing: str, reason: str, outcome: str) -> EncryptionError:
        return EncryptionError(f"the key store {self!r} failed {doing}: {reason}{outcome}")

    # -- the contract -----------------------------------------------------------------

    async def load(self, stream: str) -> dict[int, tuple[str, bytes]]:
        rows = await self._call(
            f"loading the keys of {stream!r}",
            lambda connection: connection.fetch(
                f"SELECT version, master_key, wrapped FROM {self._table} WHERE stream = $1",
                stream,
            ),
            write=False,
        )
        return {row[0]: (row[1], bytes(row[2])) for row in rows}

    async def load_many(self, streams: Sequence[str]) -> dict[str, dict[int, tuple[str, bytes]]]:
        """Every version of each of ``streams``, in one query (a thousand at a time)."""
        found: dict[str, dict[int, tuple[str, bytes]]] = {stream: {} for stream in streams}
        names = list(found)
        for start in range(0, len(names), _MANY):
            chunk = names[start : start + _MANY]

            async def fetch(connection: Any, chunk: list[str] = chunk) -> list[Any]:
                return await connection.fetch(  # type: ignore[no-any-return]
                    f"SELECT stream, version, master_key, wrapped FROM {self._table}"
                    " WHERE stream = ANY($1::text[])",
                    chunk,
                )

            rows = await self._call(f"loading the keys of {len(chunk)} streams", fetch, write=False)
            for stream, version, master, wrapped in rows:
                found[stream][version] = (master, bytes(wrapped))
        return found

    async def save(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> bool:
        status: str = await self._call(
            f"saving key {version} of {stream!r}",
            lambda connection: connection.execute(
                f"INSERT INTO {self._table} VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                stream,
                version,
                master_key_id,
                wrapped,
            ),
            write=True,
        )
        return status.endswith(" 1")

    async def replace(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> None:
        if master_key_id == SHREDDED:
            sql = _TOMBSTONE
            args: tuple[Any, ...] = (stream, version, SHREDDED, b"")
            doing = f"shredding key {version} of {stream!r}"
        else:  # one statement: a shred between a load and this re-wrap wins
            sql = _REWRAP
            args = (master_key_id, wrapped, stream, version, SHREDDED)
            doing = f"re-wrapping key {version} of {stream!r}"
        await self._call(
            doing,
            lambda connection: connection.execute(sql.format(table=self._table), *args),
            write=True,
        )

    async def rewrap(self, keys: Sequence[tuple[str, int, str, bytes]]) -> None:
        """Every re-wrapped key in one transaction: all of them written, or none.

        Sent in batches of 10,000, each bounded by ``command_timeout`` (a rotation of a
        million keys takes longer than one bound), the ``COMMIT`` too.
        """
        if not keys:
            return
        rows = [
            (master, wrapped, stream, version, SHREDDED)
            for stream, version, master, wrapped in keys
        ]
        bound = self.options.command_timeout

        async def transact(connection: Any) -> None:
            sql = _REWRAP.format(table=self._table)
            async with asyncio.timeout(bound):
                await connection.execute("BEGIN")
            try:
                for start in range(0, len(rows), _BATCH):
                    async with asyncio.timeout(bound):
                        await connection.executemany(sql, rows[start : start + _BATCH])
                async with asyncio.timeout(bound):
                    await connection.execute("COMMIT")
            except self._driver().PostgresError:
                # refused (a constraint, a trigger): roll back, or the connection stays
                # in a failed transaction; a connection lost or cut rolls back by itself
                try:
                    async with asyncio.timeout(bound):
                        await connection.execute("ROLLBACK")
                except Exception:
                    cut(connection)
                raise

        await self._call(f"re-wrapping {len(rows)} keys", transact, write=True, bounded=False)

    async def rewrap_all(self, rewrap: Rewrap, *, page: int | None = None) -> int:
        """Every live key re-wrapped, ``page`` keys at a time, in one transaction (all
        or none).

        Each page is read in key order after the last one (``FOR UPDATE``: a shred of
        a key read waits for the commit, then wins), re-wrapped, and written before the
        next is read; each statement, the ``COMMIT`` too, is bounded by
        ``command_timeout``, not the rotation as a whole. Anything raised (by
        ``rewrap`` too) rolls every page back; a connection lost or cut off (a
        cancellation) leaves the transaction uncommitted, so PostgreSQL rolls it back.
        """
        size = page_size(page)
        bound = self.options.command_timeout

        async def transact(connection: Any) -> int:
            first = _LIVE_FIRST.format(table=self._table)
            after = _LIVE_AFTER.format(table=self._table)
            write = _REWRAP.format(table=self._table)
            async with asyncio.timeout(bound):
                await connection.execute("BEGIN")
            try:
                count = 0
                async with asyncio.timeout(bound):
                    rows = await connection.fetch(first, SHREDDED, size)
                while rows:
                    last = (rows[-1][0], rows[-1][1])
                    keys: list[WrappedKey] = [
                        (row[0], row[1], row[2], bytes(row[3])) for row in rows
                    ]
                    rows = []  # one page held at a time
                    try:
                        rewrapped = rewrap(keys)
                    except Exception as exc:
                        raise _Raised(exc) from exc
                    async with asyncio.timeout(bound):
                        await connection.executemany(
                            write,
                            [
                                (master, wrapped, stream, version, SHREDDED)
                                for stream, version, master, wrapped in rewrapped
                            ],
                        )
                    count += len(rewrapped)
                    del keys, rewrapped
                    async with asyncio.timeout(bound):
                        rows = await connection.fetch(after, SHREDDED, size, *last)
                async with asyncio.timeout(bound):
                    await connection.execute("COMMIT")
            except (asyncio.CancelledError, TimeoutError):
                raise  # the connection is cut off: PostgreSQL rolls back
            except BaseException:
                # refused (a constraint, a trigger) or raised by rewrap: roll back, or the
                # connection stays in a failed or open transaction; a connection lost
                # rolls back by itself
                try:
                    async with asyncio.timeout(bound):
                        await connection.execute("ROLLBACK")
                except Exception:
                    cut(connection)
                raise
            return count

        try:
            return await self._call("re-wrapping its keys", transact, write=True, bounded=False)
        except _Raised as raised:
            raise raised.error from raised.error.__cause__

    async def tombstone(self, stream: str, versions: Sequence[int]) -> None:
        """Every tombstone in one transaction: all of them written, or none."""
        if not versions:
            return
        rows = [(stream, version, SHREDDED, b"") for version in versions]

        async def transact(connection: Any) -> None:
            async with connection.transaction():
                await connection.executemany(_TOMBSTONE.format(table=self._table), rows)

        await self._call(f"shredding {len(rows)} keys of {stream!r}", transact, write=True)

    async def delete(self, stream: str) -> int:
        status: str = await self._call(
            f"deleting the keys of {stream!r}",
            lambda connection: connection.execute(
                f"DELETE FROM {self._table} WHERE stream = $1", stream
            ),
            write=True,
            again=False,
        )
        count = int(status.rsplit(" ", 1)[-1])
        if count:
            await self.purge()
        return count

    async def streams(self) -> list[str]:
        # byte order (as SQLite and Python sort), whatever the database's collation
        rows = await self._call(
            "listing its streams",
            lambda connection: connection.fetch(
                f'SELECT DISTINCT stream COLLATE "C" FROM {self._table} ORDER BY 1'
            ),
            write=False,
        )
        return [row[0] for row in rows]

    async def purge(self) -> None:
        """``VACUUM`` the table, so the removed keys' old row versions are reclaimed now.

        PostgreSQL keeps them until then (and cannot reclaim one a transaction still
        open elsewhere may see); a failure is logged, not raised: the keys are removed
        all the same.
        """
        try:
            await self._call(
                "vacuuming its table",
                lambda connection: connection.execute(f"VACUUM {self._table}"),
                write=False,
            )
        except EncryptionError:
            logger.warning(
                "key store %r: VACUUM after a key was removed failed; PostgreSQL reclaims"
                " the removed rows at its next (auto)vacuum",
                self,
                exc_info=True,
            )

    async def close(self) -> None:
        """Close this loop's connection (after a call under way); drop other loops'.

        Idempotent; bounded by ``command_timeout`` (10 s at most), past which the
        connection is cut off.
        """
        self._closed = True
        here = asyncio.get_running_loop()
        shares = list(self._shares.items())
        self._shares.clear()
        for loop, share in shares:
            if loop is not here:
                try:
                    loop.call_soon_threadsafe(share.stop)
                except RuntimeError:  # that loop is closed
                    share.stop()
                continue
            try:
                async with asyncio.timeout(self.options.close_timeout):
                    async with share.lock:  # a call under way finishes first
                        pass
            except TimeoutError:
                pass
            finally:
                share.stop()


#: streams :meth:`PostgresKeyStore.load_many` reads in one query
_MANY = 1000
#: re-wrapped keys sent in one round of :meth:`PostgresKeyStore.rewrap`
_BATCH = 10_000
#: a version made a tombstone, whatever it held (or if it held nothing)
_TOMBSTONE = (
    "INSERT INTO {table} VALUES ($1, $2, $3, $4) ON CONFLICT (stream, version)"
    " DO UPDATE SET master_key = EXCLUDED.master_key, wrapped = EXCLUDED.wrapped"
)
#: a rotation's first page of live keys, in key order (the primary key's), locked
_LIVE_FIRST = (
    "SELECT stream, version, master_key, wrapped FROM {table} WHERE master_key <> $1"
    " ORDER BY stream, version LIMIT $2 FOR UPDATE"
)
#: its next page: the live keys after the last one read
_LIVE_AFTER = (
    "SELECT stream, version, master_key, wrapped FROM {table} WHERE (stream, version) >"
    " ($3, $4) AND master_key <> $1 ORDER BY stream, version LIMIT $2 FOR UPDATE"
)
#: a live key re-wrapped, never over a tombstone (nor a missing row)
_REWRAP = (
    "UPDATE {table} SET master_key = $1, wrapped = $2"
    " WHERE stream = $3 AND version = $4 AND master_key <> $5"
)


def _reason(exc: BaseException) -> str:
    """asyncpg's failure in words: its class and message."""
    text = str(exc) or "no message"
    return f"{type(exc).__name__}: {text}"
