"""An audited store never makes an unaudited change, even when the call is cancelled.

A write cannot be taken back once the backend has it (SQLite's writer thread commits
it; PostgreSQL may commit a statement it received). The store used to record the audit
entry after awaiting the write, so a cancellation landing in between left the change
made and never audited (SQLite: 2 or 3 of 28 cancelled appends, PostgreSQL: 12 of 22).
Now the write and its entry run to their end, then the cancellation propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import Event, EventStore
from pepperpy.event.security import (
    AuditLog,
    KeyRing,
    MemoryKeyStore,
    StreamEncryption,
    acting_as,
)
from pepperpy.event.store import MemoryBackend
from pepperpy.event.store.base import AppendResult, ExpectedVersion, NewRecord, SnapshotRow


class Gate:
    """Holds writes that, once taken, complete even if their caller is cancelled."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()
        self.taken = asyncio.Event()

    async def hold(self, write: Callable[[], Awaitable[Any]]) -> Any:
        async def taken_then_written() -> Any:
            self.taken.set()
            await self.open.wait()
            return await write()

        return await asyncio.shield(asyncio.ensure_future(taken_then_written()))


class LateWrites(MemoryBackend):
    """A memory backend whose writes, once taken, are made late (as a writer thread's)."""

    def __init__(self, gate: Gate) -> None:
        super().__init__()
        self.gate = gate

    async def append(
        self, stream: str, records: Sequence[NewRecord], expected_version: ExpectedVersion
    ) -> AppendResult:
        parent = super()
        result: AppendResult = await self.gate.hold(
            lambda: parent.append(stream, records, expected_version)
        )
        return result

    async def delete_stream(self, stream: str) -> bool:
        parent = super()
        deleted: bool = await self.gate.hold(lambda: parent.delete_stream(stream))
        return deleted

    async def save_snapshot(self, stream: str, snapshot: SnapshotRow) -> None:
        parent = super()
        await self.gate.hold(lambda: parent.save_snapshot(stream, snapshot))


class LateShreds(MemoryKeyStore):
    """Keys whose replacement by a tombstone, once taken, is made late."""

    def __init__(self, gate: Gate) -> None:
        super().__init__()
        self.gate = gate

    async def replace(self, stream: str, version: int, master_key_id: str, wrapped: bytes) -> None:
        parent = super()
        await self.gate.hold(lambda: parent.replace(stream, version, master_key_id, wrapped))


async def stream_has_events(store: EventStore) -> bool:
    return bool(await store.get_stream("acct.1"))


async def snapshot_saved(store: EventStore) -> bool:
    return await store.load_snapshot("acct.1") is not None


async def deleted(store: EventStore) -> bool:
    return await store.stream_version("acct.1") is None


async def shredded(store: EventStore) -> bool:
    [event] = await store.get_stream("acct.1")
    return event.data is None


CHANGES: dict[str, tuple[Callable[[EventStore], Awaitable[Any]], Callable[..., Any]]] = {
    "append": (
        lambda store: store.append("acct.1", Event("acct.opened", {"owner": "ann"})),
        stream_has_events,
    ),
    "snapshot": (lambda store: store.save_snapshot("acct.1", {"balance": 0}, 0), snapshot_saved),
    "delete": (lambda store: store.delete_stream("acct.1"), deleted),
    "shred": (lambda store: store.shred_stream("acct.1"), shredded),
}


@pytest.mark.parametrize("action", list(CHANGES))
async def test_a_change_cancelled_once_the_backend_took_it_is_made_and_audited(
    action: str,
) -> None:
    gate = Gate()
    log = AuditLog()
    crypto = StreamEncryption(KeyRing.generate(), LateShreds(gate))
    store = EventStore(LateWrites(gate), audit=log, encryption=crypto)
    if action != "append":
        await store.append("acct.1", Event("acct.opened", {"owner": "ann"}))
    change, made = CHANGES[action]
    gate.open.clear()
    gate.taken.clear()
    with acting_as("svc.teller"):
        task = asyncio.ensure_future(change(store))
    async with asyncio.timeout(10):
        await gate.taken.wait()
        task.cancel()
        await asyncio.sleep(0)
        task.cancel()  # cancelled again while it finishes: it still finishes
        gate.open.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await made(store)
    last = log.entries()[-1]
    assert (last.action, last.target, last.principal, last.outcome) == (
        action,
        "acct.1",
        "svc.teller",
        "ok",
    )
    assert log.verify().ok
    await store.close()


async def test_a_change_under_asyncio_timeout_raises_timeout_error_after_its_entry() -> None:
    gate = Gate()
    log = AuditLog()
    store = EventStore(LateWrites(gate), audit=log)
    gate.open.clear()

    async def open_account() -> None:
        async with asyncio.timeout(30) as deadline:
            task = asyncio.ensure_future(store.append("acct.1", Event("acct.opened")))
            await gate.taken.wait()
            deadline.reschedule(asyncio.get_running_loop().time())  # expires now
            asyncio.get_running_loop().call_soon(gate.open.set)
            await task

    async with asyncio.timeout(10):
        with pytest.raises(TimeoutError):
            await open_account()
    assert [(e.action, e.target) for e in log.entries()] == [("append", "acct.1")]
    assert await store.stream_version("acct.1") == 0
    await store.close()


@pytest.mark.parametrize("file_log", [False, True], ids=["memory-log", "file-log"])
async def test_sqlite_appends_cancelled_at_any_moment_are_all_audited_if_stored(
    tmp_path: Path, file_log: bool
) -> None:
    """The audit's own repro: appends cancelled from 0 to 9 ms in; any that was stored
    has its entry."""
    log = AuditLog(str(tmp_path / "audit.db") if file_log else None)
    await invariant_holds(EventStore(f"sqlite:///{tmp_path}/events.db", audit=log), log)
    log.close()


async def test_postgresql_appends_cancelled_at_any_moment_are_all_audited_if_stored(
    postgres_url: str,
) -> None:
    log = AuditLog()
    await invariant_holds(EventStore(postgres_url, audit=log), log)


async def invariant_holds(store: EventStore, log: AuditLog) -> None:
    await store.append("warm.up", Event("acct.opened"))  # the file or pool is open
    cancelled = 0
    for k in range(30):
        task = asyncio.ensure_future(store.append(f"acct.{k}", Event("acct.opened", {"k": k})))
        await asyncio.sleep(k * 0.0003)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            cancelled += 1
    stored = set(await store.streams("acct.*"))
    audited = {e.target for e in log.entries() if e.action == "append"}
    assert stored <= audited, f"stored but never audited: {sorted(stored - audited)}"
    assert cancelled > 0  # the cancellations did land
    await store.close()
