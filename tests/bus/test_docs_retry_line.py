"""docs/bus.md quotes the line a retried bus handler logs; the quote is the line logged
(it showed a jittered range after attempt 1, where ``RetryPolicy.EXPONENTIAL`` waits
exactly its base delay)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from pepperpy.event import Event, EventBus, RetryPolicy

DOC = Path(__file__).resolve().parents[2] / "docs" / "bus.md"


def quoted_lines() -> list[str]:
    """The retry lines the paragraph on retried failures quotes in full."""
    text = DOC.read_text()
    paragraph = text[text.index("- Each failure that is retried is logged too") :]
    paragraph = paragraph.split("\n- ", 1)[0].replace("\n  ", " ")
    return [span for span in re.findall(r"`([^`]*)`", paragraph) if "on attempt" in span]


async def test_the_retry_line_bus_md_quotes_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    (quoted,) = quoted_lines()
    pattern = re.escape(quoted).replace(re.escape("<id>"), r"[0-9a-f-]{36}")
    tries = 0
    bus = EventBus(retry_policy=RetryPolicy.EXPONENTIAL)

    @bus.subscribe("jobs.run")
    def work(event: Event) -> None:
        nonlocal tries
        tries += 1
        if tries < 3:
            raise ConnectionError("down")

    work.__qualname__ = "work"  # as a module-level handler is named
    caplog.set_level(logging.DEBUG, logger="pepperpy.event.bus")
    async with bus:
        await bus.publish("jobs.run")
    logged = [r.getMessage() for r in caplog.records if "on attempt" in r.getMessage()]
    assert len(logged) == 2
    assert any(re.fullmatch(pattern, line) for line in logged), (quoted, logged)
