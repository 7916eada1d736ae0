"""A NATS server's auth token: given as ``nats://TOKEN@host`` or ``?token=``, never shown.

nats-py sends the user part of a URL without a password as the auth token; the query's
``token=`` is the other way to give it (a secret kept out of the authority, e.g. from an
environment variable appended to the URL). Either way the token is a secret: a repr,
``health()``, a log line or an error shows ``***`` instead, as for a password.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from pepperpy.event import ConfigurationError, Event, EventBus, TransportError
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.test_nats import NATS_SERVER, PrivateNats
from tests.helpers import eventually

TOKEN = "s3cretT0ken"

pytestmark = pytest.mark.nats


@pytest.fixture
def token_nats(tmp_path: Path) -> Iterator[PrivateNats]:
    if not Path(NATS_SERVER).exists():
        pytest.skip("nats-server is not installed")
    server = PrivateNats(tmp_path / "jetstream", "--auth", TOKEN)
    server.start()
    yield server
    server.kill()


@pytest.mark.parametrize("form", ["query", "authority"])
async def test_a_token_gets_in_and_is_never_shown(
    token_nats: PrivateNats, form: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pepperpy.event")
    host = token_nats.url.removeprefix("nats://")
    url = (
        f"nats://{host}?token={TOKEN}&stream=TOKENS&prefix=tokens"
        if form == "query"
        else f"nats://{TOKEN}@{host}?stream=TOKENS&prefix=tokens"
    )
    bus = EventBus(transport=url)
    seen: list[object] = []
    bus.subscribe("a.*")(lambda event: seen.append(event.data))
    async with bus:
        await bus.publish("a.b", Event("a.b", 1))
        await eventually(lambda: seen == [1])
        assert TOKEN not in bus.health().transport and TOKEN not in repr(bus.transport)
    assert TOKEN not in caplog.text


async def test_a_wrong_token_fails_start_without_showing_it(
    token_nats: PrivateNats, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pepperpy.event")
    host = token_nats.url.removeprefix("nats://")
    for url in (
        f"nats://{host}?token=wr0ngT0ken&connect_timeout=1",
        f"nats://wr0ngT0ken@{host}?connect_timeout=1",
    ):
        bus = EventBus(transport=url)
        with pytest.raises(TransportError) as caught:
            await bus.start()
        await bus.close()
        assert "wr0ngT0ken" not in str(caught.value)
    assert f"nats://***@{host}" in str(caught.value)
    assert "wr0ngT0ken" not in caplog.text


def test_a_token_given_twice_or_empty_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="twice") as caught:
        NatsTransport(f"nats://{TOKEN}@127.0.0.1:4222?token={TOKEN}")
    assert TOKEN not in str(caught.value)
    with pytest.raises(ConfigurationError, match="token= is empty"):
        NatsTransport("nats://127.0.0.1:4222?token=")
