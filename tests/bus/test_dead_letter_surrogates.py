"""A handler error whose text holds a lone surrogate is still dead-lettered.

An error naming a file whose name is not UTF-8 (``os.fsdecode(b"\\xff")`` is
``"\\udcff"``) made a ``dlreason`` no transport could encode: the dead-letter publish
was refused (SerializationError), only logged, and the event never reached
``deadletter.<topic>``; a broker acknowledged the original all the same (audit 13,
finding 4). The reason is now escaped (``\\udcff``) where the dead letter is built.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event._deadletter import DL_REASON, dead_letter_event

NAME = os.fsdecode(b"/uploads/report-\xff.pdf")  # holds the lone surrogate \udcff


def test_the_reason_of_a_dead_letter_is_escaped_where_utf_8_cannot_carry_it() -> None:
    dead = dead_letter_event(
        Event("files.uploaded", {"id": 7}), reason=f"ValueError: {NAME}", attempts=1, group=None
    )
    assert dead is not None
    assert dead.metadata[DL_REASON] == "ValueError: /uploads/report-\\udcff.pdf"
    dead.to_json()  # what a transport sends: no SerializationError


async def fail_and_collect(bus: EventBus, wait: bool) -> list[Event]:
    dead: list[Event] = []
    bus.subscribe("deadletter.files.*", dead.append, group="dl")

    @bus.subscribe("files.uploaded", group="scan")
    def scan(event: Any) -> None:
        raise ValueError(f"cannot parse {NAME}")

    async with bus:
        await bus.publish("files.uploaded", {"id": 7})
        for _ in range(100 if wait else 0):
            if dead:
                break
            await asyncio.sleep(0.1)
    assert len(bus.dead_letters) == 1
    return dead


async def test_an_error_naming_an_undecodable_file_is_dead_lettered() -> None:
    dead = await fail_and_collect(EventBus(retry_policy=RetryPolicy.NONE), wait=False)
    assert [(e.type, e.data) for e in dead] == [("deadletter.files.uploaded", {"id": 7})]
    assert dead[0].metadata[DL_REASON] == "ValueError: cannot parse /uploads/report-\\udcff.pdf"


@pytest.mark.redis
async def test_an_error_naming_an_undecodable_file_is_dead_lettered_on_redis(
    redis_url: str, namespace: str
) -> None:
    from pepperpy.event.transports.redis import RedisTransport

    transport = RedisTransport(redis_url, namespace=namespace, trim_interval=None)
    try:
        dead = await fail_and_collect(
            EventBus(transport=transport, retry_policy=RetryPolicy.NONE), wait=True
        )
    finally:
        await transport.delete_topology()
    assert [(e.type, e.data) for e in dead] == [("deadletter.files.uploaded", {"id": 7})]
    assert dead[0].metadata[DL_REASON] == "ValueError: cannot parse /uploads/report-\\udcff.pdf"
