"""The SQLite store on a file it cannot write: read-only, or on a disk that fills up.

Each case runs in a subprocess (bounded by a timeout), on real files under ``tmp_path``:

* *Read-only.* The tests run as root, and root writes through any permission bits. The
  subprocess drops only ``CAP_DAC_OVERRIDE`` from its capabilities (``capset``) after
  the file was prepared: it keeps ``CAP_DAC_READ_SEARCH``, so it still reaches and reads
  ``tmp_path`` (under the 0700 ``/tmp/pytest-of-root``, which ``setuid(65534)`` could not
  enter), while the 0444 file and the 0555 directory are refused to it for writing, as
  to any user. Not root: the permission bits apply already.
* *A full disk.* ``RLIMIT_FSIZE`` set low after some appends succeeded, ``SIGXFSZ``
  ignored, makes SQLite's writes fail with ``EFBIG`` (``SQLITE_IOERR_WRITE``), as they
  would on a full disk; raising the limit again is the space coming back.

Promised: a ``StoreError`` naming the file and the cause, never a raw ``sqlite3`` error;
no acknowledged append lost and no append half written; reads go on; writes work again
once the cause is gone, without reopening. Before, the error said only "SQLite: disk I/O
error" or "SQLite: attempt to write a readonly database": neither the file nor the cause.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="capset and RLIMIT_FSIZE")

_DROP_WRITE_OVERRIDE = """
import ctypes, os

def drop_write_override():
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inheritable")]

    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    cap_dac_override = 1 << 1
    data[0].effective &= ~cap_dac_override
    data[0].permitted &= ~cap_dac_override
    data[0].inheritable &= ~cap_dac_override
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
"""

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


def _run(script: str, directory: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def _prepare(directory: Path) -> None:
    _run(
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
    _DROP_WRITE_OVERRIDE
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
    await store.close()

asyncio.run(main())
print(json.dumps(report))
"""
)


def test_read_only_file_refuses_appends_naming_it_and_still_reads(tmp_path: Path) -> None:
    _prepare(tmp_path)
    path = tmp_path / "events.db"
    os.chmod(path, 0o444)
    report = _run(_READ_ONLY, tmp_path)
    append = report["append"]
    assert isinstance(append, dict), report
    assert append["store_error"], append
    assert str(path) in append["message"]
    assert "cannot be written" in append["message"]
    assert "nothing of this call was written" in append["message"]
    assert report["before"] == report["after"] == [{"i": 0}]
    os.chmod(path, 0o644)


def test_read_only_directory_says_why_the_store_cannot_open(tmp_path: Path) -> None:
    """In WAL mode SQLite needs the -wal and -shm files: a closed store in a read-only
    directory has none, so even reading fails; the error says so."""
    _prepare(tmp_path)
    path = tmp_path / "events.db"
    assert not (tmp_path / "events.db-shm").exists()
    os.chmod(path, 0o444)
    os.chmod(tmp_path, 0o555)
    try:
        report = _run(_READ_ONLY, tmp_path)
    finally:
        os.chmod(tmp_path, 0o755)
        os.chmod(path, 0o644)
    for call in ("before", "append", "after"):
        outcome = report[call]
        assert isinstance(outcome, dict), report
        assert outcome["store_error"], outcome
        assert str(path) in outcome["message"]
        assert "directory" in outcome["message"]
        assert "-wal and -shm" in outcome["message"]


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
    report = _run(_FULL_DISK, tmp_path)
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
    after = _run(
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
