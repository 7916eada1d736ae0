"""copy_store, export_store and import_store on every pair of backends (memory, SQLite,
PostgreSQL as source and as destination): stored records are moved as they are, at
their own global positions (gaps included), with deleted streams, resumably, and a
destination that is not a copy of the source's start is refused before anything is
written."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import (
    NO_STREAM,
    ConfigurationError,
    CopyProgress,
    Event,
    EventStore,
    StoreError,
    copy_store,
    export_store,
    import_store,
)
from pepperpy.event.security import KeyRing, MemoryKeyStore, StreamEncryption
from pepperpy.event.store import MemoryBackend, StoreBackend
from pepperpy.event.store.base import StreamState
from tests.conftest import unique_name

KINDS = ("memory", "sqlite", "postgres")
PAIRS = [(source, destination) for source in KINDS for destination in KINDS]

Opener = Callable[..., Awaitable[EventStore]]


@pytest.fixture
def postgres_database(request: pytest.FixtureRequest) -> str | None:
    """The module's PostgreSQL database (made and dropped by tests/store/conftest.py) when
    the test runs on PostgreSQL, else None (the other tests need no server)."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or "postgres" not in callspec.params.values():
        return None
    database: str = request.getfixturevalue("database")
    return database


@pytest.fixture
async def open_store(postgres_database: str | None, tmp_path: Path) -> AsyncIterator[Opener]:
    """``await open_store(kind)``: a new, empty store of that kind (PostgreSQL: a schema
    of its own in the module's database, dropped after the test), closed after."""
    opened: list[EventStore] = []
    schemas: list[str] = []
    database = postgres_database

    async def make(kind: str, **options: Any) -> EventStore:
        if kind == "memory":
            url = "memory://"
        elif kind == "sqlite":
            url = f"sqlite:///{tmp_path / unique_name('events')}.db"
        else:
            assert database is not None
            schema = unique_name("copy")
            schemas.append(schema)
            url = f"{database}?schema={schema}"
        store = EventStore(url, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()
    if schemas:
        import asyncpg

        connection = await asyncpg.connect(database)
        try:
            for schema in schemas:
                await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()


def _row(position: int, stream: str, at: int, **columns: Any) -> tuple[Any, ...]:
    return (
        position,
        stream,
        at,
        columns.get("id", f"id-{position}"),
        columns.get("type", "order.placed"),
        columns.get("version", 1),
        columns.get("data", b'{"n": %d}' % position),
        columns.get("metadata"),
        columns.get("timestamp", 1_700_000_000_000_000 + position),
        columns.get("source"),
        columns.get("subject"),
        columns.get("recorded_at", 1_700_000_000_000_100 + position),
    )


async def _fill(store: EventStore) -> None:
    """A log with gaps, every optional column, a deleted stream, a deleted and restarted
    one, and a stream deleted with no event since."""
    await store.backend.write_stored(
        [
            _row(0, "order.1", 0),
            _row(4, "order.1", 1, metadata=b'{"trace": "t"}', source="/shop", subject="s"),
            _row(9, "order.2", 0, version=3),
        ],
        None,
        {},
    )
    for number in range(4):
        await store.append(f"cart.{number % 2}", Event(type="cart.item", data={"n": number}))
    await store.delete_stream("cart.0")
    await store.append("cart.0", Event(type="cart.opened", data={}), expected_version=NO_STREAM)
    await store.append("gone.1", Event(type="gone", data={}))
    await store.delete_stream("gone.1")
    await store.append("order.2", Event(type="order.paid", data={"paid": True}))


async def _stored(store: EventStore) -> list[tuple[Any, ...]]:
    rows = await store.backend.read_stored(0, 10_000)
    return [(*row[:12], bool(row[12])) for row in rows]


async def _states(store: EventStore) -> dict[str, Any]:
    names = {row[1] for row in await _stored(store)}
    return {name: await store.backend.stream_state(name) for name in sorted(names)}


async def _same(source: EventStore, destination: EventStore) -> None:
    assert await _stored(destination) == await _stored(source)
    assert await _states(destination) == await _states(source)
    assert await destination.streams() == await source.streams()
    assert await destination.head() == await source.head()
    copied = [(e.global_position, e.id, e.data) for e in await destination.read_all()]
    assert copied == [(e.global_position, e.id, e.data) for e in await source.read_all()]


@pytest.mark.parametrize(("source_kind", "destination_kind"), PAIRS)
async def test_a_copy_keeps_every_event_where_it_was(
    open_store: Opener, source_kind: str, destination_kind: str
) -> None:
    source = await open_store(source_kind)
    destination = await open_store(destination_kind)
    await _fill(source)
    seen: list[CopyProgress] = []
    report = await copy_store(source, destination, batch_size=3, progress=seen.append)
    stored = await _stored(source)
    assert report.copied == len(stored) == 10
    assert report.resumed_after is None
    assert report.last_position == stored[-1][0] == await source.head() == 16
    assert [p.copied for p in seen] == [3, 6, 9, 10]
    assert {p.head for p in seen} == {report.last_position}
    await _same(source, destination)
    assert [row[0] for row in stored][:3] == [0, 4, 9]  # the gaps were kept
    state = await destination.backend.stream_state("gone.1")
    assert state is not None and state.deleted and state.first_visible == 1
    assert [e.type for e in await destination.get_stream("cart.0")] == ["cart.opened"]
    event = (await destination.get_stream("order.1"))[1]
    assert (event.metadata, event.source, event.subject) == ({"trace": "t"}, "/shop", "s")


@pytest.mark.parametrize(("source_kind", "destination_kind"), PAIRS)
async def test_appends_to_the_copy_come_after_the_copied_events(
    open_store: Opener, source_kind: str, destination_kind: str
) -> None:
    source = await open_store(source_kind)
    destination = await open_store(destination_kind)
    rows = [_row(0, "a.1", 0), _row(50, "a.1", 1), _row(60, "b.1", 0)]
    await source.backend.write_stored(rows, None, {})
    await source.delete_stream("b.1")
    await copy_store(source, destination)
    result = await destination.append("a.1", Event(type="a.more", data={}))
    assert (result.global_position, result.next_expected_version) == (61, 2)
    result = await destination.append("c.1", Event(type="c.new", data={}))
    assert (result.global_position, result.next_expected_version) == (62, 0)
    # the deleted stream restarts after its hidden event, as it would on the source
    restarted = await destination.append(
        "b.1", Event(type="b.again", data={}), expected_version=NO_STREAM
    )
    assert (restarted.global_position, restarted.next_expected_version) == (63, 1)
    assert [e.type for e in await destination.get_stream("b.1")] == ["b.again"]


async def _copy_of(open_store: Opener, kind: str, source: EventStore) -> EventStore:
    copy = await open_store(kind)
    await copy_store(source, copy)
    return copy


@pytest.mark.parametrize(("source_kind", "destination_kind"), PAIRS)
async def test_an_interrupted_copy_resumes_where_it_stopped(
    open_store: Opener, source_kind: str, destination_kind: str
) -> None:
    source = await open_store(source_kind)
    destination = await open_store(destination_kind)
    await _fill(source)

    class Interrupted(Exception):
        pass

    def interrupt(progress: CopyProgress) -> None:
        if progress.copied >= 4:
            raise Interrupted

    with pytest.raises(Interrupted):
        await copy_store(source, destination, batch_size=2, progress=interrupt)
    assert len(await _stored(destination)) == 4
    report = await copy_store(source, destination, batch_size=2)
    assert report.copied == 6
    assert report.resumed_after == (await _stored(source))[3][0]
    await _same(source, destination)
    # up to date: nothing more to copy; new events on the source are brought over
    assert (await copy_store(source, destination)).copied == 0
    await source.append("order.3", Event(type="order.placed", data={}))
    assert (await copy_store(source, destination)).copied == 1
    await _same(source, destination)


@pytest.mark.parametrize(("source_kind", "destination_kind"), PAIRS)
async def test_a_destination_that_is_not_a_copy_is_refused_before_any_write(
    open_store: Opener, source_kind: str, destination_kind: str
) -> None:
    source = await open_store(source_kind)
    await _fill(source)
    other = await open_store(destination_kind)  # events of its own at the same positions
    await other.append("order.1", Event(type="order.placed", data={}))
    before = await _stored(other)
    with pytest.raises(StoreError, match="not a copy of the start of the source.*nothing"):
        await copy_store(source, other)
    assert await _stored(other) == before
    # a copy someone appended to has diverged too
    copy = await _copy_of(open_store, destination_kind, source)
    await copy.append("order.1", Event(type="order.local", data={}))
    await source.append("order.1", Event(type="order.remote", data={}))
    before = await _stored(copy)
    with pytest.raises(StoreError, match="global position 17 is .* of stream 'order.1', and"):
        await copy_store(source, copy)
    assert await _stored(copy) == before


@pytest.mark.parametrize(("source_kind", "destination_kind"), PAIRS)
async def test_deletions_made_after_a_copy_are_carried_by_the_next(
    open_store: Opener, source_kind: str, destination_kind: str
) -> None:
    source = await open_store(source_kind)
    await _fill(source)
    copy = await _copy_of(open_store, destination_kind, source)
    await copy.save_snapshot("order.2", {"total": 1}, 1)
    await source.delete_stream("order.2")  # deleted
    await source.delete_stream("cart.1")  # deleted and restarted
    await source.append("cart.1", Event(type="cart.again", data={}), expected_version=NO_STREAM)
    report = await copy_store(source, copy)
    assert (report.copied, report.deletions) == (1, 2)
    await _same(source, copy)
    assert await copy.load_snapshot("order.2") is None
    assert [e.type for e in await copy.get_stream("cart.1")] == ["cart.again"]


@pytest.mark.parametrize(("source_kind", "destination_kind"), PAIRS)
async def test_a_subscriber_checkpointed_on_the_source_resumes_on_the_copy(
    open_store: Opener, source_kind: str, destination_kind: str
) -> None:
    source = await open_store(source_kind)
    await _fill(source)
    subscription = source.subscribe()
    handled = [await anext(subscription) for _ in range(5)]
    await subscription.aclose()
    checkpoint = handled[-1].global_position
    copy = await _copy_of(open_store, destination_kind, source)
    rest = [e.id for e in await source.read_all(checkpoint + 1)]
    resumed = copy.subscribe(checkpoint + 1)
    async with asyncio.timeout(10):
        caught = [(await anext(resumed)).id for _ in rest]
        later = await copy.append("order.9", Event(type="order.placed", data={}))
        assert (await anext(resumed)).global_position == later.global_position
    await resumed.aclose()
    assert caught == rest


@pytest.mark.parametrize(("source_kind", "destination_kind"), PAIRS)
async def test_an_export_imports_back_as_it_was(
    open_store: Opener, source_kind: str, destination_kind: str, tmp_path: Path
) -> None:
    source = await open_store(source_kind)
    await _fill(source)
    path = tmp_path / "backup.jsonl"
    exported = await export_store(source, path, batch_size=4)
    assert exported.copied == 10
    assert not (tmp_path / "backup.jsonl.partial").exists()
    destination = await open_store(destination_kind)
    imported = await import_store(destination, path, batch_size=5)
    assert (imported.copied, imported.last_position) == (10, exported.last_position)
    await _same(source, destination)
    # run again: nothing to do; the newer events of a later export are added
    assert (await import_store(destination, path)).copied == 0
    await source.append("order.3", Event(type="order.placed", data={}))
    await source.delete_stream("cart.1")
    stream = io.StringIO()
    await export_store(source, stream)
    stream.seek(0)
    assert (await import_store(destination, stream)).copied == 1
    await _same(source, destination)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_write_of_stored_events_that_lost_a_race_writes_nothing(
    open_store: Opener, kind: str
) -> None:
    store = await open_store(kind)
    await store.backend.write_stored([_row(0, "a.1", 0)], None, {})
    await store.append("a.1", Event(type="x", data={}))  # the head moved on to 1
    with pytest.raises(StoreError, match="newest event is at global position 1, not at global"):
        await store.backend.write_stored([_row(5, "b.1", 0)], 0, {})
    with pytest.raises(StoreError, match="position 3 of stream 'a.1', whose next position is 2"):
        await store.backend.write_stored([_row(5, "b.1", 0), _row(6, "a.1", 3)], 1, {})
    assert [row[0] for row in await _stored(store)] == [0, 1]
    assert await store.backend.stream_state("b.1") is None


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_encrypted_events_are_copied_as_ciphertext(open_store: Opener, kind: str) -> None:
    keys = MemoryKeyStore()
    encryption = StreamEncryption(KeyRing.generate(), keys)
    source = await open_store(kind, encryption=encryption)
    await source.append("user.1", Event(type="user.named", data={"name": "Ada"}))
    plain = await open_store(kind)
    await copy_store(source, plain)
    assert b"Ada" not in (await _stored(plain))[0][6]
    reopened = EventStore(plain.backend, encryption=StreamEncryption(encryption.keyring, keys))
    assert (await reopened.get_stream("user.1"))[0].data == {"name": "Ada"}


async def test_bad_arguments_are_refused(open_store: Opener) -> None:
    source = await open_store("memory")
    with pytest.raises(ConfigurationError, match="same store"):
        await copy_store(source, source)
    with pytest.raises(ConfigurationError, match="batch_size must be from 1"):
        await copy_store(source, "memory://", batch_size=0)
    with pytest.raises(TypeError, match="destination must be an EventStore or a store URL"):
        await copy_store(source, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="progress must be a callable"):
        await copy_store(source, "memory://", progress=1)  # type: ignore[arg-type]
    from pepperpy.event.security import AccessControl

    guarded = await open_store("memory", access=AccessControl())
    with pytest.raises(ConfigurationError, match="access= or audit="):
        await copy_store(guarded, "memory://")


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_copied_events_wake_the_destination_s_waiters_at_once(
    open_store: Opener, kind: str
) -> None:
    """A live subscriber of the copy is told of each batch when it commits (SQLite: the
    writer's head moves past the copied rows), not a poll interval later."""
    store = await open_store(kind)
    await store.backend.write_stored([_row(0, "a.1", 0), _row(7, "a.1", 1)], None, {})
    async with asyncio.timeout(0.3):  # SQLite polls every 0.5 s otherwise
        await store.backend.wait(7)


@pytest.mark.parametrize("kind", KINDS)
async def test_an_append_to_the_destination_during_a_copy_stops_it(
    open_store: Opener, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy keeps positions for the source's events: a destination appended to
    between two batches refuses the next one whole, and a later copy refuses the
    diverged destination."""
    source = await open_store("memory")
    await _fill(source)
    destination = await open_store(kind)
    backend = destination.backend
    write_stored = backend.write_stored
    appended: list[int] = []

    async def append_between_batches(*arguments: Any) -> None:
        if arguments[1] is not None and not appended:  # before the second batch
            result = await destination.append("local.1", Event(type="local", data={}))
            appended.append(result.global_position)
        await write_stored(*arguments)

    monkeypatch.setattr(backend, "write_stored", append_between_batches)
    with pytest.raises(StoreError, match="something else wrote to it meanwhile; nothing"):
        await copy_store(source, destination, batch_size=3)
    assert appended == [10]  # the first free position after the first batch
    assert [row[0] for row in await _stored(destination)] == [0, 4, 9, 10]
    monkeypatch.undo()
    with pytest.raises(StoreError, match="not a copy of the start of the source"):
        await copy_store(source, destination)


async def test_a_failed_export_leaves_no_file(open_store: Opener, tmp_path: Path) -> None:
    source = await open_store("sqlite")
    await _fill(source)

    def fail(progress: CopyProgress) -> None:
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        await export_store(source, tmp_path / "backup.jsonl", batch_size=2, progress=fail)
    assert list(tmp_path.glob("backup.jsonl*")) == []


async def test_an_import_line_with_a_bad_stream_name_is_named(
    open_store: Opener, tmp_path: Path
) -> None:
    source = await open_store("memory")
    await _fill(source)
    stream = io.StringIO()
    await export_store(source, stream)
    lines = stream.getvalue().splitlines(keepends=True)
    lines[2] = lines[2].replace('"stream":"order.1"', '"stream":"order..1"')
    (tmp_path / "bad.jsonl").write_text("".join(lines))
    destination = await open_store("sqlite")
    with pytest.raises(StoreError, match=r"bad.jsonl line 3: stream 'order..1': .*nothing was"):
        await import_store(destination, tmp_path / "bad.jsonl")
    assert await destination.head() is None


@pytest.mark.parametrize("kind", KINDS)
async def test_retried_appends_on_the_copy_are_idempotent_as_on_the_source(
    open_store: Opener, kind: str
) -> None:
    """An append retried with a copied event's id is a no-op on the copy, as it is on the
    source; the id of a deleted stream's hidden event is not found there (nor on the
    source), so appending it again writes it."""
    source = await open_store("memory")
    await source.append("s.1", Event(type="t", data={}, id="01a00000-0000-7000-8000-00000000000a"))
    await source.delete_stream("s.1")
    visible = Event(type="t", data={}, id="01a00000-0000-7000-8000-00000000000b")
    await source.append("s.1", visible, expected_version=NO_STREAM)
    destination = await open_store(kind)
    await copy_store(source, destination)
    again = await destination.append("s.1", visible)
    assert (again.global_position, again.next_expected_version) == (1, 1)
    assert await destination.head() == 1
    hidden = Event(type="t", data={}, id="01a00000-0000-7000-8000-00000000000a")
    written = await destination.append("s.1", hidden)
    assert (written.global_position, written.next_expected_version) == (2, 2)


@pytest.mark.parametrize("kind", [*KINDS, "default"])
async def test_stream_states_reads_the_states_of_the_streams_named(
    open_store: Opener, kind: str
) -> None:
    """In one read on the built-in backends (copies compare their streams with it); the
    contract's default, for backends written before it, looks each stream up."""
    if kind == "default":

        class Earlier(MemoryBackend):
            stream_states = StoreBackend.stream_states

        store = EventStore(Earlier())
    else:
        store = await open_store(kind)
    await store.append("a.1", [Event(type="t", data={}), Event(type="t", data={})])
    await store.append("b.1", Event(type="t", data={}))
    await store.delete_stream("b.1")
    states = await store.backend.stream_states(["b.1", "a.1", "never.1"])
    assert states == {
        "a.1": StreamState(2, 0, False),
        "b.1": StreamState(1, 1, True),
    }
    assert await store.backend.stream_states([]) == {}
    if kind == "default":
        await store.close()
