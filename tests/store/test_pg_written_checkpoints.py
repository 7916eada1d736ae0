"""``StoreError.written`` from the PostgreSQL checkpoint store (replays' checkpoints and
projections' state): ``False`` where its statement cannot have taken effect, ``None``
where it may have.

A save or delete is one statement in autocommit: it can have taken effect only once
asyncpg handed its execution to the socket, and not if the server answered it with an
error. The store said ``None`` on every failure, so a replay read back (or held in doubt)
a save that provably left nothing, and its final save then recorded nothing more.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from pepperpy.event import ConcurrencyError, Event, EventReplay, EventStore, StoreError
from pepperpy.event._checkpoints import PostgresCheckpointStore
from tests.conftest import unique_name
from tests.store.pgfaultproxy import PgFaultProxy, proxied
from tests.store.test_pg_written import Cut, schema_of

pytestmark = pytest.mark.postgres

WRITES = ["save", "delete"]


async def write(checkpoints: PostgresCheckpointStore, what: str, name: str) -> object:
    """Move checkpoint ``name`` from 1 to 2, or delete it."""
    if what == "save":
        return await checkpoints.save(name, 2, {"n": 2}, previous=1)
    return await checkpoints.delete(name)


async def position(direct: str, name: str) -> int | None:
    """The position stored for checkpoint ``name`` (read on a connection of its own)."""
    checkpoints = PostgresCheckpointStore(direct)
    try:
        saved = await checkpoints.load(name)
        return None if saved is None else saved.position
    finally:
        await checkpoints.close()


@pytest.fixture
async def checkpoints(proxy: PgFaultProxy, direct: str) -> AsyncIterator[PostgresCheckpointStore]:
    """A checkpoint store through the proxy, holding checkpoint ``c`` at position 1."""
    store = PostgresCheckpointStore(proxied(direct, proxy.port, connect_timeout=1))
    try:
        await store.save("c", 1, None, previous=None)
        yield store
    finally:
        proxy.on_client = proxy.on_server = None
        proxy.heal()
        await store.close()


# -- nothing can have taken effect: False -------------------------------------------------


@pytest.mark.parametrize("what", WRITES)
async def test_a_checkpoint_store_that_cannot_connect_says_nothing_was_written(
    proxy: PgFaultProxy, direct: str, what: str
) -> None:
    await position(direct, "c")  # the table exists
    proxy.refuse()
    checkpoints = PostgresCheckpointStore(proxied(direct, proxy.port, connect_timeout=1))
    try:
        with pytest.raises(StoreError) as caught:
            await write(checkpoints, what, "c")
        assert "cannot open PostgreSQL checkpoint store at" in str(caught.value)
        assert caught.value.written is False
    finally:
        await checkpoints.close()


@pytest.mark.parametrize("what", WRITES)
async def test_a_write_whose_reconnect_fails_says_nothing_was_written(
    proxy: PgFaultProxy, direct: str, checkpoints: PostgresCheckpointStore, what: str
) -> None:
    """The connection is reset while idle; the write finds it closed, sends nothing, and
    the new connection it is tried again on cannot be opened."""
    proxy.refuse()
    proxy.drop()
    with pytest.raises(StoreError) as caught:
        async with asyncio.timeout(30):
            await write(checkpoints, what, "c")
    assert caught.value.written is False
    proxy.heal()
    assert await position(direct, "c") == 1


@pytest.mark.parametrize("what", WRITES)
async def test_a_write_cut_off_before_it_was_sent_says_nothing_was_written(
    proxy: PgFaultProxy, direct: str, checkpoints: PostgresCheckpointStore, what: str
) -> None:
    """The connection is reset as asyncpg prepares the statement (its text goes out, it
    does not run), on the first connection and on the one it is tried again on."""
    text = b"pepperpy_checkpoints SET" if what == "save" else b"DELETE FROM "
    cut = Cut(proxy, text, "sent", times=2)
    with pytest.raises(StoreError) as caught:
        async with asyncio.timeout(30):
            await write(checkpoints, what, "c")
    assert len(cut.fired) == 2
    assert caught.value.written is False
    assert "whether that happened is unknown" not in str(caught.value)
    proxy.on_client = proxy.on_server = None
    assert await position(direct, "c") == 1


async def refuse_writes(admin: asyncpg.Connection, schema: str, code: str) -> None:
    """Make every update or delete of a checkpoint in ``schema`` fail with ``code``."""
    await admin.execute(
        f'CREATE FUNCTION "{schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS $$ '
        f"BEGIN RAISE EXCEPTION 'refused by a test trigger' USING ERRCODE = '{code}'; END $$"
    )
    await admin.execute(
        f'CREATE TRIGGER refuse BEFORE UPDATE OR DELETE ON "{schema}".pepperpy_checkpoints '
        f'FOR EACH ROW EXECUTE FUNCTION "{schema}".refuse()'
    )


@pytest.mark.parametrize("what", WRITES)
@pytest.mark.parametrize("code", ["P0001", "23514"], ids=["raise", "constraint"])
async def test_a_write_postgresql_refuses_says_nothing_was_written(
    direct: str, admin: asyncpg.Connection, code: str, what: str
) -> None:
    """The statement went out and the server answered it with an error: autocommit
    rolled it back."""
    checkpoints = PostgresCheckpointStore(direct)
    try:
        await checkpoints.save("c", 1, None, previous=None)
        await refuse_writes(admin, schema_of(direct), code)
        with pytest.raises(StoreError) as caught:
            await write(checkpoints, what, "c")
        assert not isinstance(caught.value, ConcurrencyError)
        assert caught.value.written is False
        assert isinstance(caught.value.__cause__, asyncpg.PostgresError)
    finally:
        await checkpoints.close()
    assert await position(direct, "c") == 1


# -- sent, and not answered: None ------------------------------------------------------------


@pytest.mark.parametrize("what", WRITES)
@pytest.mark.parametrize("at", ["sent", "ran"])
async def test_a_write_cut_off_once_it_was_sent_says_nobody_knows(
    proxy: PgFaultProxy, direct: str, what: str, at: str
) -> None:
    """Its execution lost on the way to the server (it never ran), or the server's
    answer lost (it ran, and committed): the client cannot tell them apart."""
    checkpoints = PostgresCheckpointStore(proxied(direct, proxy.port))
    name = unique_name("c")  # the execution carries it, as a parameter
    try:
        await checkpoints.save(name, 1, None, previous=None)
        cut = Cut(proxy, name.encode(), at)
        with pytest.raises(StoreError) as caught:
            async with asyncio.timeout(30):
                await write(checkpoints, what, name)
        assert len(cut.fired) == 1  # not tried again
        assert caught.value.written is None
        assert "whether that happened is unknown" in str(caught.value)
    finally:
        proxy.on_client = proxy.on_server = None
        await checkpoints.close()
    took_effect = {"save": 2, "delete": None}[what]
    assert await position(direct, name) == (1 if at == "sent" else took_effect)


# -- what a replay makes of it ----------------------------------------------------------------


async def test_a_replay_whose_save_postgresql_refuses_still_records_how_far_it_got(
    direct: str, admin: asyncpg.Connection
) -> None:
    """The save at position 19 is refused once. Known not written, it is neither read
    back nor held in doubt: the run's final save (at 19, over 9) then records it."""
    schema = schema_of(direct)
    store = EventStore(direct)
    replay = EventReplay(store)
    replay.handle("t.*", lambda event: None)
    try:
        await store.append("s.1", [Event("t.x", {"i": i}) for i in range(30)])
        await replay.replay_all(checkpoint="warm", checkpoint_every=100)  # the table
        await admin.execute(f'CREATE SEQUENCE "{schema}".refusals')
        await admin.execute(
            f'CREATE FUNCTION "{schema}".refuse_once() RETURNS trigger LANGUAGE plpgsql AS $$ '
            f"BEGIN IF NEW.position = 19 AND nextval('\"{schema}\".refusals') = 1 THEN "
            "RAISE EXCEPTION 'refused by a test trigger'; END IF; RETURN NEW; END $$"
        )
        await admin.execute(
            f'CREATE TRIGGER refuse_once BEFORE UPDATE ON "{schema}".pepperpy_checkpoints '
            f'FOR EACH ROW EXECUTE FUNCTION "{schema}".refuse_once()'
        )
        with pytest.raises(StoreError) as caught:
            await replay.replay_all(checkpoint="c", checkpoint_every=10)
        assert caught.value.written is False
        notes = "\n".join(getattr(caught.value, "__notes__", []))
        assert "may still be written" not in notes and "read back" not in notes
        saved = await replay.checkpoints.load("replay:c")
        assert saved is not None and saved.position == 19
    finally:
        await replay.close()
        await store.close()
