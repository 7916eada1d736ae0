"""An audited store records snapshot writes and never writes unaudited: a closed audit
log refuses a snapshot as it refuses an append."""

from __future__ import annotations

from pathlib import Path

import pytest

from pepperpy.event import ClosedError, EventStore
from pepperpy.event.security import AuditLog, acting_as


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/events.db"


# -- snapshots ------------------------------------------------------------------------------


@pytest.mark.parametrize("file_log", [False, True], ids=["memory-log", "file-log"])
async def test_a_snapshot_is_audited(url: str, tmp_path: Path, file_log: bool) -> None:
    log = AuditLog(str(tmp_path / "audit.db") if file_log else None)
    async with EventStore(url, audit=log) as store:
        await store.append("acct.1", {"type": "deposited", "data": {"amount": 5}})
        with acting_as("svc.x"):
            await store.save_snapshot("acct.1", {"balance": 5}, 0)
    last = log.entries()[-1]
    assert (last.principal, last.action, last.target, last.outcome) == (
        "svc.x",
        "snapshot",
        "acct.1",
        "ok",
    )
    assert last.details == {"version": 0}
    assert log.verify().ok
    log.close()


async def test_a_closed_audit_log_refuses_a_snapshot_before_writing_it(url: str) -> None:
    log = AuditLog()
    async with EventStore(url, audit=log) as store:
        await store.append("acct.1", {"type": "deposited", "data": {"amount": 5}})
        await store.save_snapshot("acct.1", {"balance": 5}, 0)
        log.close()
        with pytest.raises(ClosedError, match="audit log is closed: nothing was written"):
            await store.save_snapshot("acct.1", {"balance": 2_000_000}, 0)
        snapshot = await store.load_snapshot("acct.1")
    assert snapshot is not None and snapshot.state == {"balance": 5}
    assert [e.action for e in log.entries()] == ["append", "snapshot"]
