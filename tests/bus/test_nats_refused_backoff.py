"""NATS: refused reconnections never come sooner than the usual ones.

The attempts the server refuses (credentials, a TLS handshake that fails for good) back
off, doubling from ``reconnect_wait`` up to 15 s. With a ``reconnect_wait`` above 15 s
(it takes up to 300 s) that cap cut the pause: a refused attempt came every 15 s where
an unreachable server's came every ``reconnect_wait``, and the ERROR said "backing off
up to 15s". The cap is now ``reconnect_wait`` when that is longer, as on RabbitMQ.

The client is the transport's own, connected to the real server; the outage and the
refusals are handed to the transport's outage log as nats-py's callbacks do.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

import pytest
from nats.errors import AuthorizationError

from pepperpy.event.transports.nats import NatsTransport

pytestmark = pytest.mark.nats

REFUSALS = {
    "credentials": AuthorizationError(),
    "tls": ssl.SSLCertVerificationError(1, "certificate verify failed: unable to get issuer"),
}


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
@pytest.mark.parametrize(("wait", "pauses"), [(60.0, [60, 60]), (4.0, [8, 15, 15])])
async def test_refused_attempts_back_off_to_at_least_the_usual_pause(
    nats_url: str,
    names: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    refusal: str,
    wait: float,
    pauses: list[float],
) -> None:
    transport = NatsTransport(nats_url, reconnect_wait=wait, **names)
    async with asyncio.timeout(30):
        await transport.start()
        try:
            nc = transport._nc
            assert nc is not None
            assert nc.options["reconnect_time_wait"] == wait
            transport._outages.disconnected(nc)  # the outage the refusals come in
            seen: list[float] = []
            for _ in pauses:
                transport._outages.error(nc, REFUSALS[refusal])
                seen.append(nc.options["reconnect_time_wait"])
            assert seen == pauses
            transport._outages.reconnected(nc)
            assert nc.options["reconnect_time_wait"] == wait
        finally:
            await transport.close()
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert f"backing off up to {max(wait, 15):g}s" in error.getMessage()
