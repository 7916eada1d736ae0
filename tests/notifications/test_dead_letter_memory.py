"""A kept notification dead letter does not keep what the failing channel had in hand.

``NotificationSystem.dead_letters`` keeps the latest failures; each held its exception,
its traceback and every frame's variables (a channel's request body, a client's
buffers), as the manager's and the bus's letters did (audit 8). The log and the on_error
callbacks see the whole exception first; the kept letter keeps the traceback's lines.
"""

from __future__ import annotations

import gc
import logging
import traceback
import weakref
from typing import Any

import pytest

from pepperpy.event import NotificationSystem, RetryPolicy
from pepperpy.event.notifications.channels.memory import MemoryChannel


class Payload:
    """What a channel has in hand when it fails (a request body)."""


class Failing(MemoryChannel):
    def __init__(self, held: list[Any]) -> None:
        super().__init__()
        self.held = held

    async def send(self, notification: Any) -> None:
        body = Payload()
        self.held.append(weakref.ref(body))
        raise ConnectionError(f"could not post {body!r}")


async def test_kept_letters_hold_no_channel_variables(caplog: pytest.LogCaptureFixture) -> None:
    held: list[Any] = []
    seen: list[str] = []
    system = NotificationSystem(retry_policy=RetryPolicy.fixed(2, base_delay=0))
    system.add_channel("hook", Failing(held))
    system.add_template("ping", "hello {{ name }}")

    @system.on_error
    def record(letter: Any) -> None:  # callbacks still see the whole exception
        seen.append("".join(traceback.format_exception(letter.exception)))

    with caplog.at_level(logging.ERROR, logger="pepperpy.event"):
        await system.notify(channels=["hook"], template="ping", name="Ann", to="x")
    gc.collect()
    assert len(system.dead_letters) == 1 and held
    assert [ref() for ref in held] == [None] * len(held)
    assert len(seen) == 1 and "could not post" in seen[0]
    assert any(record.exc_info for record in caplog.records)
    lines = traceback.format_exception(system.dead_letters[0].exception)
    assert any("in send" in line for line in lines)
    await system.close()
