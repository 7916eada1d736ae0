"""``StoreError.written`` from the PostgreSQL event store: ``False`` exactly where no
``COMMIT`` can have taken effect, ``None`` where one may have.

The store left it at ``None`` on every failure, although it knows when no ``COMMIT`` was
ever sent (it retries on that knowledge): a replay or a caller then had to read back, or
hold in doubt, a write that provably left nothing. Faults are made through the fault
proxy (tests/store/pgfaultproxy.py) and with triggers in the test's own schema.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from pepperpy.event import ClosedError, Event, EventStore, StoreError
from tests.store.pgfaultproxy import Link, PgFaultProxy, proxied

pytestmark = pytest.mark.postgres

LISTENER = "pepperpy-event-listener"

#: how each append test writes its events: one event, a batch in one call, or several
#: callers at once (one group commit)
SHAPES = ["single", "batch", "group"]


class Cut:
    """Reset a connection at one point of a write, the first ``times`` times.

    ``marker`` is what the write sends (an event id, a name) and nothing before it does.
    ``at``: ``"sent"`` as the client sends it (the statement never reaches the server);
    ``"ran"`` as the server answers it (it ran, and no ``COMMIT`` follows); ``"commit"``
    as the client sends the ``COMMIT`` after it (lost on its way: the server never gets
    it); ``"committed"`` as the server answers that ``COMMIT`` (it committed).
    """

    def __init__(self, proxy: PgFaultProxy, marker: bytes, at: str, times: int = 1) -> None:
        self.marker = marker
        self.at = at
        self.times = times
        self.fired: list[Link] = []
        proxy.on_client = self._client  # type: ignore[assignment]
        proxy.on_server = self._server  # type: ignore[assignment]

    def _fire(self, link: Link) -> str | None:
        if len(self.fired) >= self.times:
            return None
        self.fired.append(link)
        return "drop"

    def _client(self, link: Link, data: bytes) -> str | None:
        if self.marker in data:
            link.marks.add("marked")
            if self.at == "sent":
                return self._fire(link)
        if self.at == "commit" and "marked" in link.marks and b"COMMIT" in data:
            return self._fire(link)
        return None

    def _server(self, link: Link, data: bytes) -> str | None:
        if "marked" not in link.marks:
            return None
        if self.at == "ran" or (self.at == "committed" and b"COMMIT\x00" in data):
            return self._fire(link)
        return None


def schema_of(direct: str) -> str:
    return direct.rsplit("schema=", 1)[1]


async def ids_stored(direct: str, ids: list[str]) -> set[str]:
    """Which of the events ``ids`` the store holds (read straight from the server)."""
    async with EventStore(direct) as store:
        return {event.id for event in await store.read_all() if event.id in ids}


async def append(store: EventStore, shape: str, events: list[Event]) -> list[Any]:
    """Append ``events`` as ``shape`` says; each caller's outcome (result or error)."""
    if shape == "single":
        calls = [store.append("w.1", events[0])]
    elif shape == "batch":
        calls = [store.append("w.1", events)]
    else:
        calls = [store.append(f"w.{i}", event) for i, event in enumerate(events)]
    return list(await asyncio.gather(*calls, return_exceptions=True))


def events_for(shape: str) -> list[Event]:
    return [Event("t.x", {"i": i}) for i in range(1 if shape == "single" else 3)]


def failures(outcomes: list[Any]) -> list[StoreError]:
    assert all(isinstance(outcome, StoreError) for outcome in outcomes), outcomes
    return outcomes


# -- nothing was sent: False --------------------------------------------------------------


def writes_of(store: EventStore) -> dict[str, Callable[[], Awaitable[Any]]]:
    """The store's writes, on a stream ``s.1`` holding one event."""
    return {
        "append": lambda: store.append("s.2", Event("t.x")),
        "append_batch": lambda: store.append("s.2", [Event("t.x"), Event("t.y")]),
        "delete_stream": lambda: store.delete_stream("s.1"),
        "save_snapshot": lambda: store.save_snapshot("s.1", {"n": 1}, 0),
    }


@pytest.mark.parametrize("write", ["append", "append_batch", "delete_stream", "save_snapshot"])
async def test_a_store_that_cannot_connect_says_nothing_was_written(
    proxy: PgFaultProxy, direct: str, write: str
) -> None:
    async with EventStore(direct) as store:
        await store.append("s.1", Event("t.x"))
    proxy.refuse()
    async with EventStore(proxied(direct, proxy.port, connect_timeout=1)) as store:
        with pytest.raises(StoreError) as caught:
            await writes_of(store)[write]()
        assert "cannot connect to PostgreSQL" in str(caught.value)
        assert caught.value.written is False


@pytest.mark.parametrize("fault", ["refuse", "blackhole", "pause"])
async def test_a_write_whose_connections_all_fail_before_commit_says_nothing_was_written(
    proxy: PgFaultProxy, direct: str, fault: str
) -> None:
    """The pooled connection is reset (or goes silent) under the write, and the new one
    it is tried again on cannot be opened: no COMMIT was ever sent."""
    store = EventStore(proxied(direct, proxy.port, command_timeout=1, connect_timeout=1))
    event = Event("t.x")
    try:
        await store.append("s.1", Event("t.warm"))
        if fault == "pause":
            proxy.pause()  # every connection, open or new, goes silent
        else:
            getattr(proxy, fault)()
            proxy.drop()
        async with asyncio.timeout(30):
            with pytest.raises(StoreError) as caught:
                await store.append("s.1", event)
        assert not isinstance(caught.value, ClosedError)
        assert caught.value.written is False, caught.value
        proxy.resume()
        proxy.drop()
        proxy.heal()
        assert await ids_stored(direct, [event.id]) == set()
    finally:
        proxy.resume()
        proxy.heal()
        await store.close()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("at", ["sent", "ran"])
async def test_appends_cut_off_before_their_commit_say_nothing_was_written(
    proxy: PgFaultProxy, direct: str, shape: str, at: str
) -> None:
    """The connection is reset as the INSERTs go out, or once they ran but before the
    COMMIT: the write is tried once more on a new connection, and cut off there too."""
    store = EventStore(proxied(direct, proxy.port))
    events = events_for(shape)
    try:
        await store.append("s.1", Event("t.warm"))
        cut = Cut(proxy, events[0].id.encode(), at, times=2)
        async with asyncio.timeout(30):
            errors = failures(await append(store, shape, events))
        assert len(cut.fired) == 2  # cut off, tried once more, cut off again
        assert [error.written for error in errors] == [False] * len(errors)
        assert "whether" not in str(errors[0])  # no "whether it was written is unknown"
        proxy.on_client = proxy.on_server = None
        assert await ids_stored(direct, [event.id for event in events]) == set()
    finally:
        await store.close()


# -- a COMMIT was sent and not answered: None ---------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("at", ["commit", "committed"])
async def test_appends_cut_off_in_their_commit_round_trip_say_nobody_knows(
    proxy: PgFaultProxy, direct: str, shape: str, at: str
) -> None:
    """Lost on its way to the server (nothing written) or with the server's answer (all
    written): the client cannot tell the two apart, so neither may claim False."""
    store = EventStore(proxied(direct, proxy.port))
    events = events_for(shape)
    try:
        await store.append("s.1", Event("t.warm"))
        cut = Cut(proxy, events[0].id.encode(), at)
        async with asyncio.timeout(30):
            errors = failures(await append(store, shape, events))
        assert len(cut.fired) == 1  # not tried again
        assert [error.written for error in errors] == [None] * len(errors)
        assert "is unknown" in str(errors[0])
        proxy.on_client = proxy.on_server = None
        stored = await ids_stored(direct, [event.id for event in events])
        assert stored == (set() if at == "commit" else {event.id for event in events})
    finally:
        await store.close()


async def test_a_write_that_fails_its_commit_round_trip_says_so_for_other_writes(
    proxy: PgFaultProxy, direct: str
) -> None:
    store = EventStore(proxied(direct, proxy.port))
    try:
        await store.append("s.1", Event("t.x"))
        await store.append("s.2", Event("t.x"))
        for write, marker in (("delete_stream", b"s.1"), ("save_snapshot", b"s.2")):
            cut = Cut(proxy, marker, "committed")
            call = (
                store.delete_stream("s.1")
                if write == "delete_stream"
                else store.save_snapshot("s.2", {"n": 1}, 0)
            )
            with pytest.raises(StoreError) as caught:
                async with asyncio.timeout(30):
                    await call
            assert len(cut.fired) == 1, write
            assert caught.value.written is None, write
    finally:
        proxy.on_client = proxy.on_server = None
        await store.close()


# -- PostgreSQL refused the statement, or the COMMIT: False ---------------------------------


async def refuse_inserts(admin: asyncpg.Connection, schema: str, code: str, when: str) -> None:
    """Make inserts of events of type ``t.refused`` in ``schema`` fail with SQLSTATE
    ``code``: as the row is inserted (``when="statement"``), or at COMMIT (a deferred
    constraint trigger)."""
    await admin.execute(
        f'CREATE FUNCTION "{schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS $$ '
        "BEGIN IF NEW.type = 't.refused' THEN "
        f"RAISE EXCEPTION 'refused by a test trigger' USING ERRCODE = '{code}'; "
        "END IF; RETURN NEW; END $$"
    )
    if when == "statement":
        trigger = "CREATE TRIGGER refuse BEFORE INSERT"
    else:
        trigger = (
            "CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON "
            f'"{schema}".pepperpy_events DEFERRABLE INITIALLY DEFERRED'
        )
        await admin.execute(f'{trigger} FOR EACH ROW EXECUTE FUNCTION "{schema}".refuse()')
        return
    await admin.execute(
        f'{trigger} ON "{schema}".pepperpy_events FOR EACH ROW EXECUTE FUNCTION "{schema}".refuse()'
    )


@pytest.mark.parametrize("when", ["statement", "commit"])
@pytest.mark.parametrize(
    "code", ["P0001", "40001", "23514"], ids=["raise", "serialization", "constraint"]
)
async def test_an_append_postgresql_refuses_says_nothing_was_written(
    direct: str, admin: asyncpg.Connection, code: str, when: str
) -> None:
    """A constraint violation (the group is split down to the culprit), a serialization
    failure, any error: the server rolled the transaction back, before its COMMIT or in
    answer to it."""
    async with EventStore(direct) as store:
        await store.append("s.0", Event("t.warm"))
        await refuse_inserts(admin, schema_of(direct), code, when)
        refused = Event("t.refused")
        with pytest.raises(StoreError) as caught:
            await store.append("s.1", refused)
        assert caught.value.written is False
        assert isinstance(caught.value.__cause__, asyncpg.PostgresError)
        # a group commit: every caller that failed with it was written by nobody
        group = [Event("t.x"), Event("t.refused"), Event("t.x")]
        outcomes = await append(store, "group", group)
        failed = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        assert failed and all(isinstance(error, StoreError) for error in failed)
        assert [error.written for error in failed] == [False] * len(failed)
        stored = await ids_stored(direct, [event.id for event in [refused, *group]])
        assert refused.id not in stored and group[1].id not in stored
        succeeded = {
            event.id
            for event, outcome in zip(group, outcomes, strict=True)
            if not isinstance(outcome, BaseException)
        }
        assert stored == succeeded  # those that succeeded, and only those
        if code == "23514":  # a value refused: only its append fails
            assert len(failed) == 1
