"""Audit details the entry's JSON cannot hold as given are refused, naming the value.

orjson writes a NaN or an infinity as ``null``: the entry ``record()`` returned held the
number, while the file (and every later ``verify``) held ``null``, silently. Events,
snapshots and bus headers refuse them; so does the audit log now, before anything is
written, for a file log and a memory log alike. ``record_off_loop`` refuses them (and
any other value that is not JSON-able) at once on the caller's thread, where it used to
queue the entry and have its writer thread log the failure later.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import SerializationError
from pepperpy.event.security import AuditLog


@pytest.mark.parametrize(
    ("details", "named"),
    [
        ({"ratio": math.nan}, "nan at ['ratio']"),
        ({"limit": math.inf}, "inf at ['limit']"),
        ({"ok": 1, "floor": -math.inf}, "-inf at ['floor']"),
        ({"rule": {"weights": [0.5, math.nan]}}, "nan at ['rule']['weights'][1]"),
    ],
)
@pytest.mark.parametrize("where", ["file", "memory"])
def test_a_non_finite_number_is_refused_naming_it_and_nothing_is_written(
    tmp_path: Path, where: str, details: dict[str, Any], named: str
) -> None:
    log = AuditLog(str(tmp_path / "audit.db") if where == "file" else None)
    try:
        with pytest.raises(SerializationError) as caught:
            log.record("export", "reports.q3", principal="svc.report", details=details)
        message = str(caught.value)
        assert message.startswith("audit details: "), message
        assert named in message, message
        assert "is not a finite number; JSON cannot hold it" in message
        assert "nothing was recorded" in message
        assert log.entries() == []
        log.record("export", "reports.q3", details={"ratio": 0.5, "none": None})
        assert [entry.details for entry in log.entries()] == [{"ratio": 0.5, "none": None}]
        assert log.verify().ok
    finally:
        log.close()


def test_the_file_keeps_what_record_returned(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.db")
    with AuditLog(path) as log:
        entry = log.record("export", "t", details={"ratio": 1e308, "n": None, "x": [1.5]})
    with AuditLog(path, read_only=True) as log:
        assert [stored.details for stored in log.entries()] == [entry.details]


async def test_record_off_loop_refuses_them_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """On a running loop a file log queues entries for its writer thread: bad details
    were found only there, and logged, while the caller went on as if recorded."""
    log = AuditLog(str(tmp_path / "audit.db"))
    try:
        with caplog.at_level(logging.ERROR, logger="pepperpy.event.security"):
            with pytest.raises(SerializationError, match=r"nan at \['ratio'\]"):
                log.record_off_loop("access.denied", "s.1", details={"ratio": math.nan})
            with pytest.raises(SerializationError, match="JSON-able"):
                log.record_off_loop("access.denied", "s.1", details={"who": object()})
            log.record_off_loop("access.denied", "s.1", details={"ratio": 0.25})
            await asyncio.to_thread(log.close)  # waits for the queued entry
        assert not caplog.records, caplog.text
    finally:
        log.close()
    with AuditLog(str(tmp_path / "audit.db"), read_only=True) as reader:
        assert [entry.details for entry in reader.entries()] == [{"ratio": 0.25}]


@dataclasses.dataclass
class _Limits:
    name: str
    ratio: float


@pytest.mark.parametrize("where", ["file", "memory"])
def test_a_non_finite_number_inside_a_dataclass_is_refused_too(tmp_path: Path, where: str) -> None:
    """orjson writes a dataclass as an object of its fields, NaN as null: looked into."""
    log = AuditLog(str(tmp_path / "audit.db") if where == "file" else None)
    try:
        with pytest.raises(SerializationError, match=r"nan at \['rule'\]\['ratio'\]"):
            log.record("export", "t", details={"rule": _Limits("cap", math.nan)})
        assert log.entries() == []
        entry = log.record("export", "t", details={"rule": _Limits("cap", 0.5)})
        assert entry.details == {"rule": _Limits("cap", 0.5)}
        assert [stored.details for stored in log.entries()] == [
            {"rule": {"name": "cap", "ratio": 0.5}}
        ]
        assert log.verify().ok
    finally:
        log.close()


async def test_record_off_loop_records_the_details_as_they_were_at_the_call(
    tmp_path: Path,
) -> None:
    """The queued entry used to hold the caller's own dict: changed after the call
    returned (a dict reused for the next request), the writer recorded the change."""
    path = str(tmp_path / "audit.db")
    log = AuditLog(path)
    try:
        details: dict[str, Any] = {"rule": {"allow": ["a.#"]}, "n": 1}
        with log._lock:  # hold the writer back until the caller has moved on
            log.record_off_loop("access.denied", "s.1", details=details)
            details["n"] = 2
            details["rule"]["allow"].append("b.#")
            details["later"] = True
        await asyncio.to_thread(log.close)  # waits for the queued entry
    finally:
        log.close()
    with AuditLog(path, read_only=True) as reader:
        assert [entry.details for entry in reader.entries()] == [
            {"rule": {"allow": ["a.#"]}, "n": 1}
        ]
        assert reader.verify().ok
