"""NATS: a ``prefix`` whose subjects NATS or the transport use itself is refused.

The stream covers ``<prefix>.>``. With ``prefix="_INBOX"`` it captured the replies to
requests (a publish's PubAck, the consumer-creation answer) and with ``"_PEPPERPY"`` the
transport's own deliveries: ``start()`` then failed with JetStream's misleading
"consumer not found". With ``"$JS"`` (JetStream's API) nats-py raised a bare
``TypeError: ConsumerInfo.__init__() missing 3 required positional arguments``. They
are now refused when the transport is made, naming why. The stream of the last test is
its own, deleted afterwards.
"""

from __future__ import annotations

import pytest

from pepperpy.event import ConfigurationError, EventBus
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.faultproxy import finishes
from tests.conftest import unique_name
from tests.helpers import eventually

pytest.importorskip("nats")


@pytest.mark.parametrize(
    ("prefix", "why"),
    [
        ("_INBOX", "request replies (every publish's PubAck) travel on _INBOX.>"),
        ("_PEPPERPY", "the transport's deliveries travel on _PEPPERPY.>"),
        ("_PEPPERPY.orders", "the transport's deliveries travel on _PEPPERPY.>"),
        ("$JS", "subjects starting with '$' are NATS's own"),
        ("$SYS.events", "subjects starting with '$' are NATS's own"),
    ],
)
def test_a_reserved_prefix_is_refused_naming_why(prefix: str, why: str) -> None:
    for made in (
        lambda: NatsTransport("nats://127.0.0.1:4222", prefix=prefix),
        lambda: EventBus(transport=f"nats://127.0.0.1:4222?prefix={prefix}"),
    ):
        with pytest.raises(ConfigurationError) as refused:
            made()
        message = str(refused.value)
        assert message.startswith(
            f"invalid NATS subject prefix {prefix!r}: the stream covers {prefix}.>, and "
        )
        assert why in message


@pytest.mark.nats
@pytest.mark.parametrize("prefix", ["_inbox", "app._INBOX", "app.$JS"])
async def test_the_same_words_elsewhere_or_in_other_case_still_work(
    nats_url: str, prefix: str
) -> None:
    """Subjects are case-sensitive, and only the first token is NATS's."""
    stream = unique_name("pep_reserved").upper()
    transport = NatsTransport(nats_url, stream=stream, prefix=prefix)
    bus = EventBus(transport=transport)
    handled: list[int] = []
    bus.subscribe("jobs.*", lambda e: handled.append(e.data), group="g")
    try:
        await finishes(bus.start(), 15)
        await finishes(bus.publish("jobs.run", 1), 15)
        await eventually(lambda: handled == [1])
    finally:
        await finishes(bus.close(), 15)
        await finishes(transport.delete_stream(), 15)
