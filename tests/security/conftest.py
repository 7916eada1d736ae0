"""Fixtures shared by the security tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def url(any_store_url: str) -> str:
    """A store URL of each backend (``any_store_url``): memory, SQLite, PostgreSQL.

    A test module that defines its own ``url`` (fewer backends, say) uses that one.
    """
    return any_store_url
