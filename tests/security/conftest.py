"""Fixtures shared by the security tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL of each backend: in memory, a SQLite file of the test's own, and a
    fresh PostgreSQL database (``postgres_url``, dropped after the test).

    A test module that defines its own ``url`` (fewer backends, say) uses that one.
    """
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    postgres: str = request.getfixturevalue("postgres_url")
    return postgres
