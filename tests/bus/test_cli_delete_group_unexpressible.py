"""``bus delete-group`` refuses a pattern the broker cannot express before connecting.

``pepperpy-event bus delete-group 'orders.>' billing --yes --transport nats://...``
opened the bus first, which creates the transport's JetStream stream, and only then
refused the pattern (a ``>`` token is NATS's own wildcard): the refused command left a
stream behind on the server, and without ``--yes`` it asked to confirm a deletion it
was going to refuse. The pattern is now checked by the transport before anything else.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from pepperpy.event.transports.nats import NatsTransport
from tests.conftest import unique_name

pytestmark = pytest.mark.nats


async def _streams(url: str) -> list[str]:
    import nats

    client = await nats.connect(url)
    try:
        return [info.config.name for info in await client.jetstream().streams_info()]
    finally:
        await client.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pepperpy.event", "bus", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def test_a_nats_wildcard_pattern_is_refused_without_making_the_stream(nats_url: str) -> None:
    name = unique_name("pep_cli_dg")
    stream = name.upper()
    url = f"{nats_url}?stream={stream}&prefix={name}"
    try:
        result = _cli("delete-group", "orders.>", "billing", "--yes", "--transport", url)
        assert result.returncode == 1, result.stderr
        assert "'>' is a NATS wildcard" in result.stderr
        assert stream not in asyncio.run(_streams(nats_url))
    finally:
        asyncio.run(NatsTransport(nats_url, stream=stream).delete_stream())


def test_without_yes_it_is_refused_before_asking(nats_url: str) -> None:
    name = unique_name("pep_cli_dg")
    url = f"{nats_url}?stream={name.upper()}&prefix={name}"
    result = _cli("delete-group", "orders.>", "billing", "--transport", url)
    assert result.returncode == 1, result.stderr
    assert "stdin is not a terminal" not in result.stderr  # refused for the pattern
    assert "'>' is a NATS wildcard" in result.stderr
