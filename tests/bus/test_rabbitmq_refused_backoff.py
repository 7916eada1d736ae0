"""RabbitMQ: refused reconnections never come sooner than the usual ones.

The attempts the broker refuses (credentials, access, a TLS handshake that fails for
good) back off, doubling from ``reconnect_interval`` up to 15 s. With a
``reconnect_interval`` above 15 s (it takes up to 300 s) that cap cut the pause: a
refused attempt came every 15 s where an unreachable broker's came every
``reconnect_interval``, and the ERROR said "backing off up to 15s". The cap is now
``reconnect_interval`` when that is longer.

The robust connection is the transport's own, to the real broker; the refusal is handed
to the transport's outage log as the connection's failure callback does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from pepperpy.event.transports.base import CREDENTIALS_REFUSED
from pepperpy.event.transports.rabbitmq import RabbitMQTransport
from pepperpy.event.transports.rabbitmq._refusals import Refusal

pytestmark = pytest.mark.rabbitmq

REFUSED = Refusal(CREDENTIALS_REFUSED, "ACCESS_REFUSED - Login was refused")


@pytest.mark.parametrize(("interval", "pauses"), [(60.0, [60, 60]), (4.0, [8, 15, 15])])
async def test_refused_attempts_back_off_to_at_least_the_usual_pause(
    rabbitmq_transports: Callable[..., RabbitMQTransport],
    caplog: pytest.LogCaptureFixture,
    interval: float,
    pauses: list[float],
) -> None:
    transport = rabbitmq_transports(reconnect_interval=interval)
    async with asyncio.timeout(30):
        await transport.start()
        try:
            connection = transport._connection
            assert connection is not None
            assert connection.reconnect_interval == interval  # type: ignore[attr-defined]
            seen: list[float] = []
            for _ in pauses:
                transport._outages.refused(REFUSED, connection)
                seen.append(connection.reconnect_interval)  # type: ignore[attr-defined]
            assert seen == pauses
            transport._outages.restored(connection)
            assert connection.reconnect_interval == interval  # type: ignore[attr-defined]
        finally:
            await transport.close()
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert f"backing off up to {max(interval, 15):g}s" in error.getMessage()
