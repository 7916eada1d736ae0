"""NATS: a publish to a stream full to its limits fails at once, saying so.

A stream with a limit (``max_msgs``, set by an operator or another tool) and
``discard=new`` refuses new messages once it reaches it: JetStream answers with a 503
"maximum messages exceeded". The transport took that for JetStream being away and
retried until ``publish_timeout`` (20 s), then raised ``TransportError`` saying
``ServiceUnavailableError()``, which named neither the stream nor the limit. Now the
refusal is raised at once with JetStream's reason and the stream's name, ``stored``
False (docs/transport-nats.md, "Was it stored?").

On the real server, in a stream of the test's own, deleted afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from pepperpy.event import EventBus, TransportError
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.test_nats import delete_stream
from tests.conftest import unique_name

pytestmark = pytest.mark.nats


@pytest.fixture
async def namespace(nats_url: str) -> AsyncIterator[dict[str, str]]:
    """A stream and subject prefix of the test's own, deleted afterwards."""
    name = unique_name("pep")
    yield {"stream": name.upper(), "prefix": name}
    await delete_stream(nats_url, name.upper())


@pytest.fixture
async def jetstream(nats_url: str) -> AsyncIterator[Any]:
    """A plain nats-py JetStream context, to set limits on the stream."""
    import nats

    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


async def test_a_publish_to_a_full_stream_fails_at_once_naming_the_limit(
    nats_url: str, namespace: dict[str, str], jetstream: Any
) -> None:
    from nats.js.api import DiscardPolicy

    bus = EventBus(transport=NatsTransport(nats_url, retention="limits", **namespace))
    async with bus:
        config = (await jetstream.stream_info(namespace["stream"])).config
        config.max_msgs, config.discard = 1, DiscardPolicy.NEW
        await jetstream.update_stream(config)
        await bus.publish("orders.placed", 1)
        with pytest.raises(TransportError) as caught:
            await bus.publish("orders.placed", 2)
        message = str(caught.value)
        assert "maximum messages exceeded" in message
        assert f"stream {namespace['stream']!r} is full" in message
        assert caught.value.stored is False
        assert "it was not stored" in message
        # the connection is fine: with room again, publishing works
        await jetstream.purge_stream(namespace["stream"])
        await bus.publish("orders.placed", 3)
