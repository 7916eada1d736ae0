"""Store URL schemes are matched without regard to case (RFC 3986), for every backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from pepperpy.event import ConfigurationError, EventReplay, EventStore
from pepperpy.event._checkpoints import (
    MemoryCheckpointStore,
    PostgresCheckpointStore,
    SQLiteCheckpointStore,
    open_checkpoint_store,
)
from pepperpy.event.store.memory import MemoryBackend
from pepperpy.event.store.postgres import PostgresBackend
from pepperpy.event.store.sqlite import SQLiteBackend


@pytest.mark.parametrize("url", ["MEMORY://", "Memory://", "memory:", "MEMORY:", "mEmOrY://"])
def test_memory_urls_in_any_case(url: str) -> None:
    """``MEMORY://`` was refused as an unknown scheme while ``SQLITE://`` worked."""
    assert isinstance(EventStore(url).backend, MemoryBackend)
    assert isinstance(open_checkpoint_store(url), MemoryCheckpointStore)


@pytest.mark.parametrize("url", ["MEMORY://events", "memory://x", "Memory:/x"])
def test_a_memory_url_with_an_address_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="takes no address"):
        EventStore(url)


@pytest.mark.parametrize("scheme", ["SQLITE", "SQLite", "sqlite"])
async def test_sqlite_urls_in_any_case(tmp_path: Path, scheme: str) -> None:
    url = f"{scheme}:///{tmp_path}/events.db?busy_timeout=5"
    async with EventStore(url) as store:
        assert isinstance(store.backend, SQLiteBackend)
        await store.append("user.1", {"type": "user.created"})
    assert isinstance(open_checkpoint_store(url), SQLiteCheckpointStore)
    async with EventStore(f"sqlite:///{tmp_path}/events.db") as again:
        assert [event.type for event in await again.get_stream("user.1")] == ["user.created"]


@pytest.mark.parametrize("scheme", ["POSTGRESQL", "PostgreSQL", "POSTGRES", "Postgres"])
def test_postgresql_urls_in_any_case(scheme: str) -> None:
    store = EventStore(f"{scheme}://app@db.example:5432/events")
    assert isinstance(store.backend, PostgresBackend)
    # the backend gets the URL with its scheme in lower case, as asyncpg documents it
    assert store.backend.url == f"{scheme.lower()}://app@db.example:5432/events"
    checkpoints = open_checkpoint_store(f"{scheme}://app@db.example:5432/events")
    assert isinstance(checkpoints, PostgresCheckpointStore)


async def test_a_replay_with_checkpoints_on_an_upper_case_memory_store() -> None:
    """The replay opens its checkpoints from the store's URL as the user wrote it."""
    async with EventStore("MEMORY://") as store:
        await store.append("user.1", {"type": "user.created"})
        seen: list[str] = []
        async with EventReplay(store) as replay:
            replay.handle("#", lambda event: seen.append(event.type))
            report = await replay.replay_all(checkpoint="upper")
        assert seen == ["user.created"] and report.replayed == 1


@pytest.mark.postgres
async def test_an_upper_case_postgresql_url_reaches_the_database(postgres_url: str) -> None:
    url = postgres_url.replace("postgresql://", "POSTGRESQL://")
    async with EventStore(url) as store:
        await store.append("user.1", {"type": "user.created"})
        assert await store.stream_version("user.1") == 0
