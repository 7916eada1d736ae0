"""NATS: a program whose ``retention`` or ``max_age`` differs from the stream's is told.

JetStream keeps an existing stream's settings: a program asking for
``retention="limits"`` (events kept for replay, and for an ungrouped subscriber away
longer than ``inactive_threshold``) on a stream made with interest retention got interest
retention, silently. The streams are the test's own, deleted afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from pepperpy.event import EventBus
from pepperpy.event.transports.nats import NatsTransport
from tests.bus.faultproxy import finishes
from tests.conftest import unique_name

LOGGER = "pepperpy.event.transports.nats"


@pytest.fixture
async def names(nats_url: str) -> AsyncIterator[tuple[str, str]]:
    """A stream and a prefix of the test's own; the stream is deleted afterwards."""
    prefix = unique_name("pep_settings")
    yield prefix.upper(), prefix
    await finishes(NatsTransport(nats_url, stream=prefix.upper()).delete_stream(), 15)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == logging.WARNING and "exists with" in r.getMessage()
    ]


@pytest.mark.nats
async def test_a_stream_made_with_other_retention_and_max_age_is_warned_about(
    nats_url: str, names: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    stream, prefix = names
    caplog.set_level(logging.WARNING, LOGGER)
    made = NatsTransport(nats_url, stream=stream, prefix=prefix)  # interest, no max_age
    async with EventBus(transport=made):
        pass
    assert warnings_of(caplog) == []
    wanting = NatsTransport(
        nats_url, stream=stream, prefix=prefix, retention="limits", max_age=3600.0
    )
    async with EventBus(transport=wanting):
        pass
    [warning] = warnings_of(caplog)
    assert f"JetStream stream {stream!r} exists with" in warning
    assert "retention='interest' (this program: 'limits')" in warning
    assert "max_age=None (this program: 3600.0)" in warning
    assert "the stream's settings apply" in warning


@pytest.mark.nats
async def test_a_program_with_the_streams_settings_is_not_warned(
    nats_url: str, names: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    stream, prefix = names
    caplog.set_level(logging.WARNING, LOGGER)
    for _ in range(2):  # the first makes it, the second finds it
        transport = NatsTransport(
            nats_url, stream=stream, prefix=prefix, retention="limits", max_age=60.5
        )
        async with EventBus(transport=transport):
            pass
    assert warnings_of(caplog) == []
