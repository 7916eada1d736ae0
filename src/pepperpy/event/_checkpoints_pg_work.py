"""Work inside a PostgreSQL checkpoint store's transactions: moving a checkpoint's
position, running a transaction, and telling a caller's work's errors (``save_within``,
``delete_within``, ``prepare``) from the store's own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ._errors import StoreError
from .store.postgres import Progress

__all__ = ["Yours", "always", "in_transaction", "row_of", "set_position"]

T = TypeVar("T")


async def set_position(
    connection: Any,
    table: str,
    name: str,
    position: int,
    data: bytes | None,
    previous: int | None,
    revision: str | None,
    written: str,
) -> bool:
    """Move checkpoint ``name`` from ``previous`` (None: none yet) to ``position`` with
    ``data``, writing revision ``written``; False if it was not at ``previous`` (or, with
    ``revision``, not that save), and nothing was written."""
    if previous is None:
        status = await connection.execute(
            f"INSERT INTO {table} (name, position, state, updated_at, revision) "
            "VALUES ($1, $2, $3, now(), $4) ON CONFLICT (name) DO NOTHING",
            name,
            position,
            data,
            written,
        )
    else:
        status = await connection.execute(
            f"UPDATE {table} SET position = $2, state = $3, updated_at = now(), "
            "revision = $6 WHERE name = $1 AND position = $4 "
            "AND ($5::text IS NULL OR revision = $5::text)",
            name,
            position,
            data,
            previous,
            revision,
            written,
        )
    return bool(status.endswith(" 1"))


async def row_of(connection: Any, table: str, name: str) -> tuple[int | None, str | None]:
    """The position and revision checkpoint ``name`` holds (None, None: there is none)."""
    row = await connection.fetchrow(f"SELECT position, revision FROM {table} WHERE name = $1", name)
    return (None, None) if row is None else (row["position"], row["revision"])


async def in_transaction(
    connection: Any,
    progress: Progress,
    work: Callable[[], Awaitable[tuple[bool, T]]],
    yours: Yours | None = None,
) -> T:
    """``await work()`` in a transaction on ``connection``, which returns ``(commit,
    value)``: committed (under ``progress.commit()``: only the ``COMMIT`` may commit) or
    rolled back as it says, and ``value`` returned. An error of ``work``'s rolls back on
    a connection still open (a lost one is the attempt's to handle, and a cancelled
    caller's is cut off: the server rolls back either way), and is raised. With
    ``yours``, a constraint the caller's rows break at ``COMMIT`` is raised as theirs.
    """
    transaction = connection.transaction()
    await transaction.start()
    try:
        commit, value = await work()
    except asyncio.CancelledError:
        raise
    except BaseException:
        if not connection.is_closed() and connection.is_in_transaction():
            await transaction.rollback()
        raise
    if not commit:
        await transaction.rollback()
        return value
    with progress.commit():
        try:
            await transaction.commit()
        except Exception as exc:
            if yours is not None and _integrity(exc):
                raise yours.caught(exc) from None
            raise
    return value


def always() -> bool:
    return True


def _integrity(error: BaseException) -> bool:
    """Whether ``error`` is PostgreSQL refusing data for a constraint (SQLSTATE class 23)."""
    return str(getattr(error, "sqlstate", "") or "").startswith("23")


class Yours:
    """What the work of a ``save_within``, ``delete_within`` or ``prepare`` caused, told
    apart from an outage: its own errors, a transaction it aborted, its data refused at
    ``COMMIT``, its running past ``command_timeout``. Those are raised as they are (never
    tried again, never worded as the store's failure); the rest is the store's."""

    __slots__ = ("error", "overran", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.error: BaseException | None = None
        self.overran: float | None = None

    async def run(self, work: Callable[[Any], Awaitable[None]], connection: Any) -> None:
        started = time.monotonic()
        try:
            await work(connection)
        except Exception as exc:
            self._timed(started)
            if connection.is_closed():
                raise  # the connection is gone (or was cut off): the store's to handle
            raise self.caught(exc) from None
        except BaseException:
            self._timed(started)
            raise
        self._timed(started)
        if connection.is_closed():
            return  # cut off meanwhile: the next statement fails, and the store handles it
        if not connection.is_in_transaction():
            raise self.caught(
                RuntimeError(
                    "the work ended the transaction (COMMIT or ROLLBACK): what it committed "
                    "stays, without the position; its statements must run inside it"
                )
            )

    def _timed(self, started: float) -> None:
        spent = time.monotonic() - started
        if spent >= self.timeout:
            self.overran = spent

    def caught(self, error: BaseException) -> _TheirError:
        self.error = error
        return _TheirError()

    def may_retry(self) -> bool:
        return self.overran is None and self.error is None

    async def outcome(self, attempt: Awaitable[T]) -> T:
        """``attempt``'s result, or the error that is the work's, raised as it is."""
        try:
            return await attempt
        except _TheirError:
            assert self.error is not None
            raise self.error from None
        except StoreError as exc:
            if self.overran is not None:
                raise TimeoutError(
                    f"the work took {self.overran:.1f} s, past the transaction's bound "
                    f"(command_timeout={self.timeout:g} s in the URL), so the connection "
                    "was cut off and nothing was written"
                ) from exc
            raise


class _TheirError(Exception):
    """Carries a work's own error out of an attempt, which would word it as the store's
    (never raised to callers: :meth:`Yours.outcome` raises the error itself)."""
