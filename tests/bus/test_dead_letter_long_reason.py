"""A dead letter's ``dlreason`` keeps at most 4,096 characters of its error.

The dead letter carried its error's whole text, which has no bound (a response body, a
rendered query, a validation error quoting its input): a small event whose handler
raised a 2 MB message made a 2 MB dead letter, over NATS's ``max_payload`` (1 MiB), so it
was dropped (``dead_letter_dropped``) instead of stored, and on every other transport it
was a 2 MB message for a 20-byte event. The whole error stays in ``bus.dead_letters``.
"""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import Event, EventBus, RetryPolicy
from pepperpy.event.transports.nats import NatsTransport
from tests.helpers import eventually

REASON_LIMIT = 4096  # pepperpy.event._deadletter.REASON_LIMIT
LONG = "upstream answered: " + "y" * 2_000_000


def fail(event: Event) -> None:
    raise RuntimeError(LONG)


async def test_dlreason_is_cut_with_a_count_and_the_letter_keeps_the_error() -> None:
    dead: list[Event] = []
    async with EventBus(retry_policy=RetryPolicy.NONE) as bus:
        bus.subscribe("deadletter.#", dead.append)
        bus.subscribe("jobs.*", fail, group="workers")
        await bus.publish("jobs.run", 1)
    reason = dead[0].metadata["dlreason"]
    assert reason.startswith(f"RuntimeError: {LONG[: REASON_LIMIT - 14]}...")
    more = len("RuntimeError: ") + len(LONG) - REASON_LIMIT
    assert reason.endswith(
        f"... ({more:,} more characters, cut from the dead letter: the whole error is in "
        "the ERROR record and bus.dead_letters)"
    )
    assert len(reason) < REASON_LIMIT + 200
    assert str(bus.dead_letters[0].exception) == LONG


async def test_a_short_reason_is_kept_whole() -> None:
    dead: list[Event] = []
    async with EventBus(retry_policy=RetryPolicy.NONE) as bus:
        bus.subscribe("deadletter.#", dead.append)
        bus.subscribe("jobs.*", fail, group="workers")

        @bus.subscribe("mail.*")
        def short(event: Event) -> None:
            raise ValueError("x" * (REASON_LIMIT - len("ValueError: ")))

        await bus.publish("mail.send", 1)
    assert dead[0].metadata["dlreason"] == "ValueError: " + "x" * (REASON_LIMIT - 12)


@pytest.mark.nats
async def test_nats_stores_the_dead_letter_of_a_small_event_with_a_huge_error(
    nats_url: str, names: dict[str, str]
) -> None:
    transport = NatsTransport(nats_url, **names)
    bus = EventBus(transport=transport, retry_policy=RetryPolicy.NONE)
    dead: asyncio.Queue[Event] = asyncio.Queue()
    bus.subscribe("deadletter.#", dead.put_nowait)
    bus.subscribe("jobs.*", fail, group="workers")
    async with bus:
        published = await bus.publish("jobs.run", 1)
        await eventually(lambda: not dead.empty(), timeout=30)
    letter = dead.get_nowait()
    assert letter.metadata["dlid"] == published.id
    assert letter.metadata["dlreason"].startswith("RuntimeError: upstream answered: yyy")
