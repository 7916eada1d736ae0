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

from typing import Any

import pytest

from pepperpy.event import EventBus, TransportError
from pepperpy.event.transports.nats import NatsTransport

pytestmark = pytest.mark.nats


async def test_a_publish_to_a_full_stream_fails_at_once_naming_the_limit(
    nats_url: str, nats_namespace: dict[str, str], nats_jetstream: Any
) -> None:
    from nats.js.api import DiscardPolicy

    bus = EventBus(transport=NatsTransport(nats_url, retention="limits", **nats_namespace))
    async with bus:
        config = (await nats_jetstream.stream_info(nats_namespace["stream"])).config
        config.max_msgs, config.discard = 1, DiscardPolicy.NEW
        await nats_jetstream.update_stream(config)
        await bus.publish("orders.placed", 1)
        with pytest.raises(TransportError) as caught:
            await bus.publish("orders.placed", 2)
        message = str(caught.value)
        assert "maximum messages exceeded" in message
        assert f"stream {nats_namespace['stream']!r} is full" in message
        assert caught.value.stored is False
        assert "it was not stored" in message
        # the connection is fine: with room again, publishing works
        await nats_jetstream.purge_stream(nats_namespace["stream"])
        await bus.publish("orders.placed", 3)
