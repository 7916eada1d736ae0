"""The PostgreSQL checkpoint store when its connection is lost before anything was sent.

A checkpoint save or delete is one statement in autocommit. When its connection is lost
after asyncpg handed that statement to the socket, whether it took effect is unknown, and
the store must say so; but when asyncpg refused to send it at all (the server's
termination notice had arrived), nothing can have happened, and the store used to say
the outcome was unknown all the same, as the event store did before it told the two
apart by asyncpg's count of statements sent. And the table setup of a loop's first call
was not tried again when its connection was lost, as every other call is. Faults are
made with ``pg_terminate_backend`` and the fault proxy (tests/store/pgfaultproxy.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
import pytest

from pepperpy.event import ConcurrencyError, StoreError
from pepperpy.event._checkpoints import PostgresCheckpointStore
from tests.conftest import unique_name
from tests.helpers import eventually
from tests.store.pgfaultproxy import Link, PgFaultProxy, proxied

pytestmark = pytest.mark.postgres

LOGGER = "pepperpy.event.replay"


def server_pid(checkpoints: PostgresCheckpointStore) -> int:
    (on,) = checkpoints._loops.values()
    pid: int = on.connection.get_server_pid()
    return pid


async def position(direct: str, name: str) -> int | None:
    """The position stored for checkpoint ``name`` (read on a connection of its own)."""
    checkpoints = PostgresCheckpointStore(direct)
    try:
        saved = await checkpoints.load(name)
        return None if saved is None else saved.position
    finally:
        await checkpoints.close()


WRITES = ["save", "delete"]


async def write(checkpoints: PostgresCheckpointStore, what: str, name: str = "c") -> Any:
    """Move checkpoint ``name`` from 1 to 2, or delete it."""
    if what == "save":
        return await checkpoints.save(name, 2, {"n": 2}, previous=1)
    return await checkpoints.delete(name)


def expected(what: str) -> int | None:
    """Where the checkpoint stands once ``write(..., what)`` took effect."""
    return 2 if what == "save" else None


def drop_when_sent(proxy: PgFaultProxy, statement: bytes, *, times: int = 1) -> list[Link]:
    """Reset the connection that sends ``statement``, the first ``times`` times."""
    fired: list[Link] = []

    def client(link: Link, data: bytes) -> str | None:
        if len(fired) < times and statement in data:
            fired.append(link)
            return "drop"
        return None

    proxy.on_client = client  # type: ignore[assignment]
    return fired


# -- a statement asyncpg never sent is done again ---------------------------------------


@pytest.mark.parametrize("what", WRITES)
async def test_a_write_asyncpg_refuses_after_the_servers_goodbye_is_done_again(
    proxy: PgFaultProxy,
    direct: str,
    admin: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
    what: str,
) -> None:
    """The session is terminated while the connection sits idle; the server's
    termination notice (FATAL) reaches the client, its close does not yet. asyncpg then
    refuses to send the next statement ('cannot switch to state ...; another operation
    is in progress'), and the store said whether the save happened was unknown,
    although nothing had left the process. It is now done again on a new connection."""
    checkpoints = PostgresCheckpointStore(proxied(direct, proxy.port))
    held: list[Link] = []

    def hold_after_the_goodbye(link: Link, data: bytes) -> str | None:
        if b"57P01" in data:  # admin_shutdown: the FATAL of pg_terminate_backend
            held.append(link)
            return "hold"  # forwarded; the close after it is not
        return None

    try:
        async with asyncio.timeout(30):
            await checkpoints.save("c", 1, None, previous=None)
            pid = server_pid(checkpoints)
            proxy.on_server = hold_after_the_goodbye  # type: ignore[assignment]
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            await eventually(lambda: bool(held))
            await admin.fetchval("SELECT 1")  # a round trip: the client has read the FATAL
            with caplog.at_level(logging.WARNING, logger=LOGGER):
                outcome = await write(checkpoints, what)
            assert outcome is True or isinstance(outcome, str)  # saved (its revision), or deleted
            assert server_pid(checkpoints) != pid  # on a new connection
            assert "another operation" in caplog.text
            assert "(nothing was written); trying once more on a new connection" in caplog.text
        assert await position(direct, "c") == expected(what)
    finally:
        await checkpoints.close()


@pytest.mark.parametrize("what", WRITES)
async def test_a_write_lost_while_asyncpg_prepares_it_is_done_again(
    proxy: PgFaultProxy, direct: str, what: str
) -> None:
    """A statement new to the connection is first prepared (its text parsed, nothing
    run); lost then, it was never executed, so it is done again on a new connection."""
    checkpoints = PostgresCheckpointStore(proxied(direct, proxy.port))
    try:
        async with asyncio.timeout(30):
            await checkpoints.save("c", 1, None, previous=None)
            text = b"pepperpy_checkpoints SET" if what == "save" else b"DELETE FROM "
            fired = drop_when_sent(proxy, text)
            await write(checkpoints, what)
            assert len(fired) == 1, "the fault was not injected"
        assert await position(direct, "c") == expected(what)
    finally:
        await checkpoints.close()


@pytest.mark.parametrize("what", WRITES)
async def test_a_write_lost_on_its_way_to_the_server_stays_of_unknown_outcome(
    proxy: PgFaultProxy, direct: str, what: str
) -> None:
    """Once asyncpg has handed the statement to the socket (its execution, after the
    prepare), the client cannot tell whether it arrived: here it never does, and the
    store must still say the outcome is unknown, and not do it again."""
    checkpoints = PostgresCheckpointStore(proxied(direct, proxy.port))
    name = unique_name("lost.on.its.way")  # the execution carries it, as a parameter
    try:
        async with asyncio.timeout(30):
            await checkpoints.save(name, 1, None, previous=None)
            fired = drop_when_sent(proxy, name.encode())
            with pytest.raises(StoreError) as caught:
                await write(checkpoints, what, name)
            assert not isinstance(caught.value, ConcurrencyError)
            assert "the connection was lost while it was" in str(caught.value)
            assert "so whether that happened is unknown" in str(caught.value)
            assert len(fired) == 1  # not tried again
        assert await position(direct, name) == 1  # the server never got it
    finally:
        await checkpoints.close()


async def test_a_read_whose_connection_is_lost_is_still_done_again(
    proxy: PgFaultProxy, direct: str
) -> None:
    checkpoints = PostgresCheckpointStore(proxied(direct, proxy.port))
    dropped: list[Link] = []

    def lose_the_read(link: Link, data: bytes) -> str | None:
        if not dropped and b"SELECT position, state" in data:  # the statement of the load
            dropped.append(link)
            return "drop"
        return None

    try:
        async with asyncio.timeout(30):
            await checkpoints.save("c", 1, None, previous=None)
            proxy.on_client = lose_the_read  # type: ignore[assignment]
            saved = await checkpoints.load("c")
            assert dropped and saved is not None and saved.position == 1
    finally:
        await checkpoints.close()


# -- the table setup of a loop's first call --------------------------------------------


#: the setup's first statement (the table exists already), and its CREATE TABLE (it does
#: not: inside a transaction holding the schema lock)
SETUP_STATEMENTS = {"exists": b"to_regclass", "created": b"CREATE TABLE IF NOT EXISTS pepperpy"}


@pytest.mark.parametrize("table", ["exists", "created"])
@pytest.mark.parametrize("first_call", ["load", "save"])
async def test_a_connection_lost_while_the_table_is_set_up_is_set_up_again(
    proxy: PgFaultProxy,
    direct: str,
    caplog: pytest.LogCaptureFixture,
    table: str,
    first_call: str,
) -> None:
    """A drop during the setup failed the call with 'cannot open PostgreSQL checkpoint
    store ...: connection was closed in the middle of operation', while a load whose
    connection is lost later is tried once more and the same call right after worked:
    a replay reconnecting after a restart died of it. The setup is now done again on a
    new connection, whether the table existed or is being created."""
    if table == "exists":  # set the table up (a load would not)
        made = PostgresCheckpointStore(direct)
        try:
            await made.save("other", 1, previous=None)
        finally:
            await made.close()
    fired = drop_when_sent(proxy, SETUP_STATEMENTS[table])
    checkpoints = PostgresCheckpointStore(proxied(direct, proxy.port))
    try:
        async with asyncio.timeout(30):
            with caplog.at_level(logging.WARNING, logger=LOGGER):
                if first_call == "load":
                    # a load creates nothing: without a table, the save below creates it
                    assert await checkpoints.load("c") is None
                else:
                    await checkpoints.save("c", 1, None, previous=None)
                await checkpoints.save("c", 5, None, previous=1 if first_call == "save" else None)
            assert len(fired) == 1, "the fault was not injected"
            assert "PostgreSQL checkpoint store setup: the connection was lost" in caplog.text
            assert "trying once more on a new connection" in caplog.text
        assert await position(direct, "c") == 5  # each save once, in turn
    finally:
        await checkpoints.close()


async def test_a_setup_that_gets_no_answer_is_set_up_again(
    proxy: PgFaultProxy, direct: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Silent past command_timeout, as when lost: the watchdog cuts it, and once more."""
    paused: list[Link] = []

    def silence_the_setup(link: Link, data: bytes) -> str | None:
        if not paused and b"to_regclass" in data:
            paused.append(link)
            return "pause"
        return None

    proxy.on_client = silence_the_setup  # type: ignore[assignment]
    checkpoints = PostgresCheckpointStore(proxied(direct, proxy.port, command_timeout=1))
    try:
        async with asyncio.timeout(30):
            with caplog.at_level(logging.WARNING, logger=LOGGER):
                assert await checkpoints.load("c") is None
            assert paused
            assert "did not answer within 1 s (command_timeout)" in caplog.text
            assert "trying once more on a new connection" in caplog.text
    finally:
        await checkpoints.close()


async def test_a_setup_whose_connection_is_lost_twice_fails_saying_so(
    proxy: PgFaultProxy, direct: str
) -> None:
    fired = drop_when_sent(proxy, b"CREATE TABLE IF NOT EXISTS pepperpy", times=2)
    checkpoints = PostgresCheckpointStore(proxied(direct, proxy.port))
    try:
        async with asyncio.timeout(30):
            with pytest.raises(StoreError) as caught:
                await checkpoints.save("c", 1, previous=None)  # a load creates no table
            assert len(fired) == 2  # tried once more, on a new connection
            message = str(caught.value)
            assert message.startswith("cannot open PostgreSQL checkpoint store at ")
            assert ": the connection was lost (" in message
            assert "underlying connection is closed" not in message
            assert isinstance(caught.value.__cause__, asyncpg.ConnectionDoesNotExistError)
            await checkpoints.save("c", 1, previous=None)  # the network healed: set up now
            assert await position(direct, "c") == 1
    finally:
        await checkpoints.close()
