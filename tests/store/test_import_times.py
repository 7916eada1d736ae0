"""An export line's timestamp and recorded_at must be times an event can have.

Any integer was imported (timestamp from -2**63 + 1, recorded_at from 0, to 2**63 - 1),
and every read over such an event then failed with ValueError ('year 148108 is out of
range'): read_all, the stream, a projection catching up, the export of the copy. Now a
value outside datetime's years 1 to 9999 (recorded_at up to 9999-12-31T23:59:59 UTC, read
back as a float of seconds) is refused, naming its line, and nothing is written.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from pepperpy.event import EventStore, StoreError, import_store

FIRST = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z, in microseconds since 1970
LAST = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z
LAST_RECORDED = 253_402_300_799_000_000  # 9999-12-31T23:59:59Z


def _file(timestamp: int, recorded_at: int) -> str:
    """An export of two events of s.1, the second with ``timestamp`` and ``recorded_at``."""
    rows = [
        {
            "global_position": n,
            "stream": "s.1",
            "position": n,
            "id": f"e{n}",
            "type": "t.x",
            "version": 1,
            "data": "e30=",
            "metadata": None,
            "timestamp": timestamp if n else 0,
            "source": None,
            "subject": None,
            "recorded_at": recorded_at if n else 0,
            "visible": True,
        }
        for n in range(2)
    ]
    lines = [{"format": "pepperpy-event-export", "version": 2}, *rows, {"end": True, "events": 2}]
    return "".join(orjson.dumps(line).decode() + "\n" for line in lines)


@pytest.mark.parametrize(
    ("timestamp", "recorded_at", "said"),
    [
        (2**62, 0, "timestamp must be an integer from"),
        (-(2**62), 0, "timestamp must be an integer from"),
        (LAST + 1, 0, "timestamp must be an integer from"),
        (FIRST - 1, 0, "timestamp must be an integer from"),
        (0, 2**62, "recorded_at must be an integer from 0"),
        (0, LAST, "recorded_at must be an integer from 0"),  # rounds up to year 10000
    ],
)
async def test_a_time_no_event_can_have_is_refused(
    any_store_url: str, tmp_path: Path, timestamp: int, recorded_at: int, said: str
) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text(_file(timestamp, recorded_at), encoding="utf-8")
    async with EventStore(any_store_url) as store:
        with pytest.raises(StoreError) as raised:
            await import_store(store, path, batch_size=1)
        assert str(raised.value).startswith(f"{path} line 3: {said}"), raised.value
        assert str(raised.value).endswith("; nothing was written")
        with pytest.raises(StoreError, match=f"<stream> line 3: {said}"):
            await import_store(store, io.StringIO(path.read_text()), batch_size=2)
        assert [event async for event in store.read_all()] == []


@pytest.mark.parametrize(("timestamp", "recorded_at"), [(FIRST, 0), (LAST, LAST_RECORDED), (-1, 1)])
async def test_the_first_and_last_times_import_and_read_back(
    any_store_url: str, timestamp: int, recorded_at: int
) -> None:
    async with EventStore(any_store_url) as store:
        report = await import_store(store, io.StringIO(_file(timestamp, recorded_at)))
        assert report.copied == 2
        events = [event async for event in store.get_stream("s.1")]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert (events[1].timestamp - epoch) // _MICROSECOND == timestamp
    assert events[1].recorded_at is not None
    assert abs((events[1].recorded_at - epoch) // _MICROSECOND - recorded_at) < 100


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)
