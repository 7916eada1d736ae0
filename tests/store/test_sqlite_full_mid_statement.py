"""A full disk met in the middle of a big write, not at COMMIT.

A page spill that fails (``SQLITE_FULL``, ``SQLITE_IOERR_WRITE``) makes SQLite roll back
the whole transaction. The writer then rolled back to a savepoint that was gone, and
reported "no such savepoint: run" (or "job") instead of the real cause; the appends of
the same group failed with it too. Now the culprit fails naming the cause, nothing of it
written, and the other appends of its group are written.

Each case runs in a subprocess with ``RLIMIT_FSIZE`` set low (``SIGXFSZ`` ignored), which
makes SQLite's writes fail with ``EFBIG`` as on a full disk.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.store.unwritable import run_script

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE, SIGXFSZ")

_SCRIPT = """
import asyncio, json, os, resource, signal, sys
from pepperpy.event import Event, EventStore, StoreError

directory = sys.argv[1]
path = os.path.join(directory, "events.db")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
report = {}

def failure(exc):
    return {"type": type(exc).__name__, "message": str(exc),
            "written": getattr(exc, "written", "?"), "cause": repr(exc.__cause__)}

async def main():
    store = EventStore(f"sqlite:///{path}")
    await store.append("warm", Event("t.x"))
    largest = max(os.path.getsize(os.path.join(directory, n)) for n in os.listdir(directory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (largest + 3_000_000, resource.RLIM_INFINITY))
    big = "x" * 8_000_000
    try:
        await store.append("big.1", Event("t.big", {"pad": big}))
        report["alone"] = "acknowledged"
    except Exception as exc:
        report["alone"] = failure(exc)
    try:
        await store.save_snapshot("warm", {"pad": big}, 0)
        report["snapshot"] = "acknowledged"
    except Exception as exc:
        report["snapshot"] = failure(exc)

    async def append(stream, size):
        try:
            await store.append(stream, Event("t.x", {"pad": "s" * size}))
            return "acknowledged"
        except Exception as exc:
            return failure(exc)

    outcomes = await asyncio.gather(
        append("big.2", 8_000_000), *(append(f"small.{n}", 1000) for n in range(19))
    )
    report["group_big"] = outcomes[0]
    report["group_small"] = outcomes[1:]
    report["stored"] = sorted({e.stream async for e in store.read_all(0)} - {"warm"})
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    await store.append("big.3", Event("t.big", {"pad": big}))
    report["after"] = "acknowledged"
    await store.close()

asyncio.run(main())
print(json.dumps(report))
"""


def _named(outcome: object) -> None:
    assert isinstance(outcome, dict), outcome
    assert outcome["type"] == "StoreError", outcome
    message = str(outcome["message"])
    assert "savepoint" not in message and "savepoint" not in str(outcome["cause"]), outcome
    assert "SQLITE_FULL" in message or "SQLITE_IOERR" in message, outcome
    assert "nothing of this call was written" in message, outcome
    assert outcome["written"] is False, outcome


def test_a_write_failing_mid_statement_names_the_full_disk_and_fails_alone(
    tmp_path: Path,
) -> None:
    report = run_script(_SCRIPT, tmp_path)
    _named(report["alone"])
    _named(report["snapshot"])
    _named(report["group_big"])
    assert report["group_small"] == ["acknowledged"] * 19  # only the culprit fails
    assert report["stored"] == sorted(f"small.{n}" for n in range(19))
    assert report["after"] == "acknowledged"
