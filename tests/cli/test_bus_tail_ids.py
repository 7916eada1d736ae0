"""``bus tail`` prints an event's id as one field, quoted and escaped when it must be.

The id is the publisher's to choose (``Event(..., id=...)``) and used to be printed as
it was: an id holding a newline forged a second event line in an operator's tail, and
one holding ESC sent escape sequences to the terminal. It now goes through ``field``
like the topic and key.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pepperpy.event import Event, EventBus
from pepperpy.event.cli._bus import event_line
from tests.conftest import unique_name
from tests.helpers import delete_redis_keys

from .test_bus_cli import Tail

FORGED = 'x\n2026-12-07T00:00:00.000Z pay.approved - forged-id {"amount":1000000}'


@pytest.mark.parametrize(
    ("event_id", "shown"),
    [
        ("plain-id", "plain-id"),
        ("a b", '"a b"'),
        ("\x1b]0;owned\x07", '"\\u001b]0;owned\\u0007"'),
        (FORGED, json.dumps(FORGED)),
    ],
)
def test_an_event_line_prints_the_id_as_one_field(event_id: str, shown: str) -> None:
    event = Event("a.note", {"n": 1}, id=event_id, timestamp=datetime(2026, 1, 1, tzinfo=UTC))
    line = event_line(event)
    assert line == f'2026-01-01T00:00:00.000Z a.note - {shown} {{"n":1}}'
    assert "\n" not in line and "\x1b" not in line


@pytest.fixture
async def redis_namespace_url(redis_url: str) -> AsyncIterator[str]:
    name = unique_name("pepids")
    yield f"{redis_url}?namespace={name}"
    await delete_redis_keys(redis_url, f"{name}:*")


@pytest.mark.redis
async def test_a_tail_prints_a_forged_id_on_its_one_line(
    redis_namespace_url: str, tmp_path: Path
) -> None:
    tail = await Tail.start("a.#", "--count", "1", "--transport", redis_namespace_url, cwd=tmp_path)
    try:
        async with EventBus(transport=redis_namespace_url) as bus:
            await bus.publish("a.note", Event("a.note", {"n": 1}, id=FORGED))
        code, out, err = await tail.finish()
    finally:
        await tail.stop()
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1, out
    assert lines[0].split(" ", 3)[1:3] == ["a.note", "-"]
    assert lines[0].endswith(f' {json.dumps(FORGED)} {{"n":1}}'), lines[0]
