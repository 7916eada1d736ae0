"""Fixtures shared by the bus tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import Event
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys

#: a body the patched decoder fails on with something other than SerializationError
TRAP = b'{"trap": true}'


@pytest.fixture
def decoder_that_breaks(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Event.from_json`` fails on :data:`TRAP` as a decoder bug would (RecursionError)."""
    real = Event.from_json

    def from_json(data: Any) -> Event:
        if bytes(data) == TRAP:
            raise RecursionError("maximum recursion depth exceeded")
        return real(data)

    monkeypatch.setattr(Event, "from_json", staticmethod(from_json))


@pytest.fixture
async def namespace(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A Redis key namespace of this test's own (named after its module), deleted after it.
    The NATS and conformance modules define their own ``namespace``."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_redis_")
    name = unique_name(f"pep{module.replace('_', '')}")
    yield name
    await delete_redis_keys(redis_url, f"{name}:*")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Any]:
    """A plain redis-py client (decode_responses off), closed after the test."""
    import redis.asyncio as aioredis

    connection = aioredis.Redis.from_url(redis_url)
    yield connection
    await connection.aclose()
