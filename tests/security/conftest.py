"""Fixtures shared by the security tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pepperpy.event.security import KeyStore, MemoryKeyStore, PostgresKeyStore, SQLiteKeyStore


@pytest.fixture
def url(any_store_url: str) -> str:
    """A store URL of each backend (``any_store_url``): memory, SQLite, PostgreSQL.

    A test module that defines its own ``url`` (fewer backends, say) uses that one.
    """
    return any_store_url


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def key_store_place(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """Where ``key_store`` keeps its keys: None (memory), a SQLite file of the test's
    own, or a fresh PostgreSQL database (``postgres_url``, dropped after the test)."""
    if request.param == "memory":
        return None
    if request.param == "sqlite":
        return str(tmp_path / "keys.db")
    postgres: str = request.getfixturevalue("postgres_url")
    return postgres


@pytest.fixture
async def key_store(key_store_place: str | None) -> AsyncIterator[KeyStore]:
    """A key store of each kind (``key_store_place``), closed after the test. Every test
    taking it is part of the key store contract's conformance suite: one suite, every
    backend (memory, SQLite, PostgreSQL)."""
    store: KeyStore
    if key_store_place is None:
        store = MemoryKeyStore()
    elif key_store_place.startswith("postgresql://"):
        store = PostgresKeyStore(key_store_place)
    else:
        store = SQLiteKeyStore(key_store_place)
    try:
        yield store
    finally:
        await store.close()
