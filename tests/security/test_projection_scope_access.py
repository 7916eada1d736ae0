"""A projection's saved state records its streams: a principal that may not read them
cannot load, wait on or rebuild it away by making a projection of the same name over
streams it may read (audit 9 follow-up: it could, reading another service's state)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import (
    AccessDenied,
    ConfigurationError,
    Event,
    EventStore,
    MemoryCheckpointStore,
    Projection,
    TableProjection,
)
from pepperpy.event.security import (
    AccessControl,
    AuditLog,
    KeyRing,
    SQLiteKeyStore,
    StreamEncryption,
    acting_as,
)

SSN = "078-05-1120"


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'events.db'}"


#: the memory store's states, shared by the projections of a test
STATES: dict[str, MemoryCheckpointStore] = {}


@pytest.fixture(autouse=True)
def _fresh_states() -> None:
    STATES.clear()


def users(store: EventStore, streams: str | None = "user.*") -> Projection:
    shared = (
        STATES.setdefault("memory", MemoryCheckpointStore()) if store.url == "memory://" else None
    )
    projection = Projection("users", store, streams=streams, state_store=shared)

    @projection.on("#")
    def created(state: dict[str, Any], event: Event) -> None:
        state[event.stream] = event.data.get("ssn")

    return projection


def policy() -> tuple[AccessControl, AuditLog]:
    log = AuditLog()
    acl = AccessControl(default="deny")
    acl.allow("svc.admin", "*", "#")
    acl.allow("svc.intruder", "read", "orders.#")
    acl.allow("svc.reporting", "read", "orders.#")
    acl.allow("svc.reporting", "read", "user.#")
    return acl, log


async def saved_by_admin(store: EventStore) -> None:
    with acting_as("svc.admin"):
        await store.append("user.9", {"type": "user.created", "data": {"ssn": SSN}})
        await store.append("orders.1", {"type": "order.placed", "data": {}})
        async with users(store) as projection:
            await projection.run()


async def state_of_admin(store: EventStore) -> Any:
    with acting_as("svc.admin"):
        async with users(store) as projection:
            return await projection.load()


def denials(log: AuditLog) -> list[tuple[str | None, str, str]]:
    return [(e.principal, e.action, e.target) for e in log.entries() if e.outcome == "denied"]


async def test_another_services_state_is_refused_and_its_scope_withheld(url: str) -> None:
    acl, log = policy()
    async with EventStore(url, access=acl, audit=log) as store:
        await saved_by_admin(store)
        with acting_as("svc.intruder"):
            async with users(store, "orders.#") as projection:
                for call in (
                    projection.load,
                    projection.run,
                    lambda: projection.wait_until(0),
                    projection.rebuild,
                ):
                    with pytest.raises(AccessDenied) as refused:
                        await call()
                    message = str(refused.value)
                    assert "svc.intruder" in message and "withheld" in message
                    assert "user" not in message.replace("'users'", "")  # not its streams
                    assert refused.value.target == "projection:users"
                assert projection.state == {}  # nothing of the saved state reached memory
        assert await state_of_admin(store) == {"user.9": SSN}  # the rebuild deleted nothing
    assert denials(log) == [("svc.intruder", "read", "user.*")] * 4


async def test_a_principal_that_may_read_both_is_told_both_scopes(url: str) -> None:
    acl, log = policy()
    async with EventStore(url, access=acl, audit=log) as store:
        await saved_by_admin(store)
        with acting_as("svc.reporting"):
            async with users(store, "orders.#") as projection:
                with pytest.raises(ConfigurationError, match=r"\['user\.\*'\]"):
                    await projection.load()
                await projection.rebuild()  # allowed: it may read what the old one read
                assert projection.state == {"orders.1": None}
        with acting_as("svc.admin"), pytest.raises(ConfigurationError, match="orders"):
            await state_of_admin(store)
    assert denials(log) == []


async def test_an_encrypted_states_scope_is_checked_and_a_rebuild_reseals(
    tmp_path: Path,
) -> None:
    acl, log = policy()
    keys = SQLiteKeyStore(tmp_path / "keys.db")
    crypto = StreamEncryption(KeyRing.generate(), keys)
    url = f"sqlite:///{tmp_path / 'events.db'}"
    async with EventStore(url, encryption=crypto, access=acl, audit=log) as store:
        await saved_by_admin(store)
        assert await state_of_admin(store) == {"user.9": SSN}
        with acting_as("svc.intruder"):
            async with users(store, "orders.#") as projection:
                with pytest.raises(AccessDenied):
                    await projection.rebuild()
        assert await state_of_admin(store) == {"user.9": SSN}  # still unsealed fine
        with acting_as("svc.reporting"):
            async with users(store, "orders.#") as projection:
                await projection.rebuild()
                saved = await projection.state_store.load("projection:users")
                assert saved is not None and crypto.is_encrypted(saved.state)
            async with users(store, "orders.#") as again:
                assert await again.load() == {"orders.1": None}
    await keys.close()


async def test_a_table_projection_of_other_streams_is_refused(tmp_path: Path) -> None:
    acl, log = policy()
    url = f"sqlite:///{tmp_path / 'events.db'}"

    def ledger(store: EventStore, streams: str) -> TableProjection:
        def setup(db: sqlite3.Connection) -> None:
            db.execute("CREATE TABLE IF NOT EXISTS seen (stream TEXT)")

        def reset(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM seen")

        projection = TableProjection("ledger", store, setup=setup, reset=reset, streams=streams)
        projection.on(
            "#", lambda db, event: db.execute("INSERT INTO seen VALUES (?)", (event.stream,))
        )
        return projection

    async with EventStore(url, access=acl, audit=log) as store:
        with acting_as("svc.admin"):
            await store.append("user.9", {"type": "user.created", "data": {"ssn": SSN}})
            async with ledger(store, "user.*") as first:
                await first.run()
        with acting_as("svc.intruder"):
            async with ledger(store, "orders.#") as other:
                for call in (other.load, other.run, other.rebuild):
                    with pytest.raises(AccessDenied, match="withheld"):
                        await call()
        with acting_as("svc.admin"):
            async with ledger(store, "user.*") as first:
                assert await first.load() == 0
    with closing(sqlite3.connect(tmp_path / "events.db")) as db:
        rows = db.execute("SELECT stream FROM seen").fetchall()
    assert rows == [("user.9",)]  # the refused rebuild emptied nothing
    assert denials(log) == [("svc.intruder", "read", "user.*")] * 3
