"""A password in a store or checkpoint store URL never reaches an error message, even
when the URL is refused before it is parsed as the backend's (a wrong scheme, a
SQLAlchemy-style ``postgresql+asyncpg://``, an SQLite URL with a host)."""

from __future__ import annotations

import traceback

import pytest

from pepperpy.event import ConfigurationError, EventStore
from pepperpy.event._checkpoints import open_checkpoint_store
from pepperpy.event.store import copy_store

SECRET = "S3cretPw9"

URLS = [
    f"postgresql+asyncpg://app:{SECRET}@db.internal/events",
    f"mysql://root:{SECRET}@db.internal/events",
    f"redis://:{SECRET}@cache.internal:6379/0",
    f"memory://app:{SECRET}@somewhere",
    f"sqlite://app:{SECRET}@host/events.db",
    f"sqlite:///events.db?create=maybe&password={SECRET}",
    f"sqlite:///events.db?password={SECRET}",
]


def shown(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


@pytest.mark.parametrize("url", URLS)
def test_a_refused_store_url_is_named_without_its_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        EventStore(url)
    assert SECRET not in shown(refused.value)
    assert "***" in str(refused.value)


@pytest.mark.parametrize("url", URLS)
def test_a_refused_checkpoint_store_url_is_named_without_its_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        open_checkpoint_store(url)
    assert SECRET not in shown(refused.value)
    assert "***" in str(refused.value)


async def test_a_copy_from_a_refused_url_is_named_without_its_password() -> None:
    with pytest.raises(ConfigurationError) as refused:
        await copy_store(URLS[0], "memory://")
    assert SECRET not in shown(refused.value)
