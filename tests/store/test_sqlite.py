"""The conformance suite on SQLite, plus what only a file-backed store can show."""

from __future__ import annotations

import asyncio
import contextlib
import math
import pathlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pepperpy.event import (
    NO_STREAM,
    AppendResult,
    ConcurrencyError,
    ConfigurationError,
    Event,
    EventStore,
    SerializationError,
    StoreError,
    StreamDeletedError,
)
from pepperpy.event.store import _sqlite_connections
from pepperpy.event.store import sqlite as sqlite_backend
from pepperpy.event.store._sqlite_writer import Writer
from tests.store.conformance import MakeStore, StoreConformance, announce_waits, first_done
from tests.store.crash import assert_survives_sigkill


class TestSQLiteStore(StoreConformance):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url

    async def test_two_stores_on_one_file_share_events(self, make_store: MakeStore) -> None:
        first, second = make_store(), make_store()
        await first.append("shared.1", {"type": "a"})
        await second.append("shared.1", {"type": "b"}, expected_version=0)
        assert [e.type for e in await first.get_stream("shared.1")] == ["a", "b"]

    async def test_each_writer_sees_the_others_commits_before_deciding(
        self, make_store: MakeStore
    ) -> None:
        # each writer keeps the streams' states between its transactions; another
        # connection's commit (PRAGMA data_version) must make it read them again
        first, second = make_store(), make_store()
        for turn in range(6):
            store = first if turn % 2 == 0 else second
            await store.append(
                "turns.1", {"type": "turn"}, expected_version=turn - 1 if turn else NO_STREAM
            )
        with pytest.raises(ConcurrencyError) as caught:
            await first.append("turns.1", {"type": "late"}, expected_version=4)
        assert caught.value.actual == 5
        assert await second.delete_stream("turns.1")
        with pytest.raises(StreamDeletedError):
            await first.append("turns.1", {"type": "after.delete"})
        result = await first.append("turns.1", {"type": "again"}, expected_version=NO_STREAM)
        assert result.next_expected_version == 6
        assert result.global_position == 6  # one log: no position handed out twice
        assert [e.type for e in await second.get_stream("turns.1")] == ["again"]

    async def test_the_writer_keeps_knowing_every_stream_through_its_own_writes(
        self, make_store: MakeStore
    ) -> None:
        # a new stream needs no lookup only while the writer's cache holds every stream;
        # our own appends, snapshots and deletes must keep it complete and right
        store = make_store()
        for number in range(3):
            await store.append(f"known.{number}", {"type": "t"})
        await store.save_snapshot("known.0", {"n": 1}, 0)
        assert await store.delete_stream("known.1")
        await store.append("known.3", {"type": "t"})
        log = store.backend._writer.log  # type: ignore[attr-defined]
        assert log.complete
        states = {name: state.version for name, state in log.states.items()}
        assert states == {"known.0": 0, "known.1": None, "known.2": 0, "known.3": 0}
        assert log.states["known.1"].deleted
        with pytest.raises(StreamDeletedError):
            await store.append("known.1", {"type": "t"})

    async def test_a_stream_created_elsewhere_is_not_taken_for_a_new_one(
        self, make_store: MakeStore
    ) -> None:
        first, second = make_store(), make_store()
        await first.append("warm.1", {"type": "t"})  # first now knows every stream there is
        await second.append("elsewhere.1", {"type": "t"})
        with pytest.raises(ConcurrencyError):
            await first.append("elsewhere.1", {"type": "t"}, expected_version=NO_STREAM)
        assert (await first.append("elsewhere.1", {"type": "u"})).next_expected_version == 1

    async def test_a_subscription_sees_another_writers_appends(self, make_store: MakeStore) -> None:
        reader, writer = make_store(), make_store()
        subscription = reader.subscribe()
        pending = asyncio.ensure_future(anext(subscription))
        await asyncio.sleep(0.05)
        await writer.append("other.1", {"type": "from.elsewhere"})
        event = await asyncio.wait_for(pending, 5)
        assert event.type == "from.elsewhere"

    async def test_data_survives_reopening(self, make_store: MakeStore) -> None:
        first = make_store()
        await first.append("kept.1", [{"type": "a"}, {"type": "b"}])
        await first.save_snapshot("kept.1", {"n": 2}, 1)
        await first.close()
        second = make_store()
        assert [e.type for e in await second.get_stream("kept.1")] == ["a", "b"]
        snapshot = await second.load_snapshot("kept.1")
        assert snapshot is not None and snapshot.state == {"n": 2}

    async def test_an_unwritable_path_raises_store_error(self, tmp_path: object) -> None:
        store = EventStore(f"sqlite:///{tmp_path}/missing/dir/events.db")
        try:
            with pytest.raises(StoreError, match="SQLite"):
                await store.append("x.1", {"type": "t"})
        finally:
            await store.close()

    async def test_the_file_uses_wal_and_full_sync(self, make_store: MakeStore) -> None:
        store = make_store()
        await store.append("x.1", {"type": "t"})
        mode = await store.backend._write(  # type: ignore[attr-defined]
            lambda connection: connection.execute("PRAGMA synchronous").fetchone()
        )
        assert mode == (2,)  # FULL
        path = store.url.removeprefix("sqlite:///")
        connection = sqlite3.connect(path)
        try:
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert connection.execute("PRAGMA user_version").fetchone() == (7,)
        finally:
            connection.close()

    async def test_a_write_failing_for_one_caller_fails_only_that_caller(
        self, make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from pepperpy.event.store import _sqlite_log

        original = _sqlite_log.LogWriter.write_appends
        runs: list[int] = []

        def failing(self: Any, connection: sqlite3.Connection, appends: list[Any]) -> Any:
            runs.append(len(appends))
            outcomes = original(self, connection, appends)  # writes, then fails: rolled back
            if any(append.stream == "poison.1" for append in appends):
                raise sqlite3.IntegrityError("simulated constraint failure")
            return outcomes

        monkeypatch.setattr(_sqlite_log.LogWriter, "write_appends", failing)
        store = make_store()
        await store.append("warm.1", {"type": "t"})
        outcomes = await asyncio.gather(
            *(store.append(f"fine.{n}", {"type": "t"}) for n in range(5)),
            store.append("poison.1", {"type": "t"}),
            *(store.append(f"fine.{n}", {"type": "t"}) for n in range(5, 10)),
            return_exceptions=True,
        )
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(errors) == 1 and isinstance(errors[0], StoreError)
        assert "simulated" in str(errors[0])
        assert await store.stream_version("poison.1") is None
        assert len(await store.read_all()) == 11
        positions = [e.global_position for e in await store.read_all()]
        assert positions == list(range(11))  # no holes left by the rolled-back attempt
        assert max(runs) > 1  # the poison shared a run with others, which were retried alone

    async def test_a_group_whose_write_fails_once_is_written_again_whole(
        self, make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # a group of appends is written without savepoints; if that write fails, the
        # transaction is rolled back and the group written again with them
        from pepperpy.event.store import _sqlite_log

        original = _sqlite_log.LogWriter.write_appends
        calls: list[int] = []

        def flaky(self: Any, connection: sqlite3.Connection, appends: list[Any]) -> Any:
            calls.append(len(appends))
            outcomes = original(self, connection, appends)
            if len(calls) == 2:  # the second group: written, then the write "fails"
                raise sqlite3.OperationalError("simulated I/O error")
            return outcomes

        monkeypatch.setattr(_sqlite_log.LogWriter, "write_appends", flaky)
        store = make_store()
        await store.append("warm.1", {"type": "t"})
        results = await asyncio.gather(
            *(store.append(f"again.{n % 3}", {"type": "t", "data": {"n": n}}) for n in range(9))
        )
        assert sorted(r.global_position for r in results) == list(range(1, 10))
        events = await store.read_all()
        assert [e.global_position for e in events] == list(range(10))  # once each, no gaps
        assert sorted(e.data["n"] for e in events[1:]) == list(range(9))
        assert calls[1] == 9 and calls[2] == 9  # failed whole, then written whole again

    async def test_a_burst_is_committed_in_two_halves_each_answered_once_durable(
        self, make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # a burst that finds the writer idle is split, so that one half's callers run on
        # the loop while the other half commits; nobody is answered before their commit
        from pepperpy.event.store import _sqlite_log, _sqlite_writer

        store = make_store()
        await store.append("warm.1", {"type": "t"})
        original_write = _sqlite_log.LogWriter.write_appends
        original_transaction = _sqlite_writer.write_transaction
        groups: list[int] = []
        durable: list[int] = []  # the log's last position after each commit

        def write(self: Any, connection: sqlite3.Connection, appends: list[Any]) -> Any:
            groups.append(len(appends))
            return original_write(self, connection, appends)

        @contextlib.contextmanager
        def transaction(connection: sqlite3.Connection) -> Iterator[None]:
            with original_transaction(connection):
                yield
            # committed
            durable.append(
                connection.execute("SELECT max(global_position) FROM events").fetchone()[0]
            )

        monkeypatch.setattr(_sqlite_log.LogWriter, "write_appends", write)
        monkeypatch.setattr(_sqlite_writer, "write_transaction", transaction)
        seen: list[tuple[int, int]] = []

        async def append(n: int) -> None:
            result = await store.append(f"burst.{n}", {"type": "t", "data": {"n": n}})
            seen.append((result.global_position, max(durable, default=-1)))

        await asyncio.gather(*(append(n) for n in range(20)))
        assert groups == [10, 10]
        assert sorted(position for position, _ in seen) == list(range(1, 21))
        assert all(position <= durable_then for position, durable_then in seen), seen
        events = await store.read_all()
        assert [e.data.get("n") for e in events[1:]] == list(range(20))  # submission order

    @pytest.mark.parametrize("rows_ahead", [0, 256])
    async def test_the_last_groups_callers_wait_for_the_next_write_only_if_it_is_short(
        self, make_store: MakeStore, monkeypatch: pytest.MonkeyPatch, rows_ahead: int
    ) -> None:
        from pepperpy.event.store import _sqlite_log, _sqlite_writer

        monkeypatch.setattr(_sqlite_writer, "MAX_ROWS_AHEAD", rows_ahead)
        original_write = _sqlite_log.LogWriter.write_appends
        written: list[float] = []

        def slow_second_half(self: Any, connection: sqlite3.Connection, appends: list[Any]) -> Any:
            if appends[0].stream == "half.10":
                time.sleep(0.3)  # a long write (the writer thread only)
                written.append(time.monotonic())
            return original_write(self, connection, appends)

        monkeypatch.setattr(_sqlite_log.LogWriter, "write_appends", slow_second_half)
        store = make_store()
        await store.append("warm.1", {"type": "t"})
        answered: dict[int, float] = {}

        async def append(n: int) -> None:
            await store.append(f"half.{n}", {"type": "t"})
            answered[n] = time.monotonic()

        await asyncio.gather(*(append(n) for n in range(20)))
        first_half = max(answered[n] for n in range(10))
        if rows_ahead == 0:  # every write counts as long: answered before it starts
            assert first_half < written[0]
        else:  # answered after the (short) next write, before its commit
            assert first_half > written[0]
        assert min(answered[n] for n in range(10, 20)) > written[0]

    async def test_a_corrupted_row_reads_as_a_clear_error(self, make_store: MakeStore) -> None:
        store = make_store()
        await store.append("x.1", {"type": "t", "data": {"ok": True}})
        path = store.url.removeprefix("sqlite:///")
        connection = sqlite3.connect(path)
        try:
            with connection:
                connection.execute("UPDATE events SET data = ?", (b"{not json",))
        finally:
            connection.close()
        with pytest.raises(SerializationError, match="not valid JSON"):
            await store.get_stream("x.1")

    async def test_a_file_from_an_older_schema_is_migrated(self, tmp_path: object) -> None:
        from pepperpy.event.store._sqlite_schema import MIGRATIONS

        path = f"{tmp_path}/old.db"
        connection = sqlite3.connect(path, isolation_level=None)
        try:
            connection.executescript(MIGRATIONS[0])
            connection.execute("PRAGMA user_version = 1")
            # old.1 holds one event; gone.1 held two and was deleted
            connection.execute("INSERT INTO streams VALUES ('old.1', 1, 0, 0), ('gone.1', 2, 2, 1)")
            for number, (stream, position) in enumerate(
                [("old.1", 0), ("gone.1", 0), ("gone.1", 1)]
            ):
                connection.execute(
                    "INSERT INTO events VALUES (?, ?, ?, ?, 't', 1, X'6e756c6c', NULL, 0, NULL, "
                    "NULL, 0)",
                    (number, stream, position, f"id-{number}"),
                )
        finally:
            connection.close()
        async with EventStore(f"sqlite:///{path}") as store:
            await store.append("old.1", {"type": "t", "id": "id-0"})  # idempotent: known id
            assert [e.id for e in await store.get_stream("old.1")] == ["id-0"]
            assert await store.streams() == ["old.1"]
            assert await store.stream_version("gone.1") is None
            with pytest.raises(StreamDeletedError):
                await store.append("gone.1", {"type": "t"})
            restarted = await store.append("gone.1", {"type": "t"}, expected_version=NO_STREAM)
            assert restarted.next_expected_version == 2  # positions are never reused
            assert restarted.global_position == 3
            assert [e.position for e in await store.get_stream("gone.1")] == [2]
        connection = sqlite3.connect(path)
        try:
            assert connection.execute("PRAGMA user_version").fetchone() == (7,)
            indexes = {row[1] for row in connection.execute("PRAGMA index_list(events)")}
            assert indexes == set()  # (stream, position) and ids live in their own indexes
            assert connection.execute("SELECT id FROM id_index ORDER BY 1").fetchall()[:3] == [
                ("id-0",),
                ("id-1",),
                ("id-2",),
            ]
            assert connection.execute(
                "SELECT stream, position, global_position FROM stream_index ORDER BY 3"
            ).fetchall()[:3] == [("old.1", 0, 0), ("gone.1", 0, 1), ("gone.1", 1, 2)]
            columns = [row[1] for row in connection.execute("PRAGMA table_info(streams)")]
            assert columns == ["name", "first_visible", "deleted"]
        finally:
            connection.close()

    async def test_the_synchronous_mode_can_be_relaxed(self, tmp_path: object) -> None:
        path = f"{tmp_path}/relaxed.db"
        async with EventStore(f"sqlite:///{path}?synchronous=normal") as store:
            await store.append("x.1", {"type": "t"})
            mode = await store.backend._write(  # type: ignore[attr-defined]
                lambda connection: connection.execute("PRAGMA synchronous").fetchone()
            )
        assert mode == (1,)  # NORMAL

    @pytest.mark.slow
    async def test_acknowledged_appends_survive_sigkill(self, sqlite_url: str) -> None:
        await assert_survives_sigkill(sqlite_url)


async def test_appends_batched_when_the_writer_stops_from_another_thread_fail_cleanly(
    tmp_path: object,
) -> None:
    # a pass's appends wait on the loop for one hand-over; if the writer is stopped from
    # another thread before that hand-over, they must fail with ClosedError, never hang
    from pepperpy.event import ClosedError
    from pepperpy.event.store.sqlite import SQLiteBackend

    backend = SQLiteBackend(f"{tmp_path}/stop.db")
    store = EventStore(backend)
    await store.append("warm.1", {"type": "t"})
    writer = backend._writer
    assert writer is not None
    pending = [asyncio.ensure_future(store.append(f"late.{n}", {"type": "t"})) for n in range(5)]
    await asyncio.sleep(0)  # the appends are submitted; their flush runs next pass
    stopper = threading.Thread(target=writer.stop)
    stopper.start()
    stopper.join()
    outcomes = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 5)
    assert all(isinstance(o, ClosedError) for o in outcomes), outcomes
    await asyncio.to_thread(writer.join, 5)
    assert not writer.is_alive()
    await store.close()


async def test_a_cancelled_close_still_releases_the_file_and_the_next_close_waits_for_it(
    sqlite_url: str,
) -> None:
    """close() cancelled (a timeout at shutdown) marked the store closed before releasing
    anything: the next close() returned at once, and the read threads and connections
    stayed open for good (cancellation audit, repro_3)."""
    store = EventStore(sqlite_url)
    await store.append("x.1", {"type": "t"})
    await store.get_stream("x.1")  # a read thread and its connection
    backend = store.backend
    assert isinstance(backend, sqlite_backend.SQLiteBackend)
    writer, pool = backend._writer, backend._pool
    assert writer is not None and pool is not None
    [(connection, gate)] = backend._connections
    gate.acquire()  # as a read under way does: the release waits for it
    held = [True]

    def let_go() -> None:
        if held:
            held.clear()
            gate.release()

    try:
        first = asyncio.ensure_future(store.close())
        await asyncio.sleep(0)  # close() has started
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert store.closed
        asyncio.get_running_loop().call_later(0.05, let_go)
        await asyncio.wait_for(store.close(), 10)  # waits for the release under way
    finally:
        let_go()
    assert not writer.is_alive()
    assert not any(thread.is_alive() for thread in pool._threads)
    assert backend._connections == []
    with pytest.raises(sqlite3.ProgrammingError):
        connection.execute("SELECT 1")  # closed
    await asyncio.wait_for(store.close(), 10)  # and later calls return


async def test_a_failed_first_open_is_tried_again_by_the_next_call(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the file's directory does not exist yet: the callers waiting for the open get its
    # error and that writer ends; once the cause is gone, the next call opens the file,
    # and no read ever runs against a file without the schema
    started: list[Writer] = []

    class RecordingWriter(Writer):
        def start(self) -> None:
            started.append(self)
            super().start()

    monkeypatch.setattr(_sqlite_connections, "Writer", RecordingWriter)
    directory = tmp_path / "not-yet"
    store = EventStore(f"sqlite:///{directory}/events.db")
    try:
        outcomes = await asyncio.gather(
            store.append("x.1", {"type": "t"}),
            store.stream_version("x.1"),
            return_exceptions=True,
        )
        assert all(isinstance(o, StoreError) for o in outcomes), outcomes
        assert all("unable to open" in str(o) for o in outcomes), outcomes
        with pytest.raises(StoreError, match="unable to open"):  # a read opens again too
            await store.get_stream("x.1")
        assert len(started) == 2 and not any(writer.is_alive() for writer in started)
        directory.mkdir()
        assert await store.stream_version("x.1") is None  # a read first: the schema is made
        assert (await store.append("x.1", {"type": "t"})).next_expected_version == 0
        assert len(started) == 3 and started[-1].is_alive()
    finally:
        await store.close()
    assert not started[-1].is_alive()


async def test_subscriptions_on_two_running_loops_are_woken_at_once(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # callers on other loops (threads) work; a commit wakes the subscriptions waiting on
    # every loop at once, whichever loop appended (not at the next poll: it is an hour)
    monkeypatch.setattr(sqlite_backend, "POLL_INTERVAL", 3600.0)
    store = EventStore(sqlite_url)
    waits = announce_waits(store, monkeypatch)

    async def follow_on_another_loop() -> list[str]:
        started = waits()
        there = store.subscribe(1)
        pending = asyncio.ensure_future(anext(there))
        async with asyncio.timeout(10):
            await first_done(pending, started.wait())
            await store.append("loop.1", {"type": "from.there"})
            seen = [(await pending).type, (await anext(there)).type]
        await there.aclose()
        return seen

    try:
        await store.append("loop.1", {"type": "first"})
        started = waits()
        here = store.subscribe(1)
        pending = asyncio.ensure_future(anext(here))
        async with asyncio.timeout(10):
            await first_done(pending, started.wait())
            there = asyncio.ensure_future(asyncio.to_thread(asyncio.run, follow_on_another_loop()))
            assert (await pending).type == "from.there"
            await store.append("loop.1", {"type": "from.here"})
            assert await there == ["from.there", "from.here"]
        await here.aclose()
    finally:
        await store.close()


def test_a_later_loop_is_woken_by_its_own_appends_at_once(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the first loop is gone: commits must be reported on the loop that appended, not
    # only on the first loop (then the subscription would wait for the poll: an hour)
    monkeypatch.setattr(sqlite_backend, "POLL_INTERVAL", 3600.0)
    TestSQLiteStore().test_a_subscription_follows_live_appends_on_a_later_event_loop(
        sqlite_url, monkeypatch
    )


class TestSQLiteStoreWithAShortTail(TestSQLiteStore):
    """Every SQLite test again, with the tail indexed every 3 events instead of 256.

    The default leaves the small streams of most tests wholly in the tail; here nearly
    every read merges indexed events with tail events, and the bulk indexing runs in
    most groups, including the concurrent, multi-store and crash tests.
    """

    @pytest.fixture(autouse=True)
    def _short_tail(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from pepperpy.event.store import _sqlite_log

        monkeypatch.setattr(_sqlite_log, "INDEX_EVERY", 3)


def _index_layout(path: str) -> tuple[int, int, int]:
    """(events, entries in stream_index, where the tail starts) in the file at ``path``."""
    connection = sqlite3.connect(path)
    try:
        ((events,),) = connection.execute("SELECT count(*) FROM events")
        ((indexed,),) = connection.execute("SELECT count(*) FROM stream_index")
        ((tail_start,),) = connection.execute("SELECT indexed_before FROM index_state")
        return events, indexed, tail_start
    finally:
        connection.close()


@pytest.mark.parametrize("every", [1, 4, 256])
async def test_reads_merge_the_index_and_the_tail_in_order(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, every: int
) -> None:
    from pepperpy.event.store import _sqlite_log

    monkeypatch.setattr(_sqlite_log, "INDEX_EVERY", every)
    async with EventStore(sqlite_url) as store:
        for number in range(23):  # two streams interleaved, some appends batched
            await store.append("a.1", {"type": "a", "data": {"n": number}})
            if number % 5 == 0:
                await store.append("b.1", [{"type": "b"}, {"type": "b"}])
        events, indexed, tail_start = _index_layout(sqlite_url.removeprefix("sqlite:///"))
        assert events == 23 + 10
        assert indexed == tail_start  # the index holds exactly the events before the tail
        assert events - tail_start < every + 2  # the tail never outgrows a group
        if every < 256:
            assert tail_start > 0
        forward = [e.data["n"] for e in await store.get_stream("a.1")]
        assert forward == list(range(23))
        assert [e.data["n"] for e in await store.get_stream("a.1", backwards=True)] == list(
            range(22, -1, -1)
        )
        assert [e.position for e in await store.get_stream("a.1", 7, limit=9)] == list(range(7, 16))
        assert [
            e.position for e in await store.get_stream("a.1", 20, backwards=True, limit=6)
        ] == list(range(20, 14, -1))
        assert [e.position async for e in store.get_stream("b.1")] == list(range(10))
        assert await store.stream_version("a.1") == 22
        assert await store.stream_version("b.1") == 9
        assert await store.streams() == ["a.1", "b.1"]
        assert await store.delete_stream("b.1")
        assert await store.get_stream("b.1") == []
        assert await store.streams() == ["a.1"]
        restarted = await store.append("b.1", {"type": "b"}, expected_version=NO_STREAM)
        assert restarted.next_expected_version == 10


async def test_a_second_store_continues_positions_after_the_first_ones_index(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the writer decides positions from stream_index and the tail; another connection's
    # indexing must never make it reuse or skip a position
    from pepperpy.event.store import _sqlite_log

    monkeypatch.setattr(_sqlite_log, "INDEX_EVERY", 2)
    async with EventStore(sqlite_url) as first, EventStore(sqlite_url) as second:
        for turn in range(9):
            store = first if turn % 3 else second
            result = await store.append("shared.1", {"type": "t", "data": {"turn": turn}})
            assert result.next_expected_version == turn
        assert [e.data["turn"] for e in await first.get_stream("shared.1")] == list(range(9))
        with pytest.raises(ConcurrencyError):
            await second.append("shared.1", {"type": "late"}, expected_version=7)


@pytest.mark.parametrize("every", [1, 4, 256])
async def test_ids_are_found_in_the_index_and_in_the_tail(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, every: int
) -> None:
    from pepperpy.event import Event
    from pepperpy.event.store import _sqlite_log

    monkeypatch.setattr(_sqlite_log, "INDEX_EVERY", every)
    events = [Event("t", {"n": n}) for n in range(10)]
    async with EventStore(sqlite_url) as store:
        results = [await store.append("ids.1", event) for event in events]
        await store.append("other.1", {"type": "filler"})
        _, indexed, tail_start = _index_layout(sqlite_url.removeprefix("sqlite:///"))
        if every == 4:
            assert 0 < tail_start < 10  # some of the ids indexed, the others in the tail
        for event, result in zip(events, results, strict=True):
            assert await store.append("ids.1", event) == result  # found: a no-op
        retried = await store.append("ids.1", [events[1], events[8], Event("t", {"n": 10})])
        assert retried.next_expected_version == 10  # only the new one was written
        assert [e.data["n"] for e in await store.get_stream("ids.1")] == list(range(11))
        # the same id in another stream is another event
        assert (await store.append("ids.2", events[0])).next_expected_version == 0


async def test_ids_another_store_wrote_into_the_tail_are_found(sqlite_url: str) -> None:
    # the writer keeps the tail's ids in memory; another connection's commit must make
    # it read them again
    from pepperpy.event import Event

    async with EventStore(sqlite_url) as first, EventStore(sqlite_url) as second:
        mine = Event("t", {"by": "first"})
        await first.append("ids.1", mine)
        assert await first.append("ids.1", mine) == AppendResult(0, 0)  # found in the tail
        theirs = Event("t", {"by": "second"})
        written = await second.append("ids.1", theirs)
        assert await first.append("ids.1", theirs) == written
        assert await first.append("ids.1", [mine, theirs]) == written
        assert [e.id for e in await first.get_stream("ids.1")] == [mine.id, theirs.id]


async def test_ids_of_a_group_rolled_back_are_not_taken_for_stored(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pepperpy.event import Event
    from pepperpy.event.store import _sqlite_log

    monkeypatch.setattr(_sqlite_log, "INDEX_EVERY", 1)
    async with EventStore(sqlite_url) as store:
        kept = Event("t", {"n": 0})
        await store.append("x.1", kept)
        assert await store.append("x.1", kept) == AppendResult(0, 0)  # found
        lost = Event("t", {"n": 1})
        monkeypatch.setattr(_sqlite_log, "INDEX_TAIL", ("INSERT INTO nowhere VALUES (?)",))
        with pytest.raises(StoreError, match="no such table: nowhere"):
            await store.append("x.1", lost)
        monkeypatch.undo()
        monkeypatch.setattr(_sqlite_log, "INDEX_EVERY", 1)
        result = await store.append("x.1", lost)
        assert (result.next_expected_version, result.global_position) == (1, 1)
        assert [e.id for e in await store.get_stream("x.1")] == [kept.id, lost.id]


async def test_ids_above_the_greatest_indexed_id_are_looked_up_once_it_grows(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the writer skips looking up ids above the greatest one in id_index; indexing the
    # tail raises that bound, and so must the writer's copy of it
    from pepperpy.event import Event
    from pepperpy.event.store import _sqlite_log

    monkeypatch.setattr(_sqlite_log, "INDEX_EVERY", 3)
    async with EventStore(sqlite_url) as store:
        await store.append("g.1", {"type": "t"})
        late = Event("t", id="zz-late")  # above any UUIDv7
        written = await store.append("g.1", late)  # looked up: the bound is read (none)
        await store.append("g.1", {"type": "t"})  # three events: the tail is indexed
        _, indexed, _ = _index_layout(sqlite_url.removeprefix("sqlite:///"))
        assert indexed == 3
        assert await store.append("g.1", late) == written
        assert [e.id for e in await store.get_stream("g.1")][1:2] == ["zz-late"]
        assert await store.stream_version("g.1") == 2  # three events, none twice


async def test_ids_indexed_by_another_store_are_found(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pepperpy.event import Event
    from pepperpy.event.store import _sqlite_log

    monkeypatch.setattr(_sqlite_log, "INDEX_EVERY", 3)
    async with EventStore(sqlite_url) as first, EventStore(sqlite_url) as second:
        await first.append("g.1", {"type": "t"})
        await first.append("g.1", Event("t", id="a-early"))  # the first store reads the bound
        theirs = Event("t", id="zz-theirs")
        written = await second.append("g.1", theirs)  # the third event: indexed
        _, indexed, _ = _index_layout(sqlite_url.removeprefix("sqlite:///"))
        assert indexed == 3
        assert await first.append("g.1", theirs) == written
        assert len(await first.get_stream("g.1")) == 3


async def test_a_file_from_a_newer_schema_is_refused_untouched(tmp_path: object) -> None:
    from pepperpy.event.store._sqlite_schema import MIGRATIONS

    path = f"{tmp_path}/newer.db"
    async with EventStore(f"sqlite:///{path}") as store:
        await store.append("x.1", {"type": "t"})
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    finally:
        connection.close()
    newer = (
        f"SQLite: {path!r} has schema version {len(MIGRATIONS) + 1}, newer than this "
        f"pepperpy-event knows ({len(MIGRATIONS)}): upgrade pepperpy-event to use it; "
        "it was left as it is"
    )
    # the file is named, writable (its migration refuses) or read-only (its check does)
    for query in ("", "?mode=ro", "?immutable=1"):
        async with EventStore(f"sqlite:///{path}{query}") as store:
            with pytest.raises(StoreError) as caught:
                await (store.read_all() if query else store.append("x.1", {"type": "t"}))
            assert str(caught.value) == newer
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("SELECT count(*) FROM events").fetchone() == (1,)
        assert connection.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS) + 1,)
    finally:
        connection.close()


async def test_a_failing_index_step_fails_its_group_and_writes_nothing(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pepperpy.event.store import _sqlite_log

    monkeypatch.setattr(_sqlite_log, "INDEX_EVERY", 1)
    async with EventStore(sqlite_url) as store:
        await store.append("x.1", {"type": "before"})
        monkeypatch.setattr(_sqlite_log, "INDEX_TAIL", ("INSERT INTO nowhere VALUES (?)",))
        with pytest.raises(StoreError, match="no such table: nowhere"):
            await store.append("x.1", [{"type": "lost"}, {"type": "lost"}])
        monkeypatch.undo()
        monkeypatch.setattr(_sqlite_log, "INDEX_EVERY", 1)
        result = await store.append("x.1", {"type": "after"})
        assert (result.next_expected_version, result.global_position) == (1, 1)
        assert [e.type for e in await store.get_stream("x.1")] == ["before", "after"]
        events, indexed, tail_start = _index_layout(sqlite_url.removeprefix("sqlite:///"))
        assert (events, indexed, tail_start) == (2, 2, 2)


def test_a_loop_that_ends_before_the_file_is_open_leaves_the_store_usable(
    tmp_path: pathlib.Path,
) -> None:
    # the first caller's loop ends (its append cancelled) before the writer has opened the
    # file: a later loop must not wait on the first loop's future, which nobody can resolve
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")

    async def first() -> None:
        task = asyncio.ensure_future(store.append("s.a", Event("t.x")))
        await asyncio.sleep(0)  # the writer is started and its first job queued
        task.cancel()

    async def second() -> AppendResult:
        async with asyncio.timeout(10):
            try:
                return await store.append("s.b", Event("t.x"))
            finally:
                await store.close()

    asyncio.run(first())
    result = asyncio.run(second())
    assert (result.next_expected_version, result.global_position) == (0, 0)


def _first_appends_at_once(path: pathlib.Path) -> tuple[dict[str, object], list[int]]:
    """Two threads, each running its own loop, make a fresh store's first appends at once."""
    store = EventStore(f"sqlite:///{path}")
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def worker(name: str) -> None:
        async def go() -> AppendResult:
            barrier.wait()
            async with asyncio.timeout(10):
                return await store.append(f"s.{name}", Event("t.x"))

        try:
            results[name] = asyncio.run(go())
        except BaseException as exc:  # reported by the test, never lost in the thread
            results[name] = exc

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)

    async def read_back() -> list[int]:
        try:
            return [len(await store.get_stream(f"s.{name}")) for name in ("a", "b")]
        finally:
            await store.close()

    return results, asyncio.run(read_back())


def test_loops_in_two_threads_opening_a_fresh_store_at_once_both_append(
    tmp_path: pathlib.Path,
) -> None:
    for attempt in range(5):  # the race is narrow: try it a few times
        results, lengths = _first_appends_at_once(tmp_path / f"events{attempt}.db")
        assert all(isinstance(result, AppendResult) for result in results.values()), results
        assert lengths == [1, 1]


# -- the file removed or replaced under an open store; another process's lock ------------


@pytest.mark.parametrize("how", ["removed", "replaced"])
async def test_appends_and_reads_fail_once_the_file_is_removed_or_replaced(
    tmp_path: pathlib.Path, how: str
) -> None:
    """An open connection keeps writing to its file after it is unlinked or renamed
    over: appends would go where nobody can read them. They fail instead, and write
    nothing to the file now at the path."""
    path = tmp_path / "events.db"
    store = EventStore(f"sqlite:///{path}")
    try:
        await store.append("a.1", Event("t.x"))
        if how == "removed":
            for suffix in ("", "-wal", "-shm"):
                (tmp_path / f"events.db{suffix}").unlink(missing_ok=True)
        else:  # a restore renamed over it
            async with EventStore(f"sqlite:///{tmp_path / 'old.db'}") as old:
                await old.append("b.1", Event("t.old"))
            (tmp_path / "old.db").replace(path)
            for suffix in ("-wal", "-shm"):
                (tmp_path / f"events.db{suffix}").unlink(missing_ok=True)
        for _ in range(2):
            with pytest.raises(StoreError, match=f"{how}"):
                await store.append("a.1", Event("t.x"))
        with pytest.raises(StoreError, match="removed or replaced"):
            await store.read_all(0)
        with pytest.raises(StoreError, match="removed or replaced"):
            await store.delete_stream("a.1")
    finally:
        await store.close()
    if how == "replaced":
        async with EventStore(f"sqlite:///{path}") as reopened:
            assert [e.stream for e in await reopened.read_all(0)] == ["b.1"]


async def test_busy_timeout_sets_how_long_appends_wait_for_another_process_lock(
    tmp_path: pathlib.Path,
) -> None:
    """All the callers of a burst fail after one busy timeout: the half of the burst
    committed first is answered at once, and the other half is not kept waiting a
    second timeout."""
    path = tmp_path / "events.db"
    store = EventStore(f"sqlite:///{path}?busy_timeout=0.5")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        await store.append("warm.1", Event("t.x"))
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(store.append(f"s.{n}", Event("t.x")) for n in range(20)), return_exceptions=True
        )
        took = time.monotonic() - started
        assert all(isinstance(outcome, StoreError) for outcome in outcomes)
        assert "locked" in str(outcomes[0])
        assert 0.4 < took < 0.9  # one timeout, not two (nor ten seconds)
        holder.execute("ROLLBACK")
        await store.append("after.1", Event("t.x"))
        assert [e.stream for e in await store.read_all(0)] == ["warm.1", "after.1"]
    finally:
        holder.close()
        await store.close()


_SECONDS = "must be a finite number of seconds >= 0, got"
_OVERFLOWS = "must be less than 1000000 seconds (SQLite counts it in milliseconds, in a C int)"


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("soon", f"{_SECONDS} 'soon'"),
        ("true", f"{_SECONDS} 'true'"),
        ("", f"{_SECONDS} ''"),
        ("-1", f"{_SECONDS} -1.0"),
        ("nan", f"{_SECONDS} nan"),
        ("inf", f"{_SECONDS} inf"),
        ("1e6", f"{_OVERFLOWS}, got 1000000.0"),
    ],
)
def test_a_bad_busy_timeout_in_the_url_is_refused_naming_it(
    tmp_path: pathlib.Path, text: str, refused: str
) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}?busy_timeout={text}"
    with pytest.raises(ConfigurationError) as caught:
        EventStore(url)
    assert str(caught.value) == f"{url!r}: busy_timeout {refused}"


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        # True passed as one second, "abc" raised a bare TypeError
        (True, f"{_SECONDS} True"),
        ("abc", f"{_SECONDS} 'abc'"),
        (None, f"{_SECONDS} None"),
        (math.inf, f"{_SECONDS} inf"),
        (1e6, f"{_OVERFLOWS}, got 1000000.0"),
        (10**7, f"{_OVERFLOWS}, got 10000000"),
    ],
    ids=repr,
)
def test_a_bad_busy_timeout_argument_is_refused_naming_it(
    tmp_path: pathlib.Path, value: object, refused: str
) -> None:
    # a value that is no number is a wrong type: TypeError (docs/errors.md)
    number = not isinstance(value, bool) and isinstance(value, int | float)
    with pytest.raises(ValueError if number else TypeError) as caught:
        sqlite_backend.SQLiteBackend("events.db", busy_timeout=value)  # type: ignore[arg-type]
    assert str(caught.value) == f"busy_timeout {refused}"


def test_busy_timeouts_sqlite_can_count_are_taken(tmp_path: pathlib.Path) -> None:
    # a longer one overflows SQLite's milliseconds: sqlite3 sets 0, no waiting at all
    url = f"sqlite:///{tmp_path / 'e.db'}?busy_timeout=999999.5"
    assert sqlite_backend.parse_url(url).busy_timeout == 999999.5
    assert sqlite_backend.SQLiteBackend("e.db", busy_timeout=0)._busy_timeout == 0.0
