"""Deleting where a consumer got to (a replay checkpoint, a processor checkpoint, a table
projection's position and tables) needs what running the consumer needs: ``read`` on its
streams. A refusal is audited and deletes nothing; a deletion is audited too."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from pepperpy.event import (
    AccessDenied,
    Event,
    EventProcessor,
    EventReplay,
    EventStore,
    Projection,
    TableProjection,
)
from pepperpy.event.security import AccessControl, AuditLog, acting_as
from tests.helpers import eventually


def policy() -> AccessControl:
    acl = AccessControl(default="deny")
    acl.allow("svc.admin", "*", "#")
    acl.allow("svc.orders", "read", "orders.#")
    return acl


def entries(log: AuditLog) -> list[tuple[str | None, str, str, str]]:
    return [(e.principal, e.action, e.target, e.outcome) for e in log.entries()]


async def seed(store: EventStore) -> None:
    with acting_as("svc.admin"):
        await store.append("user.1", {"type": "user.created", "data": {"n": 1}})
        await store.append("orders.1", {"type": "order.placed", "data": {"n": 2}})


# -- EventReplay.reset --------------------------------------------------------------------


async def test_resetting_a_replay_checkpoint_needs_read_on_what_it_replayed(url: str) -> None:
    log = AuditLog()
    async with EventStore(url, access=policy(), audit=log) as store:
        await seed(store)
        async with EventReplay(store) as replay:
            with acting_as("svc.admin"):
                await replay.replay_stream("user.1", checkpoint="users")
                await replay.replay_all(checkpoint="everything")
                await replay.replay_stream("orders.1", checkpoint="orders")
            with acting_as("svc.orders"):
                with pytest.raises(AccessDenied, match=r"'user\.1'.*replay checkpoint 'users'"):
                    await replay.reset("users")
                with pytest.raises(AccessDenied, match=r"'#'"):
                    await replay.reset("everything")  # a replay_all one: read on #
                with pytest.raises(AccessDenied, match=r"'#'"):
                    await replay.reset("missing")  # nothing saved: fail closed, on #
                assert await replay.reset("orders") is True  # its own stream: allowed
            assert (await replay.checkpoints.load("replay:users")) is not None
            assert (await replay.checkpoints.load("replay:everything")) is not None
            assert (await replay.checkpoints.load("replay:orders")) is None
            with acting_as("svc.admin"):
                assert await replay.reset("users") is True
                assert await replay.reset("missing") is False
    seen = entries(log)
    assert ("svc.orders", "read", "user.1", "denied") in seen
    assert seen.count(("svc.orders", "read", "#", "denied")) == 2
    assert ("svc.orders", "checkpoint.delete", "replay:orders", "ok") in seen
    assert ("svc.admin", "checkpoint.delete", "replay:users", "ok") in seen
    deleted = [e.details for e in log.entries() if e.action == "checkpoint.delete"]
    assert deleted[-1] == {"deleted": False, "streams": ["#"]}
    assert deleted[0] == {"deleted": True, "streams": ["orders.1"]}


async def test_a_store_without_access_resets_as_before_and_audits_the_deletion(url: str) -> None:
    log = AuditLog()
    async with EventStore(url, audit=log) as store:
        await store.append("user.1", {"type": "user.created", "data": {}})
        async with EventReplay(store) as replay:
            await replay.replay_stream("user.1", checkpoint="users")
            assert await replay.reset("users") is True
            assert await replay.reset("users") is False
    assert [e.action for e in log.entries()].count("checkpoint.delete") == 2


# -- EventProcessor.reset_checkpoint --------------------------------------------------------


async def test_resetting_a_processor_checkpoint_needs_read_on_its_streams(url: str) -> None:
    log = AuditLog()
    async with EventStore(url, access=policy(), audit=log) as store:
        await seed(store)
        processor = EventProcessor()
        seen: list[str] = []
        processor.handle("#", lambda event: seen.append(event.type))
        with acting_as("svc.admin"):
            users = processor.attach(store, checkpoint="users", streams="user.*")
            orders = processor.attach(store, checkpoint="orders", streams="orders.*")
            await eventually(lambda: len(seen) == 2)
            await users.stop()
            await orders.stop()
        with acting_as("svc.orders"):
            with pytest.raises(AccessDenied, match=r"'user\.\*'.*processor checkpoint 'users'"):
                await processor.reset_checkpoint(store, "users")
            with pytest.raises(AccessDenied, match=r"'#'"):
                await processor.reset_checkpoint(store, "missing")
            assert await processor.reset_checkpoint(store, "orders") is True
        with acting_as("svc.admin"):
            assert await processor.reset_checkpoint(store, "users") is True  # it was kept
    seen = entries(log)
    assert ("svc.orders", "read", "user.*", "denied") in seen
    assert ("svc.orders", "checkpoint.delete", "processor:orders", "ok") in seen
    assert ("svc.admin", "checkpoint.delete", "processor:users", "ok") in seen


# -- TableProjection ----------------------------------------------------------------------


def ledger(store: EventStore) -> TableProjection:
    projection = TableProjection(
        "ledger",
        store,
        streams="user.*",
        setup=lambda db: db.execute("CREATE TABLE IF NOT EXISTS ledger (n INTEGER)"),
        reset=lambda db: db.execute("DELETE FROM ledger"),
    )

    @projection.on("user.created")
    def created(db: sqlite3.Connection, event: Event) -> None:
        db.execute("INSERT INTO ledger VALUES (?)", (event.data["n"],))

    return projection


async def test_a_table_projection_rebuild_refused_leaves_its_tables(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    log = AuditLog()
    async with EventStore(f"sqlite:///{path}", access=policy(), audit=log) as store:
        await seed(store)
        with acting_as("svc.admin"):
            async with ledger(store) as projection:
                await projection.run()
        with acting_as("svc.orders"):
            async with ledger(store) as projection:
                with pytest.raises(AccessDenied, match=r"'user\.\*'"):
                    await projection.load()  # where it got to is read as the state is
                with pytest.raises(AccessDenied, match=r"'user\.\*'"):
                    await projection.rebuild()
        with closing(sqlite3.connect(path)) as db:
            assert db.execute("SELECT n FROM ledger").fetchall() == [(1,)]
        with acting_as("svc.admin"):
            async with ledger(store) as projection:
                assert await projection.load() == 0  # the position (user.1) is kept too
    assert ("svc.orders", "read", "user.*", "denied") in entries(log)


async def test_a_rebuild_is_audited_as_a_checkpoint_deletion(tmp_path: Path) -> None:
    log = AuditLog()
    async with EventStore(f"sqlite:///{tmp_path / 'events.db'}", audit=log) as store:
        await store.append("user.1", {"type": "user.created", "data": {"n": 1}})
        async with ledger(store) as tables:
            await tables.run()
            await tables.rebuild()
        async with Projection("users", store, streams="user.*") as projection:
            await projection.run()
            await projection.rebuild()
    deleted = [(e.target, e.details) for e in log.entries() if e.action == "checkpoint.delete"]
    assert deleted == [
        ("tables:ledger", {"deleted": True, "streams": ["user.*"]}),
        ("projection:users", {"deleted": True, "streams": ["user.*"]}),
    ]


# -- running a replay with a checkpoint ---------------------------------------------------


async def test_a_refused_replay_tells_nothing_of_the_checkpoint_it_names(url: str) -> None:
    log = AuditLog()
    async with EventStore(url, access=policy(), audit=log) as store:
        await seed(store)
        async with EventReplay(store) as replay:
            with acting_as("svc.admin"):
                await replay.replay_all(checkpoint="everything")
            with acting_as("svc.orders"):
                # the checkpoint's scope ('all') is not told: read is refused first
                with pytest.raises(AccessDenied, match=r"'user\.1'"):
                    await replay.replay_stream("user.1", checkpoint="everything")
                with pytest.raises(AccessDenied, match=r"'user\.#'"):
                    await replay.replay_all(streams="user.#", checkpoint="everything")
    assert ("svc.orders", "read", "user.1", "denied") in entries(log)
