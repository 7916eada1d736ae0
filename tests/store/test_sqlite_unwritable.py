"""The SQLite store on a file it cannot write: read-only, or on a disk that fills up.

Each case runs in a subprocess (bounded by a timeout), on real files under ``tmp_path``:

* *Read-only.* The subprocess drops ``CAP_DAC_OVERRIDE`` after the file was prepared
  (``tests/store/unwritable.py``), so the 0444 file and the 0555 directory are refused
  to it for writing, as to any user, root included.
* *A full disk.* ``RLIMIT_FSIZE`` set low after some appends succeeded, ``SIGXFSZ``
  ignored, makes SQLite's writes fail with ``EFBIG`` (``SQLITE_IOERR_WRITE``), as they
  would on a full disk; raising the limit again is the space coming back.

Promised: a ``StoreError`` naming the file and the cause, never a raw ``sqlite3`` error;
no acknowledged append lost and no append half written; reads go on; writes work again
once the cause is gone, without reopening. Before, the error said only "SQLite: disk I/O
error" or "SQLite: attempt to write a readonly database": neither the file nor the cause.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.store.unwritable import DROP_WRITE_OVERRIDE, make_writable, run_script

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="capset and RLIMIT_FSIZE")

_COMMON = """
import asyncio, json, os, sys
from pepperpy.event import EventStore, StoreError

directory = sys.argv[1]
path = os.path.join(directory, "events.db")
url = f"sqlite:///{path}"
report = {}

def failure(exc):
    return {"type": type(exc).__name__, "message": str(exc),
            "store_error": isinstance(exc, StoreError)}

async def events(store, stream):
    return [event.data async for event in store.get_stream(stream)]
"""


def _prepare(directory: Path) -> None:
    run_script(
        _COMMON
        + """
async def main():
    async with EventStore(url) as store:
        await store.append("s", [{"type": "t", "data": {"i": 0}}])
asyncio.run(main())
print(json.dumps({}))
""",
        directory,
    )


_READ_ONLY = (
    DROP_WRITE_OVERRIDE
    + _COMMON
    + """
drop_write_override()

async def main():
    store = EventStore(url)
    try:
        report["before"] = await events(store, "s")
    except Exception as exc:
        report["before"] = failure(exc)
    try:
        await asyncio.wait_for(store.append("s", [{"type": "t", "data": {"i": 1}}]), 60)
        report["append"] = "acknowledged"
    except Exception as exc:
        report["append"] = failure(exc)
    try:
        report["after"] = await events(store, "s")
    except Exception as exc:
        report["after"] = failure(exc)
    os.chmod(directory, 0o755)  # writable again (the owner may chmod without the override)
    for name in os.listdir(directory):
        os.chmod(os.path.join(directory, name), 0o644)
    try:
        await asyncio.wait_for(store.append("s", [{"type": "t", "data": {"i": 2}}]), 60)
        report["again"] = await events(store, "s")
    except Exception as exc:
        report["again"] = failure(exc)
    await store.close()

asyncio.run(main())
print(json.dumps(report))
"""
)


def test_read_only_file_refuses_appends_naming_it_and_still_reads(tmp_path: Path) -> None:
    """And once the file is writable again, appends work without reopening the store:
    SQLite had opened it read-only, so the writer opens it again (it went on failing)."""
    _prepare(tmp_path)
    path = tmp_path / "events.db"
    os.chmod(path, 0o444)
    try:
        report = run_script(_READ_ONLY, tmp_path)
    finally:
        make_writable(tmp_path)
    append = report["append"]
    assert isinstance(append, dict), report
    assert append["store_error"], append
    assert str(path) in append["message"]
    assert "cannot be written" in append["message"]
    assert "nothing of this call was written" in append["message"]
    assert report["before"] == report["after"] == [{"i": 0}]
    assert report["again"] == [{"i": 0}, {"i": 2}], report


def test_read_only_directory_says_why_the_store_cannot_open(tmp_path: Path) -> None:
    """In WAL mode SQLite needs the -wal and -shm files: a closed store in a read-only
    directory has none, so even reading fails; the error says so."""
    _prepare(tmp_path)
    path = tmp_path / "events.db"
    assert not (tmp_path / "events.db-shm").exists()
    os.chmod(path, 0o444)
    os.chmod(tmp_path, 0o555)
    try:
        report = run_script(_READ_ONLY, tmp_path)
    finally:
        make_writable(tmp_path)
    for call in ("before", "append", "after"):
        outcome = report[call]
        assert isinstance(outcome, dict), report
        assert outcome["store_error"], outcome
        assert str(path) in outcome["message"]
        assert "directory" in outcome["message"]
        assert "-wal and -shm" in outcome["message"]
        assert "immutable=1" in outcome["message"]  # how to read it all the same
    assert report["again"] == [{"i": 0}, {"i": 2}], report


_FULL_DISK = (
    _COMMON
    + """
import resource, signal

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

async def main():
    store = EventStore(url)
    acknowledged, refused, errors = [], [], []
    for i in range(5):
        await store.append("s", [{"type": "t", "data": {"i": i, "n": 0}}])
        acknowledged.append(i)
    largest = max(os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (largest + 60_000, resource.RLIM_INFINITY))

    async def append(i):
        # two events per append: both are written, or neither
        batch = [{"type": "t", "data": {"i": i, "n": n, "pad": "x" * 3000}} for n in range(2)]
        try:
            await store.append("s", batch)
        except StoreError as exc:
            refused.append(i)
            errors.append(str(exc))
        else:
            acknowledged.append(i)

    i = 5
    while len(refused) < 20 and i < 5000:
        await asyncio.gather(*(append(i + k) for k in range(5)))
        i += 5
    report["errors"] = errors[:3]
    report["acknowledged"], report["refused"] = acknowledged, refused
    try:
        report["read"] = await events(store, "s")
    except Exception as exc:
        report["read"] = failure(exc)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    try:
        await store.append("s", [{"type": "t", "data": {"i": -1, "n": 0}}])
        report["again"] = "acknowledged"
    except Exception as exc:
        report["again"] = failure(exc)
    await store.close()

asyncio.run(main())
print(json.dumps(report))
"""
)


def test_disk_full_mid_append_refuses_whole_appends_naming_the_file(tmp_path: Path) -> None:
    report = run_script(_FULL_DISK, tmp_path)
    acknowledged, refused = report["acknowledged"], report["refused"]
    assert isinstance(acknowledged, list) and isinstance(refused, list)
    assert len(acknowledged) > 5 and len(refused) >= 20, report  # some went in, then none
    path = str(tmp_path / "events.db")
    errors = report["errors"]
    assert isinstance(errors, list) and errors
    for message in errors:
        assert path in message
        assert "size limit" in message
        assert "nothing of this call was written" in message
    read = report["read"]
    assert isinstance(read, list), read
    assert report["again"] == "acknowledged", report
    # a new process reads the file: every acknowledged append whole, no refused one
    after = run_script(
        _COMMON
        + """
async def main():
    async with EventStore(url) as store:
        report["events"] = await events(store, "s")
asyncio.run(main())
print(json.dumps(report))
""",
        tmp_path,
    )["events"]
    assert isinstance(after, list)
    written: dict[int, list[int]] = {}
    for data in after:
        written.setdefault(data["i"], []).append(data["n"])
    assert set(written) == {*acknowledged, -1}
    for i in acknowledged:
        assert written[i] == ([0] if i < 5 else [0, 1])
    assert read == [data for data in after if data["i"] != -1]
