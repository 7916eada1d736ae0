"""A dead letter the bus keeps does not keep what the failed handler had in hand.

``EventBus.dead_letters`` keeps the latest letters; each held its exception, its
traceback and every frame's variables: a handler holding 1 MB when it failed made 100
letters hold 100 MB (audit 8). The letters keep the traceback's lines; the callbacks and
the log see the whole exception first.
"""

from __future__ import annotations

import gc
import logging
import traceback
import weakref
from typing import Any

import pytest

from pepperpy.event import DeadLetter, Event, EventBus, RetryPolicy


class Download:
    """What a handler has in hand (a file, a page of rows)."""


@pytest.mark.parametrize("policy", [RetryPolicy.NONE, RetryPolicy.fixed(2, base_delay=0)])
@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_kept_letters_hold_no_handler_variables(
    policy: RetryPolicy, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    held: list[Any] = []
    seen: list[str] = []

    def fail() -> None:
        download = Download()
        held.append(weakref.ref(download))
        try:
            raise ConnectionError("reset by peer")
        except ConnectionError as exc:
            raise ValueError(f"could not fetch {download!r}") from exc

    async with EventBus(transport="memory://", retry_policy=policy) as bus:
        if kind == "async":

            async def fetch(event: Event) -> None:
                fail()

        else:

            def fetch(event: Event) -> None:  # type: ignore[misc]
                fail()

        bus.subscribe("file.*", fetch)

        @bus.on_error
        def record(letter: DeadLetter) -> None:  # callbacks still see the whole exception
            seen.append("".join(traceback.format_exception(letter.exception)))

        with caplog.at_level(logging.ERROR, logger="pepperpy.event"):
            await bus.publish("file.fetched", {"n": 1})
        gc.collect()
        assert len(bus.dead_letters) == 1 and held
        assert [ref() for ref in held] == [None] * len(held)
        assert len(seen) == 1 and "ConnectionError: reset by peer" in seen[0]
        assert any(record.exc_info for record in caplog.records)
        lines = traceback.format_exception(bus.dead_letters[0].exception)  # the lines stay
        assert any("in fail" in line for line in lines)
