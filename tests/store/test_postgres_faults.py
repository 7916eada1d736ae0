"""The PostgreSQL store and its checkpoints under network faults, through a fault proxy.

A partition leaves connections open with nobody answering: without client-side bounds
every call (and close) hung for as long as it lasted. These tests break the network at
chosen points (tests/store/pgfaultproxy.py) and check that each call ends within its
documented bound with an error that says whether anything may have been written, and
that the store works again once the network heals. Timeouts are set small through the
URL so each test takes a few seconds; the bounds asserted leave room for a loaded
machine.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from pepperpy.event import (
    ClosedError,
    ConcurrencyError,
    ConfigurationError,
    Event,
    EventReplay,
    EventStore,
    Projection,
    StoreError,
)
from pepperpy.event._checkpoints import PostgresCheckpointStore
from pepperpy.event.store import _pg_schema
from pepperpy.event.store.postgres import PostgresBackend, PostgresOptions, parse_options
from tests.helpers import eventually
from tests.store.pgfaultproxy import LISTENER, Link, PgFaultProxy, mark_listening, proxied

# -- URL options (no server) ----------------------------------------------------------


def test_the_timeouts_are_taken_out_of_the_url_for_asyncpg() -> None:
    dsn, options = parse_options(
        "postgresql://h/x?command_timeout=2.5&sslmode=disable&connect_timeout=1"
        "&listener_ping=0.5&schema=s"
    )
    assert dsn == "postgresql://h/x?sslmode=disable"
    assert options == PostgresOptions(
        schema="s", command_timeout=2.5, connect_timeout=1.0, listener_ping=0.5
    )
    assert options.close_timeout == 2.5  # never longer than one command may take
    defaults = parse_options("postgresql://h/x")[1]
    assert (defaults.command_timeout, defaults.connect_timeout, defaults.listener_ping) == (
        30.0,
        10.0,
        5.0,
    )
    assert defaults.close_timeout == 10.0


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("command_timeout=0", "command_timeout='0': give a number of seconds > 0"),
        ("connect_timeout=-1", "connect_timeout='-1': give a number of seconds > 0"),
        ("listener_ping=soon", "listener_ping='soon'"),
        ("command_timeout=nan", "command_timeout='nan'"),
        ("command_timeout=inf", "command_timeout='inf'"),
        ("command_timeout=1&command_timeout=2", "command_timeout is given twice"),
    ],
)
def test_a_bad_timeout_is_refused_when_the_store_is_made(query: str, problem: str) -> None:
    for make in (EventStore, PostgresCheckpointStore):
        with pytest.raises(ConfigurationError) as caught:
            make(f"postgresql://app:s3cret@h/x?{query}")
        assert problem in str(caught.value) and "s3cret" not in str(caught.value)


# -- fixtures ---------------------------------------------------------------------------


def via(proxy: PgFaultProxy, direct: str, **options: object) -> str:
    return proxied(direct, proxy.port, **options)


async def within(seconds: float, awaitable: Awaitable[Any]) -> tuple[Any, float]:
    """``(result or exception, elapsed)``; fails the test if it takes over ``seconds``."""
    started = time.monotonic()
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            outcome: Any = await awaitable
    except Exception as exc:
        if deadline.expired():
            raise AssertionError(f"still waiting after {seconds} s") from None
        outcome = exc
    return outcome, time.monotonic() - started


async def count(direct: str, ids: list[str]) -> int:
    """How many of the events ``ids`` the store holds (read straight from the server)."""
    async with EventStore(direct) as store:
        return sum(1 for event in await store.read_all() if event.id in ids)


def lose(proxy: PgFaultProxy, reply: bytes, *, marked_by: bytes = b"") -> list[Link]:
    """Reset the first connection that receives ``reply`` from the server (the statement
    ran, the client never hears); with ``marked_by``, only a connection that sent those
    bytes before. Returns the links it reset."""
    fired: list[Link] = []

    def client(link: Link, data: bytes) -> None:
        if marked_by and marked_by in data:
            link.marks.add("marked")

    def server(link: Link, data: bytes) -> str | None:
        if not fired and reply in data and (not marked_by or "marked" in link.marks):
            fired.append(link)
            return "drop"
        return None

    proxy.on_client = client
    proxy.on_server = server  # type: ignore[assignment]
    return fired


# -- partitions: every call ends within its bound ----------------------------------------


async def test_calls_during_a_partition_fail_within_their_bound(
    proxy: PgFaultProxy, direct: str
) -> None:
    store = EventStore(via(proxy, direct, command_timeout=1, connect_timeout=1))
    try:
        await store.append("s.1", [Event("t.x", {"i": i}) for i in range(3)])
        event = Event("t.x", {"i": 3})
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "append": lambda: store.append("s.1", event),
            "get_stream": lambda: store.get_stream("s.1"),
            "read_all": lambda: store.read_all(0, limit=2),
            "stream_version": lambda: store.stream_version("s.1"),
        }
        for name, call in calls.items():
            proxy.pause()
            error, elapsed = await within(10, call())
            proxy.drop()  # what the partition held back is lost with it
            proxy.resume()
            assert isinstance(error, StoreError), (name, error)
            # one attempt times out, a retry on a new connection cannot connect
            assert "did not answer within 1 s (command_timeout)" in str(error) or (
                "connecting timed out after 1 s (connect_timeout)" in str(error)
            ), (name, error)
            assert elapsed < 6, (name, elapsed)
        # healed: the store works again, and the timed-out append wrote nothing
        await store.append("s.1", {"type": "t.after"})
        assert [e.type for e in await store.get_stream("s.1", 3)] == ["t.after"]
        assert await count(direct, [event.id]) == 0
    finally:
        proxy.resume()
        await store.close()


async def test_an_append_whose_commit_gets_no_answer_says_its_outcome_is_unknown(
    proxy: PgFaultProxy, direct: str
) -> None:
    """The server committed; its answer never comes (the connection goes silent just
    then). A plain "failed" would invite a retry with a new dict: a duplicate."""
    store = EventStore(via(proxy, direct, command_timeout=1, connect_timeout=1))
    try:
        await store.append("s.1", {"type": "t.warm"})

        def silence_the_commit_reply(link: Link, data: bytes) -> str | None:
            return "pause" if b"COMMIT\x00" in data and link.application != LISTENER else None

        proxy.on_server = silence_the_commit_reply  # type: ignore[assignment]
        event = Event("t.x")
        error, elapsed = await within(10, store.append("s.1", event))
        proxy.on_server = None
        assert isinstance(error, StoreError), error
        assert "no answer came while committing, so whether it was written is unknown" in str(error)
        assert "same Event ids" in str(error)
        assert elapsed < 5
        assert await count(direct, [event.id]) == 1  # it was
        await store.append("s.1", event)  # the advised retry is a no-op
        assert await count(direct, [event.id]) == 1
    finally:
        await store.close()


async def test_appends_go_on_when_a_pooled_connection_silently_dies(
    proxy: PgFaultProxy, direct: str
) -> None:
    """A connection that went silent in the pool (a NAT box forgot it) held the group
    committer, and with it every append, until the network reset it."""
    store = EventStore(via(proxy, direct, command_timeout=1))
    try:
        await store.append("s.1", {"type": "t.warm"})
        dead = proxy.links()
        for link in dead:
            link.pause()
        first, second = Event("t.x", {"n": 1}), Event("t.x", {"n": 2})
        outcome, elapsed = await within(10, store.append("s.1", first))
        assert outcome.global_position == 1, outcome
        assert elapsed < 5
        _, elapsed = await within(10, store.append("s.2", second))
        assert elapsed < 1  # on the new connection, no wait
        assert await count(direct, [first.id, second.id]) == 2
    finally:
        await store.close()


async def test_a_connect_timeout_says_so(proxy: PgFaultProxy, direct: str) -> None:
    """asyncpg's TimeoutError has no text: the message ended in ': ', after 60 s."""
    proxy.pause()
    store = EventStore(via(proxy, direct, connect_timeout=0.5))
    try:
        error, elapsed = await within(10, store.append("s.1", {"type": "t.x"}))
        assert isinstance(error, StoreError)
        assert str(error).endswith("connecting timed out after 0.5 s (connect_timeout)")
        assert elapsed < 4
    finally:
        proxy.resume()
        await store.close()


@pytest.mark.skipif(
    not hasattr(socket, "TCP_USER_TIMEOUT"), reason="TCP_USER_TIMEOUT is Linux only"
)
async def test_the_kernel_is_told_to_give_up_on_a_silent_server(direct: str) -> None:
    """TCP keepalive and TCP_USER_TIMEOUT (from command_timeout) on the pool's sockets, so
    a dead idle connection is noticed before a call waits on it, also in a real network
    where the proxy's tricks do not apply."""
    async with EventStore(f"{direct}&command_timeout=7") as store:
        await store.append("s.1", {"type": "t.x"})
        backend = store.backend
        assert isinstance(backend, PostgresBackend)
        (on,) = backend._loops.values()
        async with on.pool.acquire() as connection:
            sock = connection._con._transport.get_extra_info("socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 7000


# -- live delivery ------------------------------------------------------------------------


async def test_live_delivery_resumes_when_the_listen_connection_goes_silent(
    proxy: PgFaultProxy, direct: str
) -> None:
    """Nothing tells a client that its idle LISTEN connection died silently: delivery
    froze for as long as that lasted. It is pinged now, and replaced within about twice
    ``listener_ping``."""
    reader = EventStore(via(proxy, direct, listener_ping=0.5, command_timeout=2))
    writer = EventStore(direct)
    seen: list[int] = []
    listening = mark_listening(proxy)

    async def follow() -> None:
        async for event in reader.subscribe(0):
            assert event.global_position is not None
            seen.append(event.global_position)

    follower = asyncio.ensure_future(follow())
    try:
        await writer.append("s.1", {"type": "t.x"})
        await eventually(lambda: seen == [0] and bool(listening()))
        (listener,) = listening()
        listener.pause()
        await asyncio.sleep(0.2)
        await writer.append("s.1", {"type": "t.x"})
        started = time.monotonic()
        await eventually(lambda: seen == [0, 1], timeout=8)
        assert time.monotonic() - started < 5
        await eventually(lambda: any(link is not listener for link in proxy.links(LISTENER)))
        await writer.append("s.1", {"type": "t.x"})  # through the new listener
        await eventually(lambda: seen == [0, 1, 2], timeout=5)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await reader.close()
        await writer.close()


# -- close and cancellation ------------------------------------------------------------


async def test_close_during_a_partition_returns_within_its_bound(
    proxy: PgFaultProxy, direct: str
) -> None:
    """close() waits for queued appends and the server's goodbye at most 10 s, or
    command_timeout if smaller; then it cuts the connections off. It hung before."""
    store = EventStore(via(proxy, direct, command_timeout=1.5, connect_timeout=1))
    ended = asyncio.Event()

    async def follow() -> None:
        async for _ in store.subscribe(0):
            pass
        ended.set()

    follower = asyncio.ensure_future(follow())
    await store.append("s.1", {"type": "t.x"})
    await eventually(lambda: bool(proxy.links(LISTENER)))
    proxy.pause()
    append = asyncio.ensure_future(store.append("s.1", Event("t.x")))
    await asyncio.sleep(0.2)
    outcome, elapsed = await within(10, store.close())
    assert outcome is None
    assert elapsed < 5
    error, _ = await within(5, append)
    assert isinstance(error, ClosedError | StoreError), repr(error)
    assert "nothing was written" in str(error) or "unknown" in str(error)
    await within(2, ended.wait())  # closing the store ended its subscription
    await within(2, follower)


async def test_cancelling_close_takes_effect_at_once_and_the_append_in_flight_says_so(
    proxy: PgFaultProxy, direct: str
) -> None:
    """wait_for(close(), 0.3) took 63 s (asyncpg's cancel request waited on its connect
    timeout), and the append in flight, whose caller was not cancelled, got a bare
    CancelledError."""
    store = EventStore(via(proxy, direct, command_timeout=30, connect_timeout=30))
    await store.append("s.1", {"type": "t.x"})
    proxy.pause()
    event = Event("t.x")
    append = asyncio.ensure_future(store.append("s.1", event))
    await asyncio.sleep(0.3)
    error, elapsed = await within(5, asyncio.wait_for(store.close(), 0.3))
    assert isinstance(error, TimeoutError)
    assert elapsed < 2
    error, _ = await within(2, append)
    assert isinstance(error, ClosedError), repr(error)  # its COMMIT was never sent
    assert "close() was cancelled" in str(error) and "nothing was written" in str(error)
    proxy.resume()
    assert await count(direct, [event.id]) == 0


async def test_cancelling_a_read_during_a_partition_takes_effect_at_once(
    proxy: PgFaultProxy, direct: str
) -> None:
    """The cancelled read's connection is cut off, not released: a release waited for
    asyncpg's cancel request, itself waiting 60 s to connect."""
    store = EventStore(via(proxy, direct, command_timeout=30, connect_timeout=30))
    try:
        await store.append("s.1", {"type": "t.x"})
        for read in (
            lambda: store.get_stream("s.1"),
            lambda: store.stream_version("s.1"),
            lambda: store.read_all(0),
        ):
            proxy.pause()
            error, elapsed = await within(5, asyncio.wait_for(read(), 0.3))
            proxy.resume()
            assert isinstance(error, TimeoutError)
            assert elapsed < 2
        assert await store.stream_version("s.1") == 0  # on a new connection
    finally:
        proxy.resume()
        await store.close()


# -- writes of unknown outcome ----------------------------------------------------------


async def test_each_write_of_unknown_outcome_gives_its_own_advice(
    proxy: PgFaultProxy, direct: str
) -> None:
    """delete_stream and save_snapshot advised retrying 'with the same Event ids'."""
    store = EventStore(via(proxy, direct))
    try:
        await store.append("gone.1", {"type": "t.x"})
        await store.append("snap.1", {"type": "t.x"})
        lose(proxy, b"COMMIT\x00")
        error, _ = await within(10, store.delete_stream("gone.1"))
        assert isinstance(error, StoreError)
        assert "whether the stream was deleted is unknown" in str(error)
        assert "call delete_stream again" in str(error) and "Event ids" not in str(error)
        assert await store.stream_version("gone.1") is None  # it was
        lose(proxy, b"COMMIT\x00")
        error, _ = await within(10, store.save_snapshot("snap.1", {"n": 1}, 0))
        assert isinstance(error, StoreError)
        assert "whether the snapshot was saved is unknown" in str(error)
        assert "Event ids" not in str(error)
        assert (await store.load_snapshot("snap.1")) is not None
    finally:
        await store.close()


def writes_of(store: EventStore, event: Event) -> dict[str, Callable[[], Awaitable[Any]]]:
    """The store's writes that commit a transaction, on stream ``s.1`` (which must hold
    ``event`` for the snapshot and the delete)."""
    return {
        "append": lambda: store.append("s.2", event),
        "delete_stream": lambda: store.delete_stream("s.1"),
        "save_snapshot": lambda: store.save_snapshot("s.1", {"n": 1}, 0),
    }


async def written(direct: str, write: str, event: Event) -> bool:
    """Whether the write of :func:`writes_of` named ``write`` is in the store."""
    async with EventStore(direct) as store:
        if write == "append":
            return [e.id for e in await store.get_stream("s.2")] == [event.id]
        if write == "delete_stream":
            return await store.stream_version("s.1") is None
        return await store.load_snapshot("s.1") is not None


@pytest.mark.parametrize("write", ["append", "delete_stream", "save_snapshot"])
async def test_a_commit_asyncpg_refuses_after_the_servers_goodbye_is_done_again(
    proxy: PgFaultProxy,
    direct: str,
    database: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    write: str,
) -> None:
    """The session is terminated between a write's last statement and its COMMIT; the
    server's termination notice (FATAL) reaches the client before its close does.
    asyncpg then refuses to send the COMMIT ("cannot switch to state ...; another
    operation is in progress") and the server has rolled back: nothing can have been
    written, yet the store said the outcome was unknown (seen in a multi-process run).
    The write is now done again on a new connection, and the caller sees nothing."""
    store = EventStore(via(proxy, direct))
    admin = await asyncpg.connect(database)
    held: list[Link] = []
    commits: list[int] = []
    commit = asyncpg.transaction.Transaction.commit

    def hold_after_the_goodbye(link: Link, data: bytes) -> str | None:
        if b"57P01" in data:  # admin_shutdown: the FATAL of pg_terminate_backend
            held.append(link)
            return "hold"  # forwarded; the close after it is not
        return None

    async def commit_after_the_goodbye(transaction: asyncpg.transaction.Transaction) -> None:
        commits.append(transaction._connection.get_server_pid())
        if len(commits) == 1:
            proxy.on_server = hold_after_the_goodbye  # type: ignore[assignment]
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", commits[0])
            await eventually(lambda: bool(held))
            await admin.fetchval("SELECT 1")  # a round trip: the client has read the FATAL
        await commit(transaction)

    event = Event("t.x")
    try:
        async with asyncio.timeout(30):
            await store.append("s.1", event)
            monkeypatch.setattr(asyncpg.transaction.Transaction, "commit", commit_after_the_goodbye)
            with caplog.at_level(logging.WARNING, logger="pepperpy.event.store"):
                await writes_of(store, event)[write]()
            monkeypatch.undo()
            assert len(held) == 1 and len(commits) == 2 and commits[0] != commits[1]
            assert "another operation" in caplog.text and "no COMMIT was sent" in caplog.text
            assert await written(direct, write, event)
    finally:
        await admin.close()
        await store.close()


@pytest.mark.parametrize("write", ["append", "delete_stream", "save_snapshot"])
async def test_a_commit_lost_on_its_way_to_the_server_stays_of_unknown_outcome(
    proxy: PgFaultProxy, direct: str, write: str
) -> None:
    """Once asyncpg has handed the COMMIT to the socket, the client cannot tell whether
    it arrived: the connection breaks before the server reads it here, and nothing was
    written, but the store must still say the outcome is unknown, not retry."""
    store = EventStore(via(proxy, direct))
    event = Event("t.x")
    try:
        await store.append("s.1", event)

        def lose_the_commit(link: Link, data: bytes) -> str | None:
            return "drop" if b"COMMIT" in data and link.application != LISTENER else None

        proxy.on_client = lose_the_commit  # type: ignore[assignment]
        error, _ = await within(10, writes_of(store, event)[write]())
        proxy.on_client = None
        assert isinstance(error, StoreError), repr(error)
        assert "the connection was lost while committing" in str(error)
        assert "is unknown" in str(error)
        assert not await written(direct, write, event)  # the server never got the COMMIT
    finally:
        await store.close()


# -- the schema setup on first use ------------------------------------------------------


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


async def schema_versions(database: str, direct: str) -> list[int]:
    """The migrations recorded in the schema of ``direct``, in order."""
    schema = direct.rsplit("schema=", 1)[1]
    admin = await asyncpg.connect(database)
    try:
        rows = await admin.fetch(
            f'SELECT version FROM "{schema}".pepperpy_schema_version ORDER BY version'
        )
        return [row[0] for row in rows]
    finally:
        await admin.close()


@pytest.mark.parametrize("lost_at", ["restart", "first_migration"])
async def test_a_connection_lost_while_a_store_sets_itself_up_is_set_up_again(
    proxy: PgFaultProxy,
    direct: str,
    database: str,
    caplog: pytest.LogCaptureFixture,
    lost_at: str,
) -> None:
    """A store's first call on a loop sets the schema up on its first connection. A drop
    there failed the call with 'schema setup failed: cannot call Connection.execute():
    connection has been released back to the pool', while every other call is tried
    once more and the same call right after succeeded: a subscriber reopening its store
    while connections were cut died this way. The setup is now done again on a new
    connection, whether the schema existed (a restart: lost at the version check) or is
    being created (lost at the first migration, inside its transaction)."""
    expected: list[str] = []
    if lost_at == "restart":
        async with EventStore(direct) as first:
            await first.append("s.1", {"type": "t.x"})
        expected = ["t.x"]
    # an up-to-date schema is only read (no lock, no DDL): lost at that read
    restart = b"to_regclass('pepperpy_schema_version')"
    statement = restart if lost_at == "restart" else b"CREATE TABLE pepperpy_streams"
    fired = drop_when_sent(proxy, statement)
    store = EventStore(via(proxy, direct))
    try:
        async with asyncio.timeout(30):
            with caplog.at_level(logging.WARNING, logger="pepperpy.event.store"):
                events = await store.read_all(0)
            assert len(fired) == 1, "the fault was not injected"
            assert [event.type for event in events] == expected
            assert "PostgreSQL schema setup: the connection was lost" in caplog.text
            assert "trying once more on a new connection" in caplog.text
            await store.append("s.1", {"type": "t.after"})
        migrations = len(_pg_schema._MIGRATIONS)
        assert await schema_versions(database, direct) == list(range(1, migrations + 1))  # once
    finally:
        await store.close()


async def test_a_setup_whose_connection_is_lost_twice_fails_saying_so(
    proxy: PgFaultProxy, direct: str
) -> None:
    """The error named what went wrong after the loss: the ROLLBACK of the migration's
    transaction, then the check before the advisory unlock, both tried on the dead
    connection, replaced it with 'the underlying connection is closed' and 'connection
    has been released back to the pool'. The next call sets the store up again."""
    fired = drop_when_sent(proxy, b"CREATE TABLE pepperpy_streams", times=2)
    store = EventStore(via(proxy, direct))
    try:
        async with asyncio.timeout(30):
            with pytest.raises(StoreError) as caught:
                await store.read_all(0)
            assert len(fired) == 2  # tried once more, on a new connection
            message = str(caught.value)
            assert message.startswith("PostgreSQL schema setup failed: the connection was lost (")
            assert "released back to the pool" not in message
            assert "underlying connection is closed" not in message
            assert isinstance(caught.value.__cause__, asyncpg.ConnectionDoesNotExistError)
            assert await store.read_all(0) == []  # the network healed: set up now
    finally:
        await store.close()


# -- the checkpoint store -------------------------------------------------------------


async def test_checkpoint_calls_during_a_partition_fail_within_their_bound(
    proxy: PgFaultProxy, direct: str
) -> None:
    """The checkpoint store takes the event store's URL options: a replay's or a
    projection's save hung for as long as a partition lasted."""
    checkpoints = PostgresCheckpointStore(via(proxy, direct, command_timeout=1, connect_timeout=1))
    try:
        await checkpoints.save("c", 1, None, previous=None)
        # prepared now: below, the UPDATE itself is sent (held at its first prepare,
        # nothing could run, and the save would be tried again: test_checkpoint_faults.py)
        await checkpoints.save("c", 2, None, previous=1)
        proxy.pause()
        error, elapsed = await within(10, checkpoints.save("c", 3, None, previous=2))
        assert isinstance(error, StoreError) and not isinstance(error, ConcurrencyError)
        assert "no answer came while it was saving checkpoint 'c' at position 3" in str(error)
        assert "whether that happened is unknown" in str(error)
        assert "did not answer within 1 s (command_timeout)" in str(error)
        assert elapsed < 4
        error, elapsed = await within(10, checkpoints.load("c"))  # on a new connection
        assert isinstance(error, StoreError)
        assert str(error).endswith("connecting timed out after 1 s (connect_timeout)")
        assert elapsed < 4
        proxy.drop()  # the held UPDATE is lost with the partition
        proxy.resume()
        saved = await checkpoints.load("c")
        assert saved is not None and saved.position == 2
    finally:
        proxy.resume()
        await checkpoints.close()


async def test_the_checkpoint_store_closes_within_its_bound_during_a_partition(
    proxy: PgFaultProxy, direct: str
) -> None:
    """It raised a builtin TimeoutError after 10 s; now it cuts the connection off and
    returns, and a save under way says its outcome is unknown."""
    checkpoints = PostgresCheckpointStore(via(proxy, direct, command_timeout=1.5))
    await checkpoints.save("c", 1, None, previous=None)
    proxy.pause()
    outcome, elapsed = await within(10, checkpoints.close())
    assert outcome is None
    assert elapsed < 4
    proxy.resume()
    await checkpoints.save("c", 2, None, previous=1)  # it opens a connection again
    proxy.pause()
    save = asyncio.ensure_future(checkpoints.save("c", 3, None, previous=2))
    await asyncio.sleep(0.2)
    outcome, _ = await within(10, checkpoints.close())
    assert outcome is None
    error, _ = await within(2, save)
    assert isinstance(error, StoreError) and not isinstance(error, ConcurrencyError)
    assert "whether that happened is unknown" in str(error)
    proxy.resume()


async def test_a_checkpoint_save_whose_answer_is_lost_says_its_outcome_is_unknown(
    proxy: PgFaultProxy, direct: str
) -> None:
    checkpoints = PostgresCheckpointStore(via(proxy, direct))
    try:
        await checkpoints.save("c", 1, None, previous=None)
        lose(proxy, b"UPDATE 1")
        error, _ = await within(10, checkpoints.save("c", 2, None, previous=1))
        assert isinstance(error, StoreError) and not isinstance(error, ConcurrencyError)
        assert "saving checkpoint 'c' at position 2, so whether that happened is unknown" in str(
            error
        )
        saved = await checkpoints.load("c")
        assert saved is not None and saved.position == 2  # it was
    finally:
        await checkpoints.close()


async def test_a_projection_commit_during_a_partition_fails_within_its_bound(
    proxy: PgFaultProxy, direct: str
) -> None:
    store = EventStore(direct)
    projection = Projection(
        "p", store, state_store=via(proxy, direct, command_timeout=1, connect_timeout=1)
    )
    projection.on("t.x", lambda state, event: {"n": state.get("n", 0) + 1})
    try:
        await store.append("s.1", [Event("t.x") for _ in range(3)])
        await projection.run()
        await store.append("s.1", Event("t.x"))
        proxy.pause()
        error, elapsed = await within(15, projection.run())
        proxy.drop()  # the held UPDATE is lost: the checkpoint stays where it was
        proxy.resume()
        assert isinstance(error, StoreError), repr(error)
        assert elapsed < 8
        await projection.run()
        assert projection.state == {"n": 4} and projection.position == 3
    finally:
        proxy.resume()
        await projection.close()
        await store.close()


# -- replays whose checkpoint answer is lost -------------------------------------------


async def test_a_replay_whose_checkpoint_answer_is_lost_finds_the_save_and_goes_on(
    proxy: PgFaultProxy, direct: str
) -> None:
    """The retry on exit compared against the position before the lost save and raised
    ConcurrencyError against the replay's own write. Now the replay reads the checkpoint
    back: it holds what was written, so the save counts and the replay goes on."""
    store = EventStore(via(proxy, direct))
    replay = EventReplay(store)
    handled: list[int] = []
    replay.handle("t.*", lambda event: handled.append(event.global_position))
    try:
        await store.append("s.1", [Event("t.x", {"i": i}) for i in range(30)])
        lose(proxy, b"UPDATE 1", marked_by=b"pepperpy_checkpoints")
        report, _ = await within(20, replay.replay_all(checkpoint="c", checkpoint_every=10))
        assert not isinstance(report, BaseException), repr(report)
        assert report.replayed == 30 and report.last_position == 29
        assert handled == list(range(30))
        saved = await replay.checkpoints.load("replay:c")
        assert saved is not None and saved.position == 29
    finally:
        await replay.close()
        await store.close()


async def test_a_replay_that_cannot_read_its_checkpoint_back_says_the_save_is_unknown(
    proxy: PgFaultProxy, direct: str
) -> None:
    store = EventStore(via(proxy, direct, connect_timeout=1))
    replay = EventReplay(store)
    handled: list[int] = []
    replay.handle("t.*", lambda event: handled.append(event.global_position))
    try:
        await store.append("s.1", [Event("t.x", {"i": i}) for i in range(30)])
        fired = lose(proxy, b"UPDATE 1", marked_by=b"pepperpy_checkpoints")
        server_hook = proxy.on_server
        assert server_hook is not None

        def lose_then_refuse(link: Link, data: bytes) -> Any:
            action = server_hook(link, data)
            if fired:
                proxy.refuse()  # no new connection to read the checkpoint back on
            return action

        proxy.on_server = lose_then_refuse
        error, _ = await within(20, replay.replay_all(checkpoint="c", checkpoint_every=10))
        assert isinstance(error, StoreError) and not isinstance(error, ConcurrencyError), repr(
            error
        )
        assert "whether that happened is unknown" in str(error)
        notes = "\n".join(getattr(error, "__notes__", []))
        assert "reading checkpoint 'c' back failed too" in notes
        proxy.on_server = proxy.on_client = None
        proxy.heal()
        report = await replay.replay_all(checkpoint="c", checkpoint_every=10)
        assert report.last_position == 29
        assert set(handled) == set(range(30))  # at least once, nothing skipped
    finally:
        proxy.heal()
        await replay.close()
        await store.close()


# -- the proxy -------------------------------------------------------------------------


def test_the_fault_proxy_only_forwards_to_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        PgFaultProxy(5432, upstream_host="10.0.0.1")
