"""The automatic trimming task survives a ``CancelledError`` it did not ask for.

The task retried every error of a trim pass, but a ``CancelledError`` that a driver
raises on its own (failing the futures of a lost connection with it) ended it for good,
silently: the streams were never trimmed again for the transport's life, and Redis's
memory grew. Now only a cancellation of the task itself (``close()``) ends it.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from pepperpy.event.transports.redis import RedisTransport
from tests.helpers import eventually

pytestmark = pytest.mark.redis


async def test_a_stray_cancelled_error_does_not_end_trimming(
    redis_url: str,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.WARNING, logger="pepperpy.event.transports.redis")
    transport = RedisTransport(redis_url, namespace=namespace, partitions=1, trim_interval=0.05)
    passes: list[int] = []
    real = transport._trim_once

    # the narrowest seam: the first pass's commands fail as a lost connection's may
    async def trim_once(keep: float | None = None) -> int:
        passes.append(1)
        if len(passes) == 1:
            raise asyncio.CancelledError
        return await real(keep)

    monkeypatch.setattr(transport, "_trim_once", trim_once)
    async with asyncio.timeout(30), transport:
        await eventually(lambda: len(passes) >= 3)
        assert transport._trimmer is not None and not transport._trimmer.done()
