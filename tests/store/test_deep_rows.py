"""A stored row nested deeper than an event may be reads as a clear error naming it.

Rows come from other programs too (a migration script, another client of the database).
orjson reads JSON up to 1,024 levels deep; this library never writes data or metadata
more than ``MAX_DEPTH`` levels deep, and refuses such an event when it is made. A row
deeper than that read back as an event anyway (one no store or transport could write
again), or, deeper than orjson reads, as "not valid JSON". Now every reader (get_stream,
read_all, a subscription) gets a :class:`SerializationError` naming the event, its stream
and position, and a subscription stays on that event, as for any row it cannot decode.

The rows are changed in place with SQL, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest

from pepperpy.event import EventStore, SerializationError
from pepperpy.event._frozen import MAX_DEPTH
from tests.conftest import unique_name

#: (event id, column, JSON bytes): puts the bytes in that column of that event's row
Overwrite = Callable[[str, str, bytes], Awaitable[None]]


def deep_json(depth: int, shape: str = "dict") -> bytes:
    """JSON nested ``depth`` levels deep, written by hand (orjson writes at most 254)."""
    opening, closing = ("[", "]") if shape == "list" else ('{"a":', "}")
    return (opening * depth + "1" + closing * depth).encode()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/events.db"
    database = request.getfixturevalue("database")  # one per module: tests/store/conftest.py
    return f"{database}?schema={unique_name('s')}"


@pytest.fixture
async def store_and_overwrite(store_url: str) -> AsyncIterator[tuple[EventStore, Overwrite]]:
    if store_url.startswith("sqlite:///"):
        path = store_url.removeprefix("sqlite:///")

        async def overwrite(event_id: str, column: str, value: bytes) -> None:
            connection = sqlite3.connect(path)
            try:
                with connection:
                    connection.execute(
                        f"UPDATE events SET {column} = ? WHERE id = ?", (value, event_id)
                    )
            finally:
                connection.close()

    else:
        import asyncpg

        database, schema = store_url.split("?schema=")

        async def overwrite(event_id: str, column: str, value: bytes) -> None:
            connection = await asyncpg.connect(database)
            try:
                await connection.execute(
                    f'UPDATE "{schema}".pepperpy_events SET {column} = $1 WHERE id = $2',
                    value,
                    event_id,
                )
            finally:
                await connection.close()

    store = EventStore(store_url)
    try:
        yield store, overwrite
    finally:
        await store.close()


#: how every error names the row changed: the event, its stream and position
NAMED = "stored event 'bad-1' in 'deep.1' (position 1)"


async def three_events(store: EventStore) -> None:
    await store.append(
        "deep.1",
        [
            {"type": "t", "id": "ok-0", "data": {"n": 0}},
            {"type": "t", "id": "bad-1", "data": {"n": 1}, "metadata": {"m": 1}},
            {"type": "t", "id": "ok-2", "data": {"n": 2}},
        ],
    )


async def every_reader_refuses(store: EventStore, message: str) -> None:
    """get_stream, read_all and a subscription all fail on the row with ``message``; the
    subscription delivers the event before it, then stays on the bad one."""
    for read in (store.get_stream("deep.1"), store.read_all()):
        with pytest.raises(SerializationError) as caught:
            await read
        assert str(caught.value) == message
    subscription = store.subscribe()
    try:
        assert (await asyncio.wait_for(anext(subscription), 10)).id == "ok-0"
        for _ in range(2):  # tried again: the same answer, never skipped
            with pytest.raises(SerializationError) as caught:
                await asyncio.wait_for(anext(subscription), 10)
            assert str(caught.value) == message
            assert subscription.position == 1
    finally:
        await subscription.aclose()


@pytest.mark.parametrize("shape", ["dict", "list"])
async def test_data_one_level_deeper_than_an_event_holds_is_refused_by_every_reader(
    store_and_overwrite: tuple[EventStore, Overwrite], shape: str
) -> None:
    store, overwrite = store_and_overwrite
    await three_events(store)
    await overwrite("bad-1", "data", deep_json(MAX_DEPTH + 1, shape))
    await every_reader_refuses(
        store,
        f"{NAMED}: data is nested more than {MAX_DEPTH} levels of lists and "
        "objects deep, deeper than an event's data may be",
    )
    await overwrite("bad-1", "data", deep_json(MAX_DEPTH, shape))  # as deep as may be
    events = await store.get_stream("deep.1")
    assert [event.id for event in events] == ["ok-0", "bad-1", "ok-2"]
    assert events[1].data == orjson.loads(deep_json(MAX_DEPTH, shape))


async def test_metadata_deeper_than_an_event_holds_is_refused_by_every_reader(
    store_and_overwrite: tuple[EventStore, Overwrite],
) -> None:
    store, overwrite = store_and_overwrite
    await three_events(store)
    await overwrite("bad-1", "metadata", b'{"m":' + deep_json(MAX_DEPTH, "list") + b"}")
    await every_reader_refuses(
        store,
        f"{NAMED}: metadata is nested more than {MAX_DEPTH} levels of lists "
        "and objects deep, deeper than an event's metadata may be",
    )
    await overwrite("bad-1", "metadata", b'{"m":' + deep_json(MAX_DEPTH - 1, "list") + b"}")
    events = await store.get_stream("deep.1")
    assert events[1].metadata == {"m": orjson.loads(deep_json(MAX_DEPTH - 1, "list"))}


@pytest.mark.parametrize("column", ["data", "metadata"])
@pytest.mark.parametrize("depth", [1_025, 100_000])
async def test_a_row_deeper_than_json_is_read_says_it_is_nested_too_deeply(
    store_and_overwrite: tuple[EventStore, Overwrite], column: str, depth: int
) -> None:
    store, overwrite = store_and_overwrite
    await three_events(store)
    await overwrite("bad-1", column, deep_json(depth))
    with pytest.raises(SerializationError) as caught:
        await store.get_stream("deep.1")
    assert str(caught.value).startswith(
        f"{NAMED} is nested too deeply to read (an event's data and metadata hold "
        f"at most {MAX_DEPTH} levels of lists and objects): depth limit exceeded"
    )
