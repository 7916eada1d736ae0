"""The SQLite checkpoint store on a file it cannot write: read-only, or past a size limit.

Each case runs in a subprocess on files under ``tmp_path`` (``tests/store/unwritable.py``:
``CAP_DAC_OVERRIDE`` dropped, so permission bits apply to root too; ``RLIMIT_FSIZE``
standing for a full disk). Promised: while the file cannot be written every ``save``
fails with the same :class:`StoreError` naming the file, SQLite's error and code and
the cause, never :class:`ConcurrencyError` (the expected position was never stored);
once it can be written again, a ``save`` with that same expected position succeeds,
without reopening the store. Before, a read-only file said only "attempt to write a
readonly database" and stayed unwritable to the store after it was made writable (SQLite
had opened it read-only), and a write past the size limit said "cannot rollback - no
transaction is active" (the ROLLBACK after SQLite had ended the transaction itself hid
the error).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.store.unwritable import DROP_WRITE_OVERRIDE, make_writable, run_script

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="capset and RLIMIT_FSIZE")

_COMMON = """
import asyncio, json, os, sys
from pepperpy.event import ConcurrencyError, StoreError
from pepperpy.event._checkpoints import SQLiteCheckpointStore

directory = sys.argv[1]
path = os.path.join(directory, "events.db")
report = {}

def failure(exc):
    return {"type": type(exc).__name__, "message": str(exc),
            "store_error": isinstance(exc, StoreError),
            "conflict": isinstance(exc, ConcurrencyError)}

async def save(store, position, state, previous):
    try:
        await store.save("nightly", position, state, previous=previous)
        return "saved"
    except Exception as exc:
        return failure(exc)
"""

_PREPARE = (
    _COMMON
    + """
async def main():
    store = SQLiteCheckpointStore(path)
    await store.save("nightly", 1, {"n": 1}, previous=None)
    await store.close()
asyncio.run(main())
print(json.dumps(report))
"""
)

_READ_ONLY = (
    DROP_WRITE_OVERRIDE
    + _COMMON
    + """
drop_write_override()

async def main():
    store = SQLiteCheckpointStore(path)
    report["saves"] = [await save(store, 2, {"n": 2}, 1) for _ in range(3)]
    try:  # a read meanwhile (it opens a connection: read-only, as SQLite can)
        report["during"] = (await store.load("nightly")).position
    except Exception as exc:
        report["during"] = failure(exc)
    os.chmod(directory, 0o755)  # writable again (the owner may chmod without the override)
    for name in os.listdir(directory):
        os.chmod(os.path.join(directory, name), 0o644)
    report["again"] = await save(store, 2, {"n": 2}, 1)
    loaded = await store.load("nightly")
    report["loaded"] = [loaded.position, loaded.state]
    await store.close()

asyncio.run(main())
print(json.dumps(report))
"""
)

_LOAD = (
    _COMMON
    + """
async def main():
    store = SQLiteCheckpointStore(path)
    loaded = await store.load("nightly")
    report["loaded"] = [loaded.position, loaded.state]
    await store.close()
asyncio.run(main())
print(json.dumps(report))
"""
)


def _assert_all_the_same_named_error(saves: object, path: Path, *named: str) -> None:
    assert isinstance(saves, list) and len(saves) == 3, saves
    for outcome in saves:
        assert isinstance(outcome, dict), saves
        assert outcome["store_error"] and not outcome["conflict"], outcome
        assert outcome["message"] == saves[0]["message"], saves  # the same error each time
        message = outcome["message"]
        assert message.startswith(f"checkpoint store {str(path)!r}: "), message
        for part in named:
            assert part in message, message


@pytest.mark.parametrize("where", ["file", "directory"])
def test_saves_to_a_read_only_file_fail_named_until_it_is_writable_again(
    tmp_path: Path, where: str
) -> None:
    run_script(_PREPARE, tmp_path)
    path = tmp_path / "events.db"
    path.chmod(0o444)
    if where == "directory":  # closed cleanly: no -wal or -shm, and none can be made
        assert not (tmp_path / "events.db-wal").exists()
        tmp_path.chmod(0o555)
    try:
        report = run_script(_READ_ONLY, tmp_path)
    finally:
        make_writable(tmp_path)
    code = "(SQLITE_READONLY)" if where == "file" else "(SQLITE_READONLY_DIRECTORY)"
    _assert_all_the_same_named_error(
        report["saves"], path, code, "cannot be written", "-wal and -shm"
    )
    for outcome in report["saves"]:  # type: ignore[attr-defined]
        assert "nothing of this call was written" in outcome["message"]
    if where == "file":
        assert report["during"] == 1  # reads go on
    else:  # nothing can open the file there (the -wal and -shm cannot be made)
        during = report["during"]
        assert isinstance(during, dict) and code in during["message"], during
    assert report["again"] == "saved", report
    assert report["loaded"] == [2, {"n": 2}]
    assert run_script(_LOAD, tmp_path)["loaded"] == [2, {"n": 2}]  # on disk


_FULL_DISK = (
    _COMMON
    + """
import resource, signal

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

async def main():
    store = SQLiteCheckpointStore(path)
    await store.load("nightly")  # opened, with its -wal and -shm
    # the -wal (empty now) may grow to the database file's size: less than the state
    limit = os.path.getsize(path)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    big = {"n": 2, "pad": "x" * (2 * limit)}
    report["saves"] = [await save(store, 2, big, 1) for _ in range(3)]
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    report["again"] = await save(store, 2, {"n": 2}, 1)
    await store.close()

asyncio.run(main())
print(json.dumps(report))
"""
)


def test_saves_past_a_file_size_limit_fail_named_until_there_is_room(tmp_path: Path) -> None:
    run_script(_PREPARE, tmp_path)
    path = tmp_path / "events.db"
    report = run_script(_FULL_DISK, tmp_path)
    _assert_all_the_same_named_error(
        report["saves"], path, "(SQLITE_IOERR", "size limit", "nothing of this call was written"
    )
    assert report["again"] == "saved", report
    assert run_script(_LOAD, tmp_path)["loaded"] == [2, {"n": 2}]
