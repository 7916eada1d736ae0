"""NATS: ``health()`` says why the server is out of reach (``outage_reason``).

Before, a password changed under a running service and a network outage looked the
same in ``health()``: ``outage`` set, ``ready`` False. Now ``outage_reason`` is
``"credentials refused"`` for the one and ``"unreachable"`` for the other, with a
message for a person (``outage_message``, the URL's password hidden), and both are None
again once the connection is back.

The credentials test starts a nats-server of its own with a user and password (see
``tests/bus/credentials.py``); the transport reaches it through the fault proxy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pepperpy.event import EventBus
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.credentials import AuthServer, nats_server, network_outage
from tests.bus.faultproxy import FaultProxy, finishes
from tests.helpers import eventually

pytestmark = pytest.mark.nats


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[AuthServer]:
    async with nats_server(tmp_path, "s3cret-one") as made:
        yield made


@pytest.mark.flaky(reruns=2)
async def test_refused_credentials_are_the_reason_until_they_work_again(
    server: AuthServer,
) -> None:
    async with FaultProxy(server.port) as proxy:
        transport = NatsTransport(
            f"nats://app:s3cret-one@127.0.0.1:{proxy.port}", stream="CREDS", reconnect_wait=0.2
        )
        bus = EventBus(transport=transport)
        bus.subscribe("jobs.*")(lambda event: None)
        try:
            async with bus:
                assert bus.health().outage_reason is None
                server.change_password("s3cret-two")  # the server disconnects the client
                await eventually(
                    lambda: bus.health().outage_reason == "credentials refused", timeout=20
                )
                health = bus.health()
                assert not health.ready and health.outage is not None
                assert health.outage_message == (
                    f"NATS at nats://app:***@127.0.0.1:{proxy.port} refuses the transport's "
                    "credentials (nats: 'Authorization Violation')"
                )
                server.change_password("s3cret-one")
                await eventually(lambda: bus.health().ready, timeout=30)
                health = bus.health()
                assert health.outage_reason is None and health.outage_message is None
        finally:
            await finishes(transport.close(), 15)


@pytest.mark.flaky(reruns=2)
async def test_a_network_outage_is_unreachable_until_the_connection_is_back(
    proxy: FaultProxy, nats_through_proxy: Callable[..., NatsTransport]
) -> None:
    transport = nats_through_proxy()
    bus = EventBus(transport=transport)
    bus.subscribe("jobs.*")(lambda event: None)
    shown = f"NATS at nats://127.0.0.1:{proxy.port}"
    try:
        async with bus:
            await network_outage(bus, proxy, lambda message: shown in message)
    finally:
        proxy.heal()
        await finishes(transport.close(), 15)
