"""The head of the log beyond the conformance suite: the contract's defaults for backends
written before ``head`` and ``read_all_backwards`` existed, access control, encryption,
the hint for subscribing "from now on", and transactions in flight on SQLite and
PostgreSQL (a head must never pass a position that could still commit below it)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from pepperpy.event import AccessDenied, Event, EventStore
from pepperpy.event.security import (
    AccessControl,
    AuditLog,
    KeyRing,
    MemoryKeyStore,
    StreamEncryption,
    acting_as,
)
from pepperpy.event.store import MemoryBackend
from pepperpy.event.store.base import (
    ExpectedVersion,
    LogPage,
    NewRecord,
    Row,
    SnapshotRow,
    StoreBackend,
    StreamState,
)
from tests.store.conformance_head import HeadConformance, MakeStore
from tests.store.held_commit import HeldCommit, until_one_waits_for_a_lock

# -- the contract's defaults ----------------------------------------------------------


class DefaultsBackend(MemoryBackend):
    """A memory backend that leaves head and read_all_backwards to the contract."""

    head = StoreBackend.head
    read_all_backwards = StoreBackend.read_all_backwards


def test_head_and_read_all_backwards_are_not_abstract() -> None:
    """A backend written before they existed still instantiates, and gets both."""
    assert {"head", "read_all_backwards"}.isdisjoint(StoreBackend.__abstractmethods__)


class TestTheContractsDefaults(HeadConformance):
    """The head suite over the defaults: a bisection and windows read forwards."""

    @pytest.fixture
    async def make_store(self) -> AsyncIterator[MakeStore]:
        stores: list[EventStore] = []

        def make() -> EventStore:
            store = EventStore(DefaultsBackend())
            stores.append(store)
            return store

        yield make
        for store in stores:
            await store.close()

    @pytest.fixture
    def store(self, make_store: MakeStore) -> EventStore:
        return make_store()


class SparseBackend(StoreBackend):
    """A read-only log whose global positions leave wide gaps (the contract allows them:
    positions increase, nothing says by one). Only ``read_all`` reads it."""

    def __init__(self, positions: Sequence[int], hidden: Sequence[int] = ()) -> None:
        self.rows = [
            (p, "s.1", n, f"id{n}", "t.x", 1, b"{}", None, 0, None, None, 0, p not in hidden)
            for n, p in enumerate(positions)
        ]
        self.reads = 0

    async def read_all(self, from_position: int, limit: int) -> LogPage:
        self.reads += 1
        scanned = [row for row in self.rows if row[0] >= from_position][:limit]
        visible = [row for row in scanned if row[12]]
        next_position = scanned[-1][0] + 1 if scanned else from_position
        return LogPage(visible, next_position, len(scanned) == limit)

    def append(
        self, stream: str, records: Sequence[NewRecord], expected_version: ExpectedVersion
    ) -> Any:
        raise NotImplementedError

    async def read_stream(
        self, stream: str, start: int | None, backwards: bool, limit: int
    ) -> list[Row]:
        raise NotImplementedError

    async def stream_state(self, stream: str) -> StreamState | None:
        raise NotImplementedError

    async def stream_names(self) -> list[str]:
        raise NotImplementedError

    async def delete_stream(self, stream: str) -> bool:
        raise NotImplementedError

    async def save_snapshot(self, stream: str, snapshot: SnapshotRow) -> None:
        raise NotImplementedError

    async def load_snapshot(self, stream: str) -> SnapshotRow | None:
        raise NotImplementedError

    async def wait(self, position: int) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(
    ("positions", "hidden"),
    [([0], []), ([5], []), ([0, 7, 1000, 10**6], []), ([3, 9, 5000], [5000]), ([0, 1, 2], [2])],
)
async def test_the_defaults_find_the_head_and_read_back_across_gaps(
    positions: list[int], hidden: list[int]
) -> None:
    backend = SparseBackend(positions, hidden)
    assert await backend.head() == positions[-1]  # hidden or not
    async with EventStore(backend) as store:
        assert await store.head() == positions[-1]
        visible = [p for p in positions if p not in hidden]
        newest_first = [e.global_position async for e in store.read_all(backwards=True)]
        assert newest_first == visible[::-1]
        assert [e.global_position for e in await store.read_all(backwards=True, limit=1)] == (
            visible[-1:]
        )


async def test_the_default_head_reaches_the_last_position_there_can_be() -> None:
    assert await SparseBackend([3, 2**62, 2**63 - 1]).head() == 2**63 - 1


async def test_the_default_head_is_a_logarithmic_number_of_reads() -> None:
    backend = SparseBackend(range(100_000))
    assert await backend.head() == 99_999
    assert backend.reads <= 2 * 17 + 2  # about 2 log2(n): a gallop, then a bisection


async def test_the_defaults_on_an_empty_log() -> None:
    backend = SparseBackend([])
    assert await backend.head() is None
    assert await backend.read_all_backwards(2**63 - 1, 500) == LogPage([], -1, False)


# -- access control, encryption, upcasters ----------------------------------------------


async def test_the_head_needs_read_on_the_whole_log() -> None:
    """Decided (docs/store.md): the head tells how busy every stream is, so it needs what
    read_all() without streams needs; a principal who may read some streams finds the
    newest of their events with a filtered backwards read instead."""
    log = AuditLog()
    access = AccessControl(default="deny", audit=log)
    access.allow("#", "append", "#")
    access.allow("console", "read", "orders.#")
    store = EventStore(access=access)
    try:
        await store.append("orders.1", {"type": "order.placed"})
        await store.append("secret.1", {"type": "salary.paid"})
        with acting_as("console"):
            with pytest.raises(AccessDenied, match="console"):
                await store.head()
            with pytest.raises(AccessDenied, match="console"):
                store.read_all(backwards=True)
            mine = await store.read_all(backwards=True, streams="orders.#", limit=1)
            assert [(e.stream, e.global_position) for e in mine] == [("orders.1", 0)]
            access.allow("console", "read", "#")
            assert await store.head() == 1
            reader = store.read_all(backwards=True, streams="orders.#")
            access.deny("console", "read", "orders.#")  # a reader made before: its next page
            with pytest.raises(AccessDenied, match="refused by deny"):
                await reader
    finally:
        await store.close()
    denied = [entry for entry in log.entries() if entry.outcome == "denied"]
    assert [(entry.principal, entry.action, entry.target) for entry in denied] == [
        ("console", "read", "#"),
        ("console", "read", "#"),
        ("console", "read", "orders.#"),
    ]


async def test_an_encrypted_store_reads_backwards_and_tells_its_head() -> None:
    crypto = StreamEncryption(KeyRing.generate(), MemoryKeyStore())
    async with EventStore(encryption=crypto) as store:
        await store.append("user.1", [{"type": "user.created", "data": {"n": n}} for n in range(3)])
        await store.append("user.2", {"type": "user.created", "data": {"n": 9}})
        assert await store.head() == 3
        newest = await store.read_all(backwards=True, streams="user.1", limit=2)
        assert [e.data for e in newest] == [{"n": 2}, {"n": 1}]


async def test_upcasters_apply_to_backwards_reads() -> None:
    async with EventStore() as store:
        await store.append("u.1", Event("user.created", {"name": "Ada"}, version=1))

        @store.upcaster("user.created", from_version=1)
        def split(data: dict[str, Any]) -> dict[str, Any]:
            return {"first": data["name"]}

        (event,) = await store.read_all(backwards=True)
        assert (event.version, event.data) == (2, {"first": "Ada"})


# -- subscribing from now on ------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "error"),
    [(None, TypeError), (-1, ValueError), ("end", TypeError), ("$", TypeError)],
)
def test_a_subscription_with_no_position_is_told_how_to_start_at_the_head(
    position: Any, error: type[Exception]
) -> None:
    store = EventStore()
    with pytest.raises(error, match=r"from_position .* subscribe past the head: head ="):
        store.subscribe(position)


def test_a_position_too_large_gets_no_such_hint() -> None:
    store = EventStore()
    with pytest.raises(ValueError, match="from_position") as refused:
        store.subscribe(2**63)
    assert "head" not in str(refused.value)


# -- transactions in flight -------------------------------------------------------------


async def test_sqlite_head_ignores_a_transaction_in_flight(sqlite_url: str) -> None:
    """Another connection's uncommitted row (another process writing) is not the head;
    once that commits, it is."""
    async with EventStore(sqlite_url) as store:
        await store.append("a.1", [{"type": "t.x"}] * 3)
        other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute(
                "INSERT INTO events (global_position, stream, position, id, type, version, "
                "data, timestamp, recorded_at) VALUES (3, 'a.1', 3, 'late', 't.x', 1, "
                "x'7b7d', 0, 0)"
            )
            assert await store.head() == 2
            assert [e.global_position for e in await store.read_all(backwards=True)] == [2, 1, 0]
            other.execute("COMMIT")
        finally:
            other.close()
        assert await store.head() == 3
        (late,) = await store.read_all(backwards=True, limit=1)
        assert (late.global_position, late.id) == (3, "late")


@pytest.mark.postgres
async def test_postgres_head_stays_below_a_transaction_in_flight(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer's transaction holds position 3 and has not committed: the head is 2,
    also for a second writer that waits behind it; a subscription started past that
    head gets 3 and 4 once they commit, nothing skipped (docs/store.md, "PostgreSQL:
    ordering, the hard promise")."""
    held = HeldCommit(monkeypatch)
    writer, reader = EventStore(postgres_url), EventStore(postgres_url)
    admin = await held.asyncpg.connect(postgres_url)
    try:
        async with asyncio.timeout(30):
            await writer.append("a.1", [{"type": "t.x"}] * 3)
            assert await reader.head() == 2
            held.hold()  # the writer's append: held before its COMMIT
            in_flight = asyncio.ensure_future(writer.append("a.1", {"type": "in.flight"}))
            await held.committing.wait()  # position 3 is taken, its row inserted, not committed
            assert await reader.head() == 2
            head = await reader.head()
            assert head is not None
            subscription = reader.subscribe(head + 1)
            later = asyncio.ensure_future(reader.append("b.1", {"type": "later"}))
            await until_one_waits_for_a_lock(admin)  # it waits for the head row's lock
            assert await reader.head() == 2
            assert [e.global_position for e in await reader.read_all(backwards=True)] == [2, 1, 0]
            held.release.set()
            assert (await in_flight).global_position == 3
            assert (await later).global_position == 4
            assert await reader.head() == 4
            async with subscription:
                seen = [await anext(subscription) for _ in range(2)]
            assert [(e.global_position, e.type) for e in seen] == [(3, "in.flight"), (4, "later")]
    finally:
        held.release.set()
        monkeypatch.undo()
        await admin.close()
        await writer.close()
        await reader.close()
