"""The bus over NATS JetStream: the conformance suite plus what only a broker shows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from pepperpy.event import Transport
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.conformance import BusConformance
from tests.conftest import unique_name

pytestmark = pytest.mark.nats


async def delete_stream(url: str, stream: str) -> None:
    """Remove a test's stream (and with it every consumer on it)."""
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
async def namespace(nats_url: str) -> AsyncIterator[dict[str, str]]:
    """A stream and subject prefix of its own for one test, deleted afterwards."""
    name = unique_name("pep")
    yield {"stream": name.upper(), "prefix": name}
    await delete_stream(nats_url, name.upper())


class TestNatsBus(BusConformance):
    @pytest.fixture
    def transport_factory(
        self, nats_url: str, namespace: dict[str, str]
    ) -> Callable[[], Transport | str]:
        return lambda: NatsTransport(nats_url, ack_wait=5.0, **namespace)


class TestNatsBusFromUrl(BusConformance):
    @pytest.fixture
    def transport_factory(
        self, nats_url: str, namespace: dict[str, str]
    ) -> Callable[[], Transport | str]:
        query = "&".join(f"{k}={v}" for k, v in namespace.items())
        return lambda: f"{nats_url}?{query}"
