"""An event store in a directory SQLite cannot write: the error says so, and what to do.

In WAL mode SQLite needs the ``-wal`` and ``-shm`` files beside the database even to
read it; a store closed cleanly has neither, and in a directory that cannot take them it
cannot be opened, except with ``?immutable=1``. SQLite's code does not say why: on a
read-only file system (``EROFS``: a Docker ``:ro`` volume) and in an immutable directory
(``EPERM``) it is ``SQLITE_CANTOPEN``, and the error used to add "missing, or no
permission", neither of which was true, and no word of ``immutable=1``, although
docs/store.md promised that ``mode=ro`` "fails there, saying so and pointing to
``immutable=1``" (only a directory refused by permissions, ``SQLITE_READONLY_DIRECTORY``,
got the hint). Now each kind of directory is named as what it is, for ``mode=ro``, for a
plain URL (a writable store, and the ``create=0`` check of the CLI's reading commands)
and in the CLI, with the ``immutable=1`` hint; ``immutable=1`` reads the store, and the
file is left as it was. The three kinds of directory: ``tests/store/unwritable_directories.py``
(the mount and the immutable one need root and are skipped, saying so, without it).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from pepperpy.event import EventStore
from tests.store.unwritable import DROP_WRITE_OVERRIDE, run_script
from tests.store.unwritable_directories import unwritable_directory

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux file systems")

_READS = (
    DROP_WRITE_OVERRIDE
    + """
import asyncio, contextlib, io, json, sys
drop_write_override()
from pepperpy.event import EventStore
from pepperpy.event.cli import main

path = sys.argv[1]
report = {}

async def read(name, url, create=True):
    try:
        async with EventStore(url) as store:
            store.backend.create = create
            report[name] = [event.type for event in await store.read_all(0)]
    except Exception as exc:
        report[name] = {"type": type(exc).__name__, "message": str(exc)}

def cli(name, *argv):
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["pepperpy-event", *argv]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
            code = 0
        except SystemExit as exit:
            code = exit.code
    report[name] = {"code": code, "out": out.getvalue(), "err": err.getvalue()}

async def reads():
    await read("mode=ro", f"sqlite:///{path}?mode=ro")
    await read("create=0", f"sqlite:///{path}", create=False)
    await read("plain", f"sqlite:///{path}")
    await read("immutable=1", f"sqlite:///{path}?immutable=1")

asyncio.run(reads())
cli("cli", "read", "orders.1", "--store", f"sqlite:///{path}")
print(json.dumps(report))
"""
)


@pytest.mark.parametrize("kind", ["mount", "immutable", "permission"])
async def test_a_directory_sqlite_cannot_write_is_named_with_the_immutable_hint(
    tmp_path: Path, kind: str
) -> None:
    staged = tmp_path / "events.db"
    async with EventStore(f"sqlite:///{staged}") as store:
        await store.append("orders.1", [{"type": "placed", "data": {"n": 1}}])
    assert not (tmp_path / "events.db-wal").exists()  # closed cleanly
    directory = tmp_path / "data"
    path = directory / "events.db"
    with unwritable_directory(directory, kind, [staged]) as why:
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        report = run_script(_READS, path)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before
        assert sorted(p.name for p in directory.iterdir()) == ["events.db"]
    assert report["immutable=1"] == ["placed"], report
    named = (
        f"its directory {str(directory)!r} cannot be written ({why}): in WAL mode SQLite "
        "keeps the -wal and -shm files beside the database, and without them it cannot "
        "even read it"
    )
    code = "(SQLITE_READONLY_DIRECTORY)" if kind == "permission" else "(SQLITE_CANTOPEN)"
    plain_hint = "if nothing writes the file, open it with ?immutable=1 (read-only) to read it"
    for name, hint in (
        (
            "mode=ro",
            "mode=ro cannot make them in a read-only directory: if nothing writes "
            "the file, open it with immutable=1 instead",
        ),
        ("create=0", plain_hint),
        ("plain", plain_hint),
    ):
        failure = report[name]
        assert isinstance(failure, dict) and failure["type"] == "StoreError", (name, failure)
        message = failure["message"]
        assert message.startswith(f"SQLite: {str(path)!r}: "), message
        assert code in message and named in message, message
        assert message.endswith(hint), message
        assert "missing, or no permission" not in message, message
    cli = report["cli"]
    assert isinstance(cli, dict) and cli["code"] == 1, cli
    lines = str(cli["err"]).splitlines()
    assert len(lines) == 1 and named in lines[0] and lines[0].endswith(plain_hint), cli


def test_a_missing_directory_is_named_as_such(tmp_path: Path) -> None:
    """SQLite says CANTOPEN for it too; the error used to guess "missing, or no permission"."""
    path = tmp_path / "nowhere" / "events.db"
    report = run_script(_READS, path)
    failure = report["plain"]
    assert isinstance(failure, dict), failure
    message = failure["message"]
    assert f"its directory {str(path.parent)!r} does not exist" in message, message
    assert "?immutable=1" not in message, message  # the hint is not for this
