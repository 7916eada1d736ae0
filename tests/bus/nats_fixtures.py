"""Fixtures the NATS tests share: a stream and subject prefix of the test's own, and a
plain nats-py JetStream context to look at (or change) what the server keeps.

Named ``nats_namespace`` and ``nats_jetstream``: ``tests/bus/conftest.py`` has a Redis
``namespace`` and makes these two available to every bus test module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import unique_name

__all__ = ["delete_stream", "nats_jetstream", "nats_namespace"]


async def delete_stream(url: str, stream: str) -> None:
    """Remove a test's stream (and with it every consumer on it); none is no error."""
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(url)
    try:
        try:
            await nc.jetstream().delete_stream(stream)
        except NotFoundError:
            pass
    finally:
        await nc.close()


@pytest.fixture
async def nats_namespace(nats_url: str) -> AsyncIterator[dict[str, str]]:
    """A stream and subject prefix of the test's own (``{"stream": ..., "prefix": ...}``,
    as the transport's keywords), the stream deleted afterwards."""
    name = unique_name("pep")
    yield {"stream": name.upper(), "prefix": name}
    await delete_stream(nats_url, name.upper())


@pytest.fixture
async def nats_jetstream(nats_url: str) -> AsyncIterator[Any]:
    """A plain nats-py JetStream context on the shared server, closed afterwards."""
    import nats

    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()
