"""The store conformance suite: every backend must pass all of it.

Subclass :class:`StoreConformance` in a ``test_*.py`` module, name it ``Test...`` and give
it a ``store_url`` fixture. ``make_store()`` opens a store on that URL (several stores on
one URL share data when the backend is shared, i.e. not ``memory://``); every store made
is closed after the test.
"""

from __future__ import annotations

import asyncio
import copy
import pickle
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from pepperpy.event import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    ClosedError,
    ConcurrencyError,
    ConfigurationError,
    Event,
    EventStore,
    PatternError,
    SerializationError,
    Snapshot,
    StoreError,
    StreamDeletedError,
    ValidationError,
)
from pepperpy.event._frozen import MAX_DEPTH
from pepperpy.event._patterns import matches
from pepperpy.event._text import MAX_NAME_BYTES
from pepperpy.event.store import MemoryBackend
from pepperpy.event.store.base import MINUTE, MinuteCount, from_micros
from pepperpy.event.store.sqlite import SQLiteBackend
from tests.helpers import eventually
from tests.store.conformance_head import HeadConformance
from tests.store.conformance_multi import MultiConformance
from tests.store.conformance_stream_pages import StreamPagesConformance

MakeStore = Callable[[], EventStore]


def batch(count: int, type: str = "thing.happened", **data: Any) -> list[dict[str, Any]]:
    return [{"type": type, "data": {"n": n, **data}} for n in range(count)]


def announce_waits(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], asyncio.Event]:
    """Make the backend's ``wait`` announce itself once it has begun, per event loop.

    Returns ``waits()``: an event of the running loop, set once a subscription on that
    loop is inside the backend's wait (or that wait failed at once).
    """
    original = store.backend.wait
    started: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}

    def waits() -> asyncio.Event:
        flag = started[asyncio.get_running_loop()] = asyncio.Event()
        return flag

    async def announcing(position: int) -> None:
        waiting = asyncio.ensure_future(original(position))
        await asyncio.sleep(0)  # the backend's wait has run up to its first suspension
        flag = started.get(asyncio.get_running_loop())
        if flag is not None:
            flag.set()
        await waiting

    monkeypatch.setattr(store.backend, "wait", announcing)
    return waits


async def first_done(*awaitables: Awaitable[Any]) -> None:
    """Wait until one of ``awaitables`` is done; cancel the others that were not futures."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for awaitable, task in zip(awaitables, tasks, strict=True):
        if task is not awaitable:
            task.cancel()


async def record_at(store: EventStore, times: Mapping[int, int]) -> None:
    """Set the ``recorded_at`` of the events at the given global positions (epoch µs).

    A store records the time of its own clock (the server's, on PostgreSQL), which a test
    cannot choose, so this writes the times into the backend's storage behind its back:
    the rows of the memory backend, the table and time index of an SQLite file, the table
    of a PostgreSQL schema.
    """
    backend = store.backend
    if isinstance(backend, MemoryBackend):
        for position, micros in times.items():
            row = backend._log[position]
            moved = (*row[:11], micros)
            backend._log[position] = moved
            backend._streams[row[1]].rows[row[2]] = moved
    elif isinstance(backend, SQLiteBackend):
        connection = sqlite3.connect(backend.path)
        try:
            with connection:
                for table in ("events", "time_index"):
                    connection.executemany(
                        f"UPDATE {table} SET recorded_at = ? WHERE global_position = ?",
                        [(micros, position) for position, micros in times.items()],
                    )
        finally:
            connection.close()
    else:
        import asyncpg

        from pepperpy.event.store.postgres import PostgresBackend

        assert isinstance(backend, PostgresBackend), backend
        settings = {} if backend.schema is None else {"search_path": backend.schema}
        connection = await asyncpg.connect(backend._dsn, server_settings=settings)
        try:
            await connection.executemany(
                "UPDATE pepperpy_events SET recorded_at = $1 WHERE global_position = $2",
                [(micros, position) for position, micros in times.items()],
            )
        finally:
            await connection.close()


class StoreConformance(HeadConformance, MultiConformance, StreamPagesConformance):
    @pytest.fixture
    async def make_store(self, store_url: str) -> AsyncIterator[MakeStore]:
        stores: list[EventStore] = []

        def make() -> EventStore:
            store = EventStore(store_url)
            stores.append(store)
            return store

        yield make
        for store in stores:
            await store.close()

    @pytest.fixture
    def store(self, make_store: MakeStore) -> EventStore:
        return make_store()

    # -- the seed -------------------------------------------------------------------

    async def test_seed_snippet_runs_as_written(self, store: EventStore) -> None:
        await store.append("user.123", {"type": "PasswordChanged", "data": {"new_hash": "abc123"}})
        events = await store.get_stream("user.123")
        assert [event.type for event in events] == ["PasswordChanged"]
        assert events[0].data == {"new_hash": "abc123"}

    # -- append ---------------------------------------------------------------------

    async def test_events_read_back_carry_positions_and_every_attribute(
        self, store: EventStore
    ) -> None:
        when = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC)
        original = Event(
            "order.placed",
            {"total": 12.5, "items": [{"sku": "a", "qty": 2}], "note": "ünï €"},
            {"trace": "t-1", "nested": {"k": [1, 2]}},
            id="order-1",
            timestamp=when,
            version=3,
            source="shop",
            subject="order/1",
        )
        first = await store.append("order.1", original)
        second = await store.append("order.1", {"type": "order.paid", "data": None})
        assert first == AppendResult(next_expected_version=0, global_position=0)
        assert second.next_expected_version == 1
        assert second.global_position > first.global_position
        placed, paid = await store.get_stream("order.1")
        assert placed == original
        assert (placed.id, placed.type, placed.version) == ("order-1", "order.placed", 3)
        assert placed.timestamp == when
        assert placed.metadata == {"trace": "t-1", "nested": {"k": [1, 2]}}
        assert (placed.source, placed.subject) == ("shop", "order/1")
        assert (placed.stream, placed.position, placed.global_position) == ("order.1", 0, 0)
        assert placed.recorded_at is not None and placed.recorded_at.tzinfo is not None
        assert (paid.position, paid.global_position, paid.data) == (1, 1, None)
        assert paid.metadata == {}
        with pytest.raises(TypeError):
            placed.data["total"] = 0

    async def test_events_with_and_without_optional_attributes_mix_in_one_write(
        self, store: EventStore
    ) -> None:
        # SQLite writes rows without metadata, source and subject through a shorter
        # statement: a batch, and concurrent appends grouped into one commit, mix both
        def kinds(n: int) -> list[Event]:
            return [
                Event("plain", {"n": n}),
                Event("meta", {"n": n}, {"trace": f"t-{n}"}),
                Event("sourced", {"n": n}, source="shop"),
                Event("subjected", {"n": n}, subject=f"order/{n}"),
                Event("plain", "a string is data too", version=2),
            ]

        batch = kinds(0)
        await store.append("mixed.batch", batch)
        singles = [kinds(n) for n in range(1, 5)]
        await asyncio.gather(
            *(
                store.append(f"mixed.{i}", event)
                for events in singles
                for i, event in enumerate(events)
            )
        )
        stored = await store.get_stream("mixed.batch")
        assert stored == batch
        assert [(e.metadata, e.source, e.subject, e.version) for e in stored] == [
            ({}, None, None, 1),
            ({"trace": "t-0"}, None, None, 1),
            ({}, "shop", None, 1),
            ({}, None, "order/0", 1),
            ({}, None, None, 2),
        ]
        for i in range(5):
            assert await store.get_stream(f"mixed.{i}") == [events[i] for events in singles]
        everything = [e async for e in store.read_all(streams="mixed.*")]
        assert len({e.global_position for e in everything}) == 25

    async def test_data_round_trips_the_same_on_every_backend(self, store: EventStore) -> None:
        data = {
            "when": datetime(2024, 1, 1, tzinfo=UTC),
            "price": Decimal("10.25"),
            "big": 2**53 + 1,
            "list": [1, "two", None, True, 3.5],
        }
        await store.append("shapes.1", {"type": "shape", "data": data})
        (event,) = await store.get_stream("shapes.1")
        assert event.data == {
            "when": "2024-01-01T00:00:00+00:00",
            "price": "10.25",
            "big": 2**53 + 1,
            "list": [1, "two", None, True, 3.5],
        }

    async def test_a_batch_is_written_atomically_with_consecutive_positions(
        self, store: EventStore
    ) -> None:
        result = await store.append("cart.1", batch(5))
        assert result.next_expected_version == 4
        events = await store.get_stream("cart.1")
        assert [e.position for e in events] == [0, 1, 2, 3, 4]
        assert [e.data["n"] for e in events] == [0, 1, 2, 3, 4]
        positions = [e.global_position for e in events]
        assert positions == sorted(positions) and len(set(positions)) == 5
        assert result.global_position == positions[-1]

    @pytest.mark.parametrize(
        ("bad", "error"),
        [
            ([{"type": "ok"}, {"type": "bad", "data": {"x": object()}}], SerializationError),
            ([{"type": "ok"}, {"data": {"no": "type"}}], ValidationError),
            ([{"type": "ok"}, {"type": ""}], ValidationError),
            ([{"type": "ok"}, {"type": 5}], ValidationError),
            ([{"type": "ok"}, {"type": "x", "colour": "red"}], ValidationError),
            ([{"type": "ok"}, {"type": "x", "metadata": [1]}], ValidationError),
            ([{"type": "ok"}, {"type": "x", "id": 7}], ValidationError),
            ([{"type": "ok"}, "not an event"], ValidationError),
            ([{"type": "ok", "id": "same"}, {"type": "ok", "id": "same"}], ValidationError),
            ([{"type": "ok"}, {"type": "x", "data": {"f": float("nan")}}], SerializationError),
            ([], ValidationError),
            (42, ValidationError),
        ],
    )
    async def test_bad_input_raises_a_clear_error_and_writes_nothing(
        self, store: EventStore, bad: Any, error: type[Exception]
    ) -> None:
        with pytest.raises(error) as caught:
            await store.append("bad.input", bad)
        assert str(caught.value)
        assert await store.get_stream("bad.input") == []
        assert await store.stream_version("bad.input") is None
        assert await store.read_all() == []

    async def test_validation_errors_point_at_the_bad_event(self, store: EventStore) -> None:
        with pytest.raises(ValidationError) as caught:
            await store.append("bad.input", [{"type": "ok"}, {"data": 1}])
        (problem,) = caught.value.errors
        assert problem.path == "$[1].type"
        assert "type" in str(caught.value)

    @pytest.mark.parametrize("stream", ["", "a..b", ".a", "a.", "user.*", "user.#", "a b"])
    async def test_stream_names_follow_the_topic_rules(
        self, store: EventStore, stream: str
    ) -> None:
        with pytest.raises(PatternError):
            await store.append(stream, {"type": "x"})
        with pytest.raises(PatternError):
            store.get_stream(stream)

    async def test_names_and_ids_up_to_the_byte_limit_are_taken_longer_ones_refused(
        self, store: EventStore
    ) -> None:
        # 1,024 UTF-8 bytes on every backend: PostgreSQL's B-tree indexes cannot hold a
        # stream name plus an id of a few thousand bytes, and what one backend takes every
        # backend must take. Random-looking text, since PostgreSQL compresses "xxx..."
        longest = "s." + "".join(chr(0x61 + (i * 7919) % 26) for i in range(1022))
        longest_id = "".join(chr(0x41 + (i * 104729) % 26) for i in range(1024))
        assert len(longest.encode()) == len(longest_id.encode()) == MAX_NAME_BYTES
        await store.append(longest, Event("t.x", {"n": 1}, id=longest_id))
        (stored,) = await store.get_stream(longest)
        assert (stored.stream, stored.id) == (longest, longest_id)
        too_long = longest + "a"
        with pytest.raises(PatternError, match="longer than 1024 bytes") as caught:
            await store.append(too_long, {"type": "t.x"})
        assert caught.value.position == 1024 and len(str(caught.value)) < 300
        with pytest.raises(ValueError, match="longer than 1024 bytes"):
            Event("t.x", id=longest_id + "A")
        # multi-byte: 342 three-byte characters are 1,026 bytes
        with pytest.raises(PatternError, match="longer than 1024 bytes") as caught:
            await store.append("s." + "\u20ac" * 342, {"type": "t.x"})
        assert caught.value.position == 2 + 340
        assert await store.streams() == [longest]

    @pytest.mark.parametrize(
        "patterns", [b"order.*", [b"order.*"], ["order.*", 7], bytearray(b"a")]
    )
    async def test_patterns_that_are_not_str_are_refused_by_name(
        self, store: EventStore, patterns: Any
    ) -> None:
        for call in (
            lambda: store.read_all(streams=patterns),
            lambda: store.read_all(types=patterns),
            lambda: store.subscribe(streams=patterns),
        ):
            with pytest.raises(TypeError, match=r"must be a pattern \(str\) or a non-empty list"):
                call()
        with pytest.raises(TypeError, match="must be a pattern"):
            await store.streams(patterns)

    @pytest.mark.parametrize(
        "metadata",
        [
            {1: "a", "1": "b"},  # JSON would merge the two keys into one
            {"nested": {2: "a"}},
            {"tags": {"vip", "new"}},  # a set would come back as a list, in no fixed order
            {"f": float("inf")},
        ],
    )
    async def test_metadata_that_would_not_read_back_as_written_is_refused(
        self, store: EventStore, metadata: dict[Any, Any]
    ) -> None:
        for item in (
            {"type": "x.y", "metadata": metadata},
            Event("x.y", metadata=metadata),
            [{"type": "ok"}, {"type": "x.y", "metadata": metadata}],
        ):
            with pytest.raises(SerializationError, match="metadata"):
                await store.append("meta.1", item)
        assert await store.stream_version("meta.1") is None

    # -- expected_version -----------------------------------------------------------

    async def test_expected_version_int_must_equal_the_last_position(
        self, store: EventStore
    ) -> None:
        await store.append("acct.1", batch(2), expected_version=NO_STREAM)
        await store.append("acct.1", batch(1), expected_version=1)
        with pytest.raises(ConcurrencyError) as caught:
            await store.append("acct.1", batch(1), expected_version=1)
        assert (caught.value.stream, caught.value.expected, caught.value.actual) == (
            "acct.1",
            1,
            2,
        )
        with pytest.raises(ConcurrencyError) as missing:
            await store.append("acct.2", batch(1), expected_version=0)
        assert missing.value.actual is None
        assert await store.stream_version("acct.1") == 2
        assert await store.stream_version("acct.2") is None

    async def test_no_stream_stream_exists_and_any(self, store: EventStore) -> None:
        with pytest.raises(ConcurrencyError):
            await store.append("acct.1", batch(1), expected_version=STREAM_EXISTS)
        await store.append("acct.1", batch(1), expected_version=NO_STREAM)
        with pytest.raises(ConcurrencyError) as caught:
            await store.append("acct.1", batch(1), expected_version=NO_STREAM)
        assert caught.value.expected is NO_STREAM
        assert "NO_STREAM" in str(caught.value)
        await store.append("acct.1", batch(1), expected_version=STREAM_EXISTS)
        await store.append("acct.1", batch(1), expected_version=ANY)
        assert await store.stream_version("acct.1") == 2

    @pytest.mark.parametrize(
        ("expected", "error"),
        [
            (-1, ValueError),
            (2**63, ValueError),
            # no int: a wrong type (docs/errors.md)
            (True, TypeError),
            ("1", TypeError),
            (1.0, TypeError),
            (None, TypeError),
        ],
    )
    async def test_a_malformed_expected_version_is_refused(
        self, store: EventStore, expected: Any, error: type[Exception]
    ) -> None:
        with pytest.raises(error, match="^expected_version must be a stream position") as caught:
            await store.append("acct.1", batch(1), expected_version=expected)
        assert type(caught.value) is error

    async def test_a_failed_check_writes_nothing(self, store: EventStore) -> None:
        await store.append("acct.1", batch(1))
        with pytest.raises(ConcurrencyError):
            await store.append("acct.1", batch(3), expected_version=5)
        assert len(await store.get_stream("acct.1")) == 1

    # -- idempotency ----------------------------------------------------------------

    async def test_retrying_a_batch_is_a_no_op_with_the_same_result(
        self, store: EventStore
    ) -> None:
        events = [Event("x", {"n": n}) for n in range(3)]
        first = await store.append("retry.1", events, expected_version=NO_STREAM)
        await store.append("retry.other", batch(2))
        again = await store.append("retry.1", events, expected_version=NO_STREAM)
        assert again == first
        single = await store.append("retry.1", events[1])
        assert single == AppendResult(1, first.global_position - 1)
        assert [e.id for e in await store.get_stream("retry.1")] == [e.id for e in events]

    async def test_a_batch_mixing_known_and_new_ids_writes_only_the_new(
        self, store: EventStore
    ) -> None:
        known = Event("x", {"n": 0})
        await store.append("retry.1", known)
        fresh = Event("x", {"n": 1})
        result = await store.append("retry.1", [known, fresh], expected_version=0)
        assert result.next_expected_version == 1
        assert [e.id for e in await store.get_stream("retry.1")] == [known.id, fresh.id]

    async def test_a_retry_returns_the_original_result_whatever_the_order_of_its_ids(
        self, store: EventStore
    ) -> None:
        # found by tests/store/test_model.py: a retry answered with the position of the
        # batch's last event, not of the last event the original append wrote
        known = Event("x", {"n": 0})
        await store.append("retry.1", known)
        mixed = [Event("x", {"n": 1}), known]  # the new event is written at position 1
        original = await store.append("retry.1", mixed)
        assert original == AppendResult(1, 1)
        assert await store.append("retry.1", mixed) == original  # a retry after a lost reply
        first, second = Event("x", {"n": 2}), Event("x", {"n": 3})
        original = await store.append("retry.2", [first, second])
        assert await store.append("retry.2", [second, first]) == original
        assert len(await store.read_all()) == 4

    async def test_an_event_read_back_and_appended_again_is_a_no_op(
        self, store: EventStore
    ) -> None:
        first = await store.append("echo.1", {"type": "x", "data": {"n": 0}})
        await store.append("echo.1", [{"type": "x", "data": {"n": n}} for n in (1, 2)])
        stored = await store.get_stream("echo.1")
        assert await store.append("echo.1", stored[0]) == first
        again = await store.append("echo.1", stored[1:])
        assert again.next_expected_version == 2
        assert [e.id for e in await store.get_stream("echo.1")] == [e.id for e in stored]

    async def test_a_new_event_appended_twice_is_stored_once(self, store: EventStore) -> None:
        event = Event("x", {"n": 0})  # its id is read for the first time by the append
        first = await store.append("twice.1", event)
        assert await store.append("twice.1", event) == first
        assert await store.append("twice.1", [event]) == first
        assert [e.id for e in await store.get_stream("twice.1")] == [event.id]

    async def test_one_event_appended_twice_at_once_is_stored_once(self, store: EventStore) -> None:
        await store.append("twice.1", {"type": "x"})
        event = Event("x", {"n": 1})
        results = await asyncio.gather(*(store.append("twice.1", event) for _ in range(3)))
        assert results[0] == results[1] == results[2]
        assert [e.id for e in await store.get_stream("twice.1")][1:] == [event.id]

    @pytest.mark.parametrize("how", ["replace", "copy", "pickle"])
    async def test_a_copy_of_a_new_event_is_the_same_event(
        self, store: EventStore, how: str
    ) -> None:
        # a copy carries the original's id; whichever is appended second is a retry
        original = Event("x", {"n": 0})
        if how == "replace":
            duplicate = original.replace()
        elif how == "copy":
            duplicate = copy.copy(original)
        else:
            duplicate = pickle.loads(pickle.dumps(original))
        first = await store.append("copied.1", duplicate)
        assert await store.append("copied.1", original) == first
        assert [e.id for e in await store.get_stream("copied.1")] == [original.id]

    async def test_ids_behind_a_deletion_are_appended_again_as_new(self, store: EventStore) -> None:
        first, second = Event("x", {"n": 0}), Event("x", {"n": 1})
        await store.append("gone.1", [first, second])
        assert await store.delete_stream("gone.1")
        restarted = await store.append("gone.1", first, expected_version=NO_STREAM)
        assert restarted.next_expected_version == 2
        result = await store.append("gone.1", second)  # the stream has events again
        assert result.next_expected_version == 3
        stored = await store.get_stream("gone.1")
        assert [(e.position, e.id) for e in stored] == [(2, first.id), (3, second.id)]
        assert await store.append("gone.1", [first, second]) == result  # now both are known

    async def test_the_same_id_may_live_in_two_streams(self, store: EventStore) -> None:
        event = Event("x", id="shared-id")
        await store.append("a.1", event)
        await store.append("b.1", event)
        assert len(await store.read_all()) == 2

    # -- reading streams ------------------------------------------------------------

    async def test_a_missing_stream_reads_as_empty(self, store: EventStore) -> None:
        assert await store.get_stream("nobody.home") == []
        assert await store.get_stream("nobody.home", backwards=True) == []
        assert [e async for e in store.get_stream("nobody.home")] == []

    async def test_forwards_backwards_start_and_limit(self, store: EventStore) -> None:
        await store.append("s.1", batch(10))
        await store.append("s.2", batch(3))

        async def positions(**kwargs: Any) -> list[int | None]:
            return [e.position for e in await store.get_stream("s.1", **kwargs)]

        assert await positions() == list(range(10))
        assert await positions(start_pos=7) == [7, 8, 9]
        assert await positions(limit=3) == [0, 1, 2]
        assert await positions(start_pos=2, limit=2) == [2, 3]
        assert await positions(start_pos=10) == []
        assert await positions(limit=0) == []
        assert await positions(backwards=True) == list(range(9, -1, -1))
        assert await positions(backwards=True, limit=2) == [9, 8]
        assert await positions(start_pos=4, backwards=True) == [4, 3, 2, 1, 0]
        assert await positions(start_pos=4, backwards=True, limit=2) == [4, 3]
        assert await positions(start_pos=99, backwards=True, limit=1) == [9]
        with pytest.raises(ValueError):
            store.get_stream("s.1", start_pos=-1)
        with pytest.raises(ValueError):
            store.get_stream("s.1", limit=-1)

    async def test_async_iteration_pages_through_long_streams(self, store: EventStore) -> None:
        for chunk in range(3):
            await store.append("long.1", batch(450, chunk=chunk))
        listed = await store.get_stream("long.1")
        streamed = [e async for e in store.get_stream("long.1")]
        assert len(listed) == 1350
        assert [e.position for e in streamed] == list(range(1350))
        assert [e.id for e in streamed] == [e.id for e in listed]
        backwards = [e.position async for e in store.get_stream("long.1", backwards=True)]
        assert backwards == list(range(1349, -1, -1))
        limited = [e.position async for e in store.get_stream("long.1", 600, limit=700)]
        assert limited == list(range(600, 1300))

    # -- the global log -------------------------------------------------------------

    async def test_read_all_is_the_global_order_from_an_inclusive_position(
        self, store: EventStore
    ) -> None:
        await store.append("user.1", {"type": "user.created"})
        await store.append("order.1", {"type": "order.placed"})
        await store.append("user.1", {"type": "user.renamed"})
        everything = await store.read_all()
        assert [(e.stream, e.type) for e in everything] == [
            ("user.1", "user.created"),
            ("order.1", "order.placed"),
            ("user.1", "user.renamed"),
        ]
        positions = [e.global_position for e in everything]
        assert positions == sorted(positions)
        resumed = await store.read_all(positions[1])
        assert [e.global_position for e in resumed] == positions[1:]
        assert await store.read_all(positions[-1] + 1) == []
        assert [e.type for e in await store.read_all(limit=2)] == [
            "user.created",
            "order.placed",
        ]

    async def test_read_all_filters_by_stream_and_type_patterns(self, store: EventStore) -> None:
        await store.append("user.1", {"type": "user.created"})
        await store.append("order.1", {"type": "order.placed"})
        await store.append("user.2", {"type": "user.created"})
        await store.append("user.2", {"type": "user.deleted"})
        await store.append("admin.user.3", {"type": "user.created"})

        async def seen(**kwargs: Any) -> list[tuple[str | None, str]]:
            return [(e.stream, e.type) for e in await store.read_all(**kwargs)]

        assert await seen(streams="user.*") == [
            ("user.1", "user.created"),
            ("user.2", "user.created"),
            ("user.2", "user.deleted"),
        ]
        assert await seen(streams=["order.#", "admin.#"]) == [
            ("order.1", "order.placed"),
            ("admin.user.3", "user.created"),
        ]
        assert await seen(types="*.created", streams="user.*") == [
            ("user.1", "user.created"),
            ("user.2", "user.created"),
        ]
        assert await seen(types="#.deleted") == [("user.2", "user.deleted")]
        assert await seen(types="user.*", limit=2) == [
            ("user.1", "user.created"),
            ("user.2", "user.created"),
        ]
        assert len(await seen(streams="#")) == 5
        streamed = [e.stream async for e in store.read_all(streams="user.2")]
        assert streamed == ["user.2", "user.2"]
        with pytest.raises(PatternError):
            store.read_all(streams="us*rs")
        with pytest.raises(ValueError):
            store.read_all(-1)

    @pytest.mark.parametrize("position", [2**63, 2**64, 10**30])
    async def test_positions_past_the_64_bit_range_are_refused(
        self, store: EventStore, position: int
    ) -> None:
        # docs/store.md: a position past 2**63 - 1 is a ValueError, the same on every
        # backend (not a driver's OverflowError, nor an empty read on one and not another)
        await store.append("s.1", {"type": "t.x"})
        with pytest.raises(ValueError, match="from_position"):
            store.read_all(position)
        with pytest.raises(ValueError, match="from_position"):
            store.read_all(position, streams="s.*")
        with pytest.raises(ValueError, match="from_position"):
            store.subscribe(position)
        with pytest.raises(ValueError, match="start_pos"):
            store.get_stream("s.1", start_pos=position)
        assert await store.read_all(2**63 - 1) == []  # the last position there can be
        assert await store.get_stream("s.1", start_pos=2**63 - 1) == []

    async def test_read_all_pages_with_a_sparse_filter(self, store: EventStore) -> None:
        await store.append("noise.1", batch(1100))
        await store.append("signal.1", batch(2))
        await store.append("noise.1", batch(600))
        found = [e.stream async for e in store.read_all(streams="signal.*")]
        assert found == ["signal.1", "signal.1"]

    #: every pattern shape a filtered read takes: exact and prefixed ones (found by an
    #: index on SQLite and PostgreSQL), ones starting with a wildcard (a scan), and lists
    #: mixing them (one that starts with a wildcard makes its list a scan)
    FILTERS: tuple[dict[str, Any], ...] = (
        {"types": "order.placed"},
        {"types": "order"},
        {"types": "order.*"},
        {"types": "order.#"},
        {"types": "*.placed"},
        {"types": "#.placed"},
        {"types": ["order.paid", "user.*"]},
        {"types": ["order.paid", "*.created"]},
        {"types": ["order.#", "order.placed"]},
        {"types": "nothing.here"},
        {"streams": "order.*"},
        {"streams": "order.#"},
        {"streams": "order"},
        {"streams": "order.eu.1"},
        {"streams": "order.eu.*"},
        {"streams": "*.1"},
        {"streams": ["user.*", "order.eu.*"]},
        {"streams": ["user.*", "#.3"]},
        {"streams": "order.#", "types": "*.placed"},
        {"streams": "*.2", "types": "order.*"},
        {"streams": "user.#", "types": "order.placed"},
    )

    async def _filter_log(self, store: EventStore) -> list[Event]:
        """A log of about 1000 events (some hidden) over streams and types whose names
        neighbour each other (order, order.eu, orders, order-x: prefixes and near
        prefixes), with deleted streams (one restarted), in batches that interleave them."""
        streams = [
            "order",
            *(f"order.{n}" for n in range(6)),
            *(f"order.eu.{n}" for n in range(4)),
            *(f"orders.{n}" for n in range(3)),
            *(f"order-x.{n}" for n in range(2)),
            *(f"user.{n}" for n in range(4)),
            "audit.order.3",
        ]
        types = [
            "order.placed",
            "order.paid",
            "order.placed.v2",
            "order",
            "orders.placed",
            "order-x.placed",
            "user.created",
            "audit.order.placed",
            "ünï.code",
        ]
        deleted: set[str] = set()
        for round in range(3):
            for offset, stream in enumerate(streams):
                if stream in deleted:
                    continue
                records = [
                    {"type": types[(round * 7 + offset * 3 + n) % len(types)], "data": {"n": n}}
                    for n in range(offset % 5 + 14)
                ]
                await store.append(stream, records)
            for stream in {0: ["order.2", "user.1"], 1: ["order.eu.3"]}.get(round, []):
                await store.delete_stream(stream)
                deleted.add(stream)
        await store.append("user.1", {"type": "user.created"}, expected_version=NO_STREAM)
        return await store.read_all()

    async def test_filtered_reads_give_what_a_filter_over_the_whole_log_gives(
        self, store: EventStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from pepperpy.event import _patterns
        from pepperpy.event.store import _reader

        log = await self._filter_log(store)
        assert len({e.global_position for e in log}) == len(log) > 700
        # small pages: many pages per read, and pages that end inside a key's run
        monkeypatch.setattr(_reader, "_COLLECT_PAGE", 13)
        monkeypatch.setattr(_reader, "_ITERATE_PAGE", 7)

        def matching(patterns: str | list[str] | None, name: str) -> bool:
            if patterns is None:
                return True
            listed = [patterns] if isinstance(patterns, str) else patterns
            return any(_patterns.matches(pattern, name) for pattern in listed)

        head = log[-1].global_position
        for filters in self.FILTERS:
            wanted = [
                e
                for e in log
                if matching(filters.get("streams"), e.stream or "")
                and matching(filters.get("types"), e.type)
            ]
            for start in (0, 1, 137, 300, head, head + 1):
                for limit in (None, 1, 5, 40):
                    expected = [e.id for e in wanted if e.global_position >= start][:limit]
                    read = await store.read_all(start, limit=limit, **filters)
                    assert [e.id for e in read] == expected, (filters, start, limit)
                    paged = [e.id async for e in store.read_all(start, limit=limit, **filters)]
                    assert paged == expected, (filters, start, limit)
                    if limit not in (None, 5):
                        continue
                    # backwards from the same position, newest first
                    newest = [e.id for e in reversed(wanted) if e.global_position <= start]
                    down = store.read_all(start, backwards=True, limit=limit, **filters)
                    assert [e.id for e in await down] == newest[:limit], (filters, start, limit)
            last = await store.read_all(backwards=True, limit=3, **filters)  # from the head
            assert [e.id for e in last] == [e.id for e in reversed(wanted)][:3], filters
            # a subscription catches up on the same events
            subscription = store.subscribe(137, **filters)
            expected = [e.id for e in wanted if e.global_position >= 137]
            caught: list[str] = []
            async with asyncio.timeout(10):
                while len(caught) < len(expected):
                    caught.append((await anext(subscription)).id)
            assert caught == expected, filters
            await subscription.aclose()

    async def test_streams_lists_names_by_pattern_and_stream_version(
        self, store: EventStore
    ) -> None:
        for name in ["user.2", "user.1", "order.1", "user.1.audit"]:
            await store.append(name, {"type": "x"})
        assert await store.streams() == ["order.1", "user.1", "user.1.audit", "user.2"]
        assert await store.streams("user.*") == ["user.1", "user.2"]
        assert await store.streams("user.#") == ["user.1", "user.1.audit", "user.2"]
        assert await store.streams("nothing.*") == []
        assert await store.stream_version("user.1") == 0

    async def test_streams_gives_what_matching_each_name_gives(self, store: EventStore) -> None:
        # names are matched split, not parsed again, and past a literal prefix only:
        # the same names as the pattern matcher's, for every shape of pattern
        names = [
            "order",
            "order.1",
            "order.1.audit",
            "orders.1",
            "order-x.1",
            "user.order.1",
            "user.1.order",
            "a.b.c.d",
            "a.b",
            "é.1",
        ]
        for name in names:
            await store.append(name, {"type": "x"})
        for pattern in [
            "order",
            "order.*",
            "order.#",
            "order.*.audit",
            "orders.#",
            "*.1",
            "#.order",
            "#.1.#",
            "*.*",
            "a.#.d",
            "a.b.#",
            "é.*",
            "#.nomatch",
        ]:
            expected = sorted(name for name in names if matches(pattern, name))
            assert await store.streams(pattern) == expected, pattern

    async def test_streams_lets_the_loop_serve_others_over_many_names(
        self, store: EventStore
    ) -> None:
        for start in range(0, 10_000, 1_000):
            await store.append_streams(
                {f"tenant.{n}.account": [{"type": "x"}] for n in range(start, start + 1_000)}
            )
        turns = 0

        async def count_turns() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        counter = asyncio.create_task(count_turns())
        await asyncio.sleep(0)
        try:
            before = turns
            assert await store.streams("*.nomatch") == []  # no literal prefix: every name
            assert turns - before >= 2
        finally:
            counter.cancel()

    @pytest.mark.parametrize("shape", ["deep-dict", "deep-list", "cycle"])
    async def test_data_too_deep_or_cyclic_is_refused_clearly_and_nothing_written(
        self, store: EventStore, shape: str
    ) -> None:
        data: Any = 0
        for _ in range(5_000):
            data = {"a": data} if shape == "deep-dict" else [data]
        if shape == "cycle":
            data = {"name": "loop"}
            data["self"] = data
        for events in (
            {"type": "t.x", "data": data},
            [{"type": "t.ok"}, {"type": "t.x", "data": data}],
        ):
            with pytest.raises(SerializationError, match="nested too deeply"):
                await store.append("deep.1", events)
        assert await store.get_stream("deep.1") == []
        assert await store.stream_version("deep.1") is None

    async def test_data_one_level_past_the_limit_is_refused_as_a_read_would_refuse_it(
        self, store: EventStore
    ) -> None:
        """Data as a dict's ``"data"`` nested 254 levels deep (one past MAX_DEPTH, 253)
        passed the append's fast path (orjson writes up to 254 levels) and was stored,
        then every read of its stream, and of the log, failed ("deeper than an event's
        data may be"); ``Event()`` refused it. It is refused, nothing written, and 253
        levels are stored and read back."""

        def nested(levels: int) -> Any:
            value: Any = 0
            for _ in range(levels):
                value = [value]
            return value

        deepest = {"v": nested(MAX_DEPTH - 1)}  # the dict and its lists: 253 levels
        too_deep = {"v": nested(MAX_DEPTH)}
        for events in (
            {"type": "t.x", "data": too_deep},
            {"type": "t.x", "data": nested(MAX_DEPTH + 1)},
            {"type": "t.x", "data": too_deep, "metadata": {"m": 1}},
            [{"type": "t.ok", "data": {}}, {"type": "t.x", "data": too_deep}],
        ):
            with pytest.raises(SerializationError, match="nested too deeply"):
                await store.append("deep.1", events)
        assert await store.get_stream("deep.1") == []
        await store.append("deep.1", {"type": "t.x", "data": deepest})
        await store.append("deep.1", [{"type": "t.x", "data": nested(MAX_DEPTH)}] * 2)
        events = await store.get_stream("deep.1")
        assert [event.data for event in events] == [deepest, *[nested(MAX_DEPTH)] * 2]
        assert len(await store.read_all()) == 3

    # -- soft delete ----------------------------------------------------------------

    async def test_a_deleted_stream_disappears_from_every_read(self, store: EventStore) -> None:
        await store.append("doomed.1", batch(3))
        await store.append("kept.1", batch(1))
        await store.save_snapshot("doomed.1", {"n": 3}, 2)
        assert await store.delete_stream("doomed.1") is True
        assert await store.delete_stream("doomed.1") is False
        assert await store.delete_stream("never.was") is False
        assert await store.get_stream("doomed.1") == []
        assert await store.get_stream("doomed.1", backwards=True) == []
        assert await store.stream_version("doomed.1") is None
        assert await store.streams() == ["kept.1"]
        assert [e.stream for e in await store.read_all()] == ["kept.1"]
        assert await store.load_snapshot("doomed.1") is None

    async def test_appending_to_a_deleted_stream_needs_no_stream(self, store: EventStore) -> None:
        await store.append("doomed.1", batch(3))
        await store.delete_stream("doomed.1")
        for expected in (ANY, STREAM_EXISTS, 2):
            with pytest.raises(StreamDeletedError) as refused:
                await store.append("doomed.1", batch(1), expected_version=expected)
            assert refused.value.written is False  # a refused append wrote nothing
        assert await store.stream_version("doomed.1") is None
        result = await store.append("doomed.1", batch(2, again=True), expected_version=NO_STREAM)
        assert result.next_expected_version == 4  # positions are never reused
        events = await store.get_stream("doomed.1")
        assert [(e.position, e.data["again"]) for e in events] == [(3, True), (4, True)]
        assert await store.stream_version("doomed.1") == 4
        assert await store.get_stream("doomed.1", 0, limit=1) == events[:1]
        assert [e.position for e in await store.get_stream("doomed.1", backwards=True)] == [4, 3]
        await store.append("doomed.1", batch(1), expected_version=4)
        assert await store.streams() == ["doomed.1"]

    async def test_reads_page_past_the_hidden_events_of_deleted_streams(
        self, store: EventStore
    ) -> None:
        await store.append("kept.1", {"type": "first"})
        await store.append("doomed.1", batch(1200))
        await store.delete_stream("doomed.1")
        await store.append("kept.1", {"type": "last"})
        assert [e.type async for e in store.read_all()] == ["first", "last"]
        assert [e.type for e in await store.read_all(limit=2)] == ["first", "last"]

    # -- counting by minute -----------------------------------------------------------

    async def test_count_by_minute_counts_visible_events_by_recorded_minute_and_type(
        self, store: EventStore
    ) -> None:
        minute = 29_000_000  # 2025-02-19T21:20Z, in whole minutes since the epoch
        start = minute * MINUTE  # the first microsecond of that minute
        assert await store.count_by_minute(from_micros(0)) == []  # an empty store
        first = (
            await store.append("a.1", [{"type": "t.x"}] * 2 + [{"type": "t.y"}])
        ).global_position - 2
        times = {first: start - 1, first + 1: start, first + 2: start + MINUTE - 1}
        at = (await store.append("c.1", {"type": "t.x"})).global_position
        times[at] = start + 30_000_000
        # "t.Z" sorts before "t.x" by code point (not in a locale's collation)
        at = (await store.append("b.1", [{"type": "t.x"}, {"type": "t.Z"}])).global_position
        times.update({at - 1: start + MINUTE, at: start + MINUTE + 5})
        at = (await store.append("gone.1", [{"type": "t.x"}, {"type": "t.q"}])).global_position
        times.update({at - 1: start + 10, at: start + MINUTE + 10})  # hidden below
        at = (await store.append("dead.1", {"type": "t.q"})).global_position
        times[at] = start + 20
        at = (await store.append("old.1", {"type": "t.x"})).global_position
        times[at] = 0  # the epoch
        await store.delete_stream("gone.1")
        await store.delete_stream("dead.1")
        at = (
            await store.append("gone.1", {"type": "t.z"}, expected_version=NO_STREAM)
        ).global_position
        times[at] = start + 3 * MINUTE  # minute + 2 has no event
        await record_at(store, times)

        def minutes(*counts: tuple[int, str, int]) -> list[MinuteCount]:
            return [MinuteCount(from_micros(m * MINUTE), t, n) for m, t, n in counts]

        since = datetime(2025, 2, 19, 21, 20, tzinfo=UTC)
        assert since == from_micros(start)
        rest = [
            (minute, "t.y", 1),  # at its last microsecond
            (minute + 1, "t.Z", 1),
            (minute + 1, "t.x", 1),
            (minute + 3, "t.z", 1),  # the restarted stream's; its deleted events are not
        ]
        # at the minute's first microsecond, and 30 s in
        expected = minutes((minute, "t.x", 2), *rest)
        counted = await store.count_by_minute(since)
        assert counted == expected
        assert all(c.minute.tzinfo is UTC and c.minute.second == 0 for c in counted)
        # the same instant in other time zones
        for offset in (timedelta(hours=5, minutes=30), timedelta(hours=-3, minutes=-15)):
            assert await store.count_by_minute(since.astimezone(timezone(offset))) == expected
        # since is inclusive, to the microsecond
        later = await store.count_by_minute(since + timedelta(microseconds=1))
        assert later == minutes((minute, "t.x", 1), *rest)
        earlier = await store.count_by_minute(since - timedelta(microseconds=1))
        assert earlier == minutes((minute - 1, "t.x", 1), (minute, "t.x", 2), *rest)
        # an empty window, and one from before the epoch (everything visible)
        assert await store.count_by_minute(from_micros(start + 3 * MINUTE + 1)) == []
        everything = await store.count_by_minute(datetime(1960, 1, 1, tzinfo=UTC))
        assert everything[0] == MinuteCount(from_micros(0), "t.x", 1)
        assert sum(c.events for c in everything) == len(await store.read_all()) == 8

    async def test_count_by_minute_refuses_a_time_that_is_not_an_aware_datetime(
        self, store: EventStore
    ) -> None:
        with pytest.raises(ValueError, match="since must be timezone-aware"):
            await store.count_by_minute(datetime(2025, 1, 1))
        with pytest.raises(TypeError, match="since must be a datetime, got str"):
            await store.count_by_minute("2025-01-01T00:00Z")  # type: ignore[arg-type]
        await store.close()
        with pytest.raises(ClosedError):
            await store.count_by_minute(datetime.now(UTC))

    # -- subscriptions --------------------------------------------------------------

    async def test_an_idle_subscription_past_deleted_events_waits_instead_of_spinning(
        self, store: EventStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        await store.append("kept.1", {"type": "first"})
        await store.append("doomed.1", batch(3))
        await store.delete_stream("doomed.1")
        subscription = store.subscribe()
        assert (await anext(subscription)).type == "first"
        reads = 0
        original = store.backend.read_all

        async def counting(from_position: int, limit: int) -> Any:
            nonlocal reads
            reads += 1
            return await original(from_position, limit)

        monkeypatch.setattr(store.backend, "read_all", counting)
        pending = asyncio.ensure_future(anext(subscription))
        await asyncio.sleep(0.3)
        assert reads <= 3  # a poll or two (SQLite re-reads every 0.5 s), never a busy loop
        assert subscription.position == 4  # moved past the hidden events
        await store.append("kept.1", {"type": "live"})
        assert (await asyncio.wait_for(pending, 5)).type == "live"

    async def test_subscribe_catches_up_then_follows_live_appends(self, store: EventStore) -> None:
        await store.append("user.1", batch(3))
        seen: list[Event] = []

        async def follow() -> None:
            async for event in store.subscribe():
                seen.append(event)

        task = asyncio.create_task(follow())
        await eventually(lambda: len(seen) == 3)
        await store.append("user.2", batch(2))
        await store.append("user.1", {"type": "late"})
        await eventually(lambda: len(seen) == 6)
        assert [e.global_position for e in seen] == list(range(6))
        assert seen[-1].type == "late" and seen[-1].position == 3
        await store.close()
        await asyncio.wait_for(task, 5)

    async def test_subscribe_filters_and_resumes_from_a_checkpoint(self, store: EventStore) -> None:
        await store.append("user.1", {"type": "user.created"})
        await store.append("order.1", {"type": "order.placed"})
        await store.append("user.1", {"type": "user.renamed"})
        subscription = store.subscribe(streams="user.*")
        first = await anext(subscription)
        second = await anext(subscription)
        assert [first.type, second.type] == ["user.created", "user.renamed"]
        await subscription.aclose()
        assert [e async for e in subscription] == []

        await store.append("order.2", {"type": "order.placed"})
        await store.append("user.3", {"type": "user.created"})
        resumed = store.subscribe(second.global_position + 1, types=["user.*"])
        third = await asyncio.wait_for(anext(resumed), 5)
        assert (third.stream, third.type) == ("user.3", "user.created")
        waiting = asyncio.ensure_future(anext(resumed))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await resumed.aclose()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, 5)

    async def test_closing_the_store_ends_open_subscriptions(self, store: EventStore) -> None:
        subscription = store.subscribe()
        waiting = asyncio.ensure_future(anext(subscription))
        await asyncio.sleep(0.05)
        await store.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, 5)
        assert subscription.closed

    @pytest.mark.parametrize(
        "filters",
        [
            {},
            {"types": "tick"},  # exact type: an index on SQLite and PostgreSQL
            {"types": "tick.#"},  # a prefix
            {"streams": "w.*"},  # a category
            {"streams": ["w.*", "*.never"]},  # a scan
        ],
    )
    async def test_a_subscriber_sees_every_concurrent_append_once_in_order(
        self, store: EventStore, filters: dict[str, Any]
    ) -> None:
        seen: list[Event] = []

        async def follow() -> None:
            async for event in store.subscribe(**filters):
                seen.append(event)

        follower = asyncio.create_task(follow())

        async def writer(worker: int) -> None:
            for n in range(25):
                await store.append(f"w.{worker}", {"type": "tick", "data": {"n": n}})
                # others' events between: a filter has something to leave out
                await store.append(f"noise.{worker}", {"type": "tock", "data": {"n": n}})

        await asyncio.gather(*(writer(worker) for worker in range(8)))
        wanted = 400 if not filters else 200
        await eventually(lambda: len(seen) >= wanted)
        await asyncio.sleep(0.05)
        assert len(seen) == wanted
        assert [e.global_position for e in seen] == sorted({e.global_position for e in seen})
        for worker in range(8):
            mine = [e.data["n"] for e in seen if e.stream == f"w.{worker}"]
            assert mine == list(range(25))
        await store.close()
        await asyncio.wait_for(follower, 5)

    def test_a_subscription_follows_live_appends_on_a_later_event_loop(
        self, store_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # one store used by two event loops in turn (two asyncio.run calls): the live
        # wake-up must not stay bound to the first loop that waited on it
        store = EventStore(store_url)
        waits = announce_waits(store, monkeypatch)

        async def wait_live_then_give_up() -> None:
            started = waits()
            await store.append("loop.1", {"type": "first"})
            subscription = store.subscribe(1)
            pending = asyncio.ensure_future(anext(subscription))
            async with asyncio.timeout(10):
                await started.wait()
                await asyncio.sleep(0.05)  # waiting for good, not just starting to
                await subscription.aclose()
                with pytest.raises(StopAsyncIteration):
                    await pending

        async def follow_live_on_a_new_loop() -> str:
            started = waits()
            try:
                subscription = store.subscribe(1)
                pending = asyncio.ensure_future(anext(subscription))
                async with asyncio.timeout(10):
                    await first_done(pending, started.wait())
                    await store.append("loop.1", {"type": "live"})
                    event = await pending
                await subscription.aclose()
                return event.type
            finally:
                await store.close()

        asyncio.run(wait_live_then_give_up())
        assert asyncio.run(follow_live_on_a_new_loop()) == "live"

    # -- snapshots ------------------------------------------------------------------

    async def test_snapshots_save_load_and_replace(self, store: EventStore) -> None:
        assert await store.load_snapshot("cart.1") is None
        await store.append("cart.1", batch(12))
        await store.save_snapshot("cart.1", {"items": ["a"], "total": 3}, 4)
        snapshot = await store.load_snapshot("cart.1")
        assert isinstance(snapshot, Snapshot)
        assert (snapshot.stream, snapshot.version, snapshot.state) == (
            "cart.1",
            4,
            {"items": ["a"], "total": 3},
        )
        assert snapshot.taken_at.tzinfo is not None
        await store.save_snapshot("cart.1", {"items": []}, 9)
        latest = await store.load_snapshot("cart.1")
        assert latest is not None and (latest.version, latest.state) == (9, {"items": []})
        with pytest.raises(SerializationError):
            await store.save_snapshot("cart.1", {"bad": object()}, 10)
        # a lone surrogate was "cannot encode as JSON: ...", naming no snapshot
        for bad in ({1: "int", "1": "str"}, {"n": {2: "a"}}, {"s": {1, 2}}, {"k": "x\udcff"}):
            with pytest.raises(SerializationError, match="snapshot state"):
                await store.save_snapshot("cart.1", bad, 9)
        with pytest.raises(ValueError):
            await store.save_snapshot("cart.1", {}, -1)
        latest = await store.load_snapshot("cart.1")
        assert latest is not None and latest.version == 9

    async def test_a_snapshot_at_a_position_the_stream_lacks_is_refused(
        self, store: EventStore
    ) -> None:
        # a snapshot past the end would make "read from version + 1" skip events
        await store.append("acct.1", batch(3))
        with pytest.raises(ValueError, match=r"'acct.1' at version 3: .*positions are 0 to 2"):
            await store.save_snapshot("acct.1", {"balance": 3}, 3)
        with pytest.raises(ValueError, match="has no events"):
            await store.save_snapshot("ghost.1", {"balance": 0}, 0)
        assert await store.load_snapshot("acct.1") is None
        assert await store.load_snapshot("ghost.1") is None
        await store.save_snapshot("acct.1", {"balance": 3}, 2)
        await store.append("acct.1", batch(7))
        snapshot = await store.load_snapshot("acct.1")
        assert snapshot is not None and snapshot.version == 2
        assert len(await store.get_stream("acct.1", snapshot.version + 1)) == 7

        await store.delete_stream("acct.1")
        with pytest.raises(ValueError, match="is deleted"):
            await store.save_snapshot("acct.1", {}, 9)
        await store.append("acct.1", batch(2), expected_version=NO_STREAM)  # positions 10, 11
        with pytest.raises(ValueError, match="positions are 10 to 11"):
            await store.save_snapshot("acct.1", {}, 9)  # a position of the deleted events
        await store.save_snapshot("acct.1", {}, 11)
        assert await store.load_snapshot("acct.1") is not None

    async def test_a_snapshot_racing_a_delete_never_outlives_the_stream(
        self, make_store: MakeStore, store_url: str
    ) -> None:
        deleter = make_store()
        saver = deleter if store_url == "memory://" else make_store()
        for n in range(30):
            stream = f"race.{n}"
            await deleter.append(stream, batch(3))
            await asyncio.gather(
                deleter.delete_stream(stream),
                saver.save_snapshot(stream, {"n": n}, 2),
                return_exceptions=True,
            )
            # saved first, the delete drops it; deleted first, the save is refused
            assert await deleter.load_snapshot(stream) is None
            assert await saver.load_snapshot(stream) is None

    # -- upcasting ------------------------------------------------------------------

    async def test_upcasters_chain_on_every_read_path(self, store: EventStore) -> None:
        # versions 1 and 2 are old once the upcasters exist: written before they are
        await store.append("user.1", {"type": "user.created", "data": {"name": "Ada Lovelace"}})
        await store.append(
            "user.2", {"type": "user.created", "version": 2, "data": {"first": "X", "last": "Y"}}
        )

        @store.upcaster("user.created", from_version=1)
        def split_name(data: dict[str, Any]) -> dict[str, Any]:
            first, last = data.pop("name").split(" ")
            return {**data, "first": first, "last": last}

        @store.upcaster("user.created", from_version=2)
        def add_country(data: dict[str, Any]) -> dict[str, Any]:
            return {**data, "country": "BR"}

        assert split_name({"name": "A B"}) == {"first": "A", "last": "B"}  # returned unchanged
        await store.append(
            "user.3", {"type": "user.created", "version": 3, "data": {"country": "PT"}}
        )
        await store.append("user.1", {"type": "user.renamed", "data": {"name": "A B"}})
        (created, renamed) = await store.get_stream("user.1")
        assert created.version == 3
        assert created.data == {"first": "Ada", "last": "Lovelace", "country": "BR"}
        assert renamed.version == 1 and renamed.data == {"name": "A B"}
        everything = await store.read_all(types="user.created")
        assert [e.data.get("country") for e in everything] == ["BR", "BR", "PT"]
        assert all(e.version == 3 for e in everything)
        live = await anext(store.subscribe())
        assert live.version == 3 and live.data["first"] == "Ada"
        with pytest.raises(ConfigurationError):
            store.upcaster("user.created", from_version=1)(lambda data: data)
        with pytest.raises(ValueError):
            store.upcaster("user.created", from_version=0)

    async def test_an_async_upcaster_is_refused_when_registered(self, store: EventStore) -> None:
        async def add_locale(data: dict[str, Any]) -> dict[str, Any]:
            return {**data, "locale": "en"}

        class AsyncCallable:
            async def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
                return data

        for function in (add_locale, AsyncCallable()):
            with pytest.raises(TypeError, match="must be synchronous"):
                store.upcaster("user.created", from_version=1)(function)
        await store.append("user.1", {"type": "user.created", "data": {"name": "Ada"}})
        (event,) = await store.get_stream("user.1")  # nothing was registered
        assert (event.version, event.data) == (1, {"name": "Ada"})

    @pytest.mark.parametrize("pattern", ["order.*", "order.#", "#", "*.placed"])
    def test_a_pattern_as_upcaster_type_is_refused(self, store: EventStore, pattern: str) -> None:
        with pytest.raises(PatternError, match=r"event_type=.*not a pattern") as caught:
            store.upcaster(pattern, from_version=1)
        assert caught.value.pattern == pattern
        assert isinstance(caught.value, ValueError)

    @pytest.mark.parametrize(
        "event_type", ["order.created ", "Order Created", "a..b", ".o", "o\x00"]
    )
    def test_an_upcaster_for_a_type_no_event_can_have_is_refused(
        self, store: EventStore, event_type: str
    ) -> None:
        # append refuses such types, so the function could never run
        with pytest.raises(PatternError) as caught:
            store.upcaster(event_type, from_version=1)
        assert caught.value.pattern == event_type

    async def test_a_failing_upcaster_names_the_event_on_every_read_path(
        self, store: EventStore
    ) -> None:
        await store.append("user.1", {"type": "user.created", "id": "u-1", "data": {}})

        @store.upcaster("user.created", from_version=1)
        def rename(data: dict[str, Any]) -> dict[str, Any]:
            return {**data, "full_name": data["name"]}

        reads: list[Callable[[], Awaitable[Any]]] = [
            lambda: store.get_stream("user.1"),
            lambda: store.read_all(),
            lambda: anext(store.subscribe()),
        ]
        for read in reads:
            with pytest.raises(StoreError) as caught:
                await read()
            message = str(caught.value)
            assert "'u-1'" in message and "'user.created'" in message
            assert "version 1" in message and "KeyError" in message
            assert isinstance(caught.value.__cause__, KeyError)

    async def test_a_subscription_stays_on_an_event_it_failed_to_decode(
        self, store: EventStore
    ) -> None:
        """docs/store.md: ``position`` is the next global position a subscription reads,
        and it never skips an event. It moved past an event whose upcaster raised, so
        iterating again, or resuming from ``position`` once the upcaster was fixed,
        silently skipped that event."""
        broken = {1}
        await store.append("order.1", batch(3, "order.placed"))

        @store.upcaster("order.placed", from_version=1)
        def upcast(data: dict[str, Any]) -> dict[str, Any]:
            if data["n"] in broken:
                raise RuntimeError("upcaster bug")
            return {**data, "v": 2}

        subscription = store.subscribe(0)
        assert (await anext(subscription)).global_position == 0
        assert subscription.position == 1
        for _ in range(2):  # iterating again fails on the same event, it is not passed over
            with pytest.raises(StoreError, match="upcaster bug"):
                await anext(subscription)
            assert subscription.position == 1
        resumed = store.subscribe(subscription.position)
        with pytest.raises(StoreError, match="upcaster bug"):
            await anext(resumed)
        broken.clear()  # the upcaster is fixed: both read on from the failed event
        assert [(await anext(subscription)).global_position for _ in range(2)] == [1, 2]
        assert subscription.position == 3
        assert [(await anext(resumed)).data["n"] for _ in range(2)] == [1, 2]

    @pytest.mark.parametrize(
        "read",
        ["get_stream", "get_stream_limit", "get_stream_backwards", "read_all", "read_all_types"],
    )
    async def test_a_reader_reads_a_page_it_failed_to_decode_again(
        self, store: EventStore, read: str
    ) -> None:
        """``async for`` over a reader moved its cursor (and its limit) past a page
        before decoding it: once an upcaster raised there, the next step ended the
        iteration or read the next page, and the page's events were never yielded."""
        broken = {0, 599}
        await store.append("order.1", batch(600, "order.placed"))  # two pages of 500

        @store.upcaster("order.placed", from_version=1)
        def upcast(data: dict[str, Any]) -> dict[str, Any]:
            if data["n"] in broken:
                raise RuntimeError("upcaster bug")
            return data

        readers = {
            "get_stream": lambda: store.get_stream("order.1"),
            "get_stream_limit": lambda: store.get_stream("order.1", limit=600),
            "get_stream_backwards": lambda: store.get_stream("order.1", backwards=True),
            "read_all": lambda: store.read_all(0),
            "read_all_types": lambda: store.read_all(0, types="order.*"),
        }
        # (the failing event of each page, the page's size), in reading order
        pages = [(0, 500), (599, 100)] if read != "get_stream_backwards" else [(599, 500), (0, 100)]
        events = aiter(readers[read]())
        seen: list[int] = []
        for failing, size in pages:
            for _ in range(2):  # the same page fails again, it is not passed over
                with pytest.raises(StoreError, match="upcaster bug"):
                    await anext(events)
            broken.discard(failing)
            seen += [(await anext(events)).data["n"] for _ in range(size)]
        with pytest.raises(StopAsyncIteration):
            await anext(events)
        assert sorted(seen) == list(range(600))

    async def test_an_upcaster_returning_an_awaitable_or_no_json_names_the_event(
        self, store: EventStore
    ) -> None:
        async def later(data: Any) -> Any:
            return data

        await store.append(
            "t.1", [{"type": "t.async", "id": "a-1"}, {"type": "t.set", "id": "s-1"}]
        )
        store.upcaster("t.async", from_version=1)(lambda data: later(data))
        store.upcaster("t.set", from_version=1)(lambda data: {"tags": {1, 2}})
        with pytest.raises(StoreError, match="'a-1'.*must be synchronous"):
            await store.get_stream("t.1", limit=1)
        with pytest.raises(SerializationError, match="'s-1'.*'t.set'.*version 1.*not JSON"):
            await store.get_stream("t.1", 1)

    # -- appending next to upcasters ------------------------------------------------

    @staticmethod
    def _deposits_upcast(store: EventStore) -> None:
        """Release 1's ``account.deposited`` said ``value``; version 2 says ``amount_cents``."""

        @store.upcaster("account.deposited", from_version=1)
        def value_to_cents(data: dict[str, Any]) -> dict[str, Any]:
            return {"amount_cents": round(data["value"] * 100)}

    async def test_an_event_older_than_its_types_upcasters_is_refused(
        self, store: EventStore
    ) -> None:
        """New code that forgot ``version=2`` stored a version-1 event that its upcaster
        then failed on (KeyError 'value') on every read, subscriptions included, for
        good: the store now refuses it, saying which version to build it with."""
        self._deposits_upcast(store)
        for stale in (
            Event("account.deposited", {"amount_cents": 300}),  # Event's default version
            {"type": "account.deposited", "data": {"amount_cents": 300}},  # the dict form's
            {"type": "account.deposited", "version": 1, "data": {"amount_cents": 300}},
        ):
            with pytest.raises(ValidationError) as caught:
                await store.append("account.a", stale)
            message = str(caught.value)
            assert "'account.deposited'" in message and "version=2" in message
            assert "version-1 event" in message and "no upcasters" in message
            assert caught.value.event_type == "account.deposited"
            assert [(p.path, p.actual) for p in caught.value.errors] == [("$.version", "1")]
        assert await store.stream_version("account.a") is None
        assert await store.head() is None

    async def test_a_batch_with_one_old_event_writes_nothing(self, store: EventStore) -> None:
        self._deposits_upcast(store)
        await store.append("account.a", Event("account.opened", {}))
        good = Event("account.deposited", {"amount_cents": 1}, version=2)
        events = [
            good,
            Event("account.noted", {"text": "no upcasters: version 1 is current"}),
            Event("account.deposited", {"amount_cents": 2}),  # the stale one
            Event("account.deposited", {"amount_cents": 3}, version=3),
        ]
        for expected in (ANY, 0):
            with pytest.raises(ValidationError) as caught:
                await store.append("account.a", events, expected_version=expected)
            assert [(p.path, p.actual) for p in caught.value.errors] == [("$[2].version", "1")]
        assert await store.stream_version("account.a") == 0
        assert await store.head() == 0
        assert [e.type for e in await store.get_stream("account.a")] == ["account.opened"]
        # several stale events, of several types: all named
        store.upcaster("account.noted", 1, lambda data: data)
        with pytest.raises(ValidationError) as caught:
            await store.append("account.a", events)
        assert caught.value.event_type is None
        assert [p.path for p in caught.value.errors] == ["$[1].version", "$[2].version"]
        assert await store.head() == 0

    async def test_current_and_newer_versions_and_types_without_upcasters_are_accepted(
        self, store: EventStore
    ) -> None:
        self._deposits_upcast(store)
        await store.append("account.a", Event("account.deposited", {"amount_cents": 1}, version=2))
        await store.append(  # a newer producer than this reader: stored and read as it is
            "account.a", {"type": "account.deposited", "version": 3, "data": {"cents": 2}}
        )
        await store.append(
            "account.a", [Event("account.opened", {}), {"type": "account.noted", "data": {}}]
        )
        read = [(e.type, e.version, dict(e.data)) for e in await store.get_stream("account.a")]
        assert read == [
            ("account.deposited", 2, {"amount_cents": 1}),
            ("account.deposited", 3, {"cents": 2}),
            ("account.opened", 1, {}),
            ("account.noted", 1, {}),
        ]

    async def test_old_events_are_imported_through_a_store_without_upcasters(
        self, store: EventStore, store_url: str, make_store: MakeStore
    ) -> None:
        """The legitimate ways to write old versions: before the upcasters are
        registered, or through a store that has none (on the same URL; on the same
        backend object for ``memory://``, whose data is the object's)."""
        await store.append("account.a", Event("account.deposited", {"value": 1.5}))
        self._deposits_upcast(store)
        shared = store_url != "memory://"
        importer = make_store() if shared else EventStore(store.backend)  # closed with it
        await importer.append("account.b", Event("account.deposited", {"value": 2.25}))
        await store.append("account.b", Event("account.deposited", {"amount_cents": 5}, version=2))
        read = [(e.stream, e.version, dict(e.data)) for e in await store.read_all()]
        assert read == [
            ("account.a", 2, {"amount_cents": 150}),
            ("account.b", 2, {"amount_cents": 225}),
            ("account.b", 2, {"amount_cents": 5}),
        ]

    # -- concurrency ----------------------------------------------------------------

    async def test_twenty_tasks_times_fifty_appends(self, store: EventStore) -> None:
        async def worker(number: int) -> list[AppendResult]:
            results = []
            for _ in range(50):
                stream = f"load.{number % 5}"
                results.append(await store.append(stream, {"type": "t", "data": {"w": number}}))
            return results

        results = [r for rs in await asyncio.gather(*(worker(i) for i in range(20))) for r in rs]
        positions = sorted(r.global_position for r in results)
        assert positions == list(range(1000))
        everything = await store.read_all()
        assert [e.global_position for e in everything] == list(range(1000))
        for index in range(5):
            stream = await store.get_stream(f"load.{index}")
            assert [e.position for e in stream] == list(range(200))

    async def test_racing_on_one_expected_version_exactly_one_wins(self, store: EventStore) -> None:
        await store.append("race.1", {"type": "start"})

        async def contender(number: int) -> AppendResult | ConcurrencyError:
            try:
                return await store.append(
                    "race.1", {"type": "move", "data": {"by": number}}, expected_version=0
                )
            except ConcurrencyError as exc:
                return exc

        # other streams' appends in the same moment must not be hurt by the losers
        outcomes, others = await asyncio.gather(
            asyncio.gather(*(contender(n) for n in range(10))),
            asyncio.gather(*(store.append(f"bystander.{n}", {"type": "t"}) for n in range(10))),
        )
        winners = [o for o in outcomes if isinstance(o, AppendResult)]
        losers = [o for o in outcomes if isinstance(o, ConcurrencyError)]
        assert len(winners) == 1 and len(losers) == 9
        assert all(loser.actual == 1 for loser in losers)
        assert len(others) == 10
        assert await store.stream_version("race.1") == 1

    async def test_an_append_cancelled_before_the_writer_takes_it_is_not_written(
        self, store: EventStore
    ) -> None:
        # a backend either finishes an append before its caller can be cancelled (memory:
        # no await inside) or only hands it to a writer, which skips it if its caller was
        # cancelled before the writer took it; either way, the caller's outcome is the truth
        await store.append("warm.1", {"type": "t"})
        cancelled_one = Event("order.placed", {"n": 1})
        doomed = asyncio.ensure_future(store.append("order.1", cancelled_one))
        kept = asyncio.ensure_future(store.append("order.2", {"type": "order.placed"}))
        await asyncio.sleep(0)  # both calls run up to their first wait, if they have one
        doomed.cancel()
        await asyncio.wait_for(asyncio.wait((doomed, kept)), 10)
        assert (await kept).next_expected_version == 0
        written = [event.id for event in await store.get_stream("order.1")]
        assert written == ([] if doomed.cancelled() else [cancelled_one.id])
        # a retry with the same event is stored once, whatever happened to the first try
        await store.append("order.1", cancelled_one)
        assert [event.id for event in await store.get_stream("order.1")] == [cancelled_one.id]

    # -- lifecycle ------------------------------------------------------------------

    async def test_a_closed_store_refuses_work(self, make_store: MakeStore) -> None:
        async with make_store() as store:
            await store.append("x.1", {"type": "t"})
        assert store.closed
        with pytest.raises(ClosedError):
            await store.append("x.1", {"type": "t"})
        with pytest.raises(ClosedError):
            await store.get_stream("x.1")
        with pytest.raises(ClosedError):
            store.subscribe()
        await store.close()  # idempotent

    @pytest.mark.parametrize("count", [20, 1001, 1500])
    async def test_close_commits_every_append_queued_before_it(
        self, make_store: MakeStore, store_url: str, count: int
    ) -> None:
        # more appends than one group holds (PostgreSQL: 512, SQLite: 1024), or a
        # group the SQLite writer splits in two: close must wait for all, losing none
        store = make_store()
        await store.append("warm.1", {"type": "t"})
        calls = [
            asyncio.ensure_future(store.append(f"queued.{n % 10}", {"type": "t", "data": {"n": n}}))
            for n in range(count)
        ]
        await asyncio.sleep(0)  # every call is queued; few or none are written yet
        async with asyncio.timeout(30):
            await store.close()
            results = await asyncio.gather(*calls)
        assert sorted(result.global_position for result in results) == list(range(1, count + 1))
        if store_url != "memory://":
            reopened = make_store()
            assert len(await reopened.read_all()) == count + 1

    async def test_leaving_async_with_commits_every_queued_append(
        self, make_store: MakeStore, store_url: str
    ) -> None:
        async with asyncio.timeout(30):
            async with make_store() as store:
                await store.append("warm.1", {"type": "t"})
                calls = [
                    asyncio.ensure_future(store.append(f"queued.{n % 7}", {"type": "t"}))
                    for n in range(1200)
                ]
                await asyncio.sleep(0)
            results = await asyncio.gather(*calls)
        assert len({result.global_position for result in results}) == 1200
        if store_url != "memory://":
            assert len(await make_store().read_all()) == 1201

    async def test_a_reader_made_before_close_fails_cleanly(self, store: EventStore) -> None:
        await store.append("x.1", {"type": "t"})
        reader = store.get_stream("x.1")
        await store.close()
        with pytest.raises(ClosedError):
            await reader
