"""Fixtures shared by the replay and projection tests."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """An event store URL of each SQL backend: an SQLite file, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_url
    value: str = request.getfixturevalue("postgres_url")
    return value
