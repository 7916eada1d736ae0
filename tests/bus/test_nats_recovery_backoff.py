"""NATS: replacing a closed client, and restoring the stream and consumers, never retry
sooner than ``reconnect_wait``.

Both retry until they succeed, the pause doubling from ``reconnect_wait`` up to 5 s.
With a ``reconnect_wait`` above 5 s that cap cut the pause: the second and later rounds
came every 5 s (with ``reconnect_wait=6``, 6 s then 5 s). The cap is now
``reconnect_wait`` when that is longer.

The transport is connected to the real server; the step each round fails at (the new
client's connect, the stream check) records when it is called and fails as an
unreachable server or a JetStream not ready makes it fail. Sleeps are real: each test
takes about 12 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pepperpy.event import TransportError
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.faultproxy import finishes

pytestmark = pytest.mark.nats

WAIT = 6.0  # above the old 5-s cap, short enough to watch two pauses


class FailsEachRound:
    """A step of the retry loop: notes when each round calls it, and fails."""

    def __init__(self, rounds: int) -> None:
        self.calls: list[float] = []
        self.rounds = rounds
        self.done = asyncio.Event()

    async def __call__(self, *args: object) -> None:
        self.calls.append(asyncio.get_running_loop().time())
        if len(self.calls) == self.rounds:
            self.done.set()
        raise TransportError("cannot connect to NATS: refused")

    def pauses(self) -> list[float]:
        return [round(b - a, 1) for a, b in zip(self.calls, self.calls[1:], strict=False)]


@pytest.fixture
async def transport(nats_url: str, names: dict[str, str]) -> AsyncIterator[NatsTransport]:
    made = NatsTransport(nats_url, reconnect_wait=WAIT, **names)
    await finishes(made.start(), 15)
    yield made
    await finishes(made.close(), 15)


async def test_a_client_replacement_waits_at_least_reconnect_wait(
    transport: NatsTransport,
) -> None:
    connect = FailsEachRound(3)
    transport._connect = connect  # type: ignore[method-assign,assignment]
    transport._replacing = asyncio.get_running_loop().create_task(transport._replace_client())
    await finishes(connect.done.wait(), 30)
    assert min(connect.pauses()) >= WAIT - 0.05, connect.pauses()  # old code: [6.0, 5.0]


async def test_restoring_consumers_waits_at_least_reconnect_wait(
    transport: NatsTransport,
) -> None:
    ensure = FailsEachRound(3)
    transport._ensure_stream = ensure  # type: ignore[method-assign,assignment]
    transport._restoring = asyncio.get_running_loop().create_task(transport._restore_consumers())
    await finishes(ensure.done.wait(), 30)
    assert min(ensure.pauses()) >= WAIT - 0.05, ensure.pauses()  # old code: [6.0, 5.0]
