"""An audited store records snapshot writes and its own access denials, and never writes
unaudited: a closed audit log refuses a snapshot as it refuses an append."""

from __future__ import annotations

from pathlib import Path

import pytest

from pepperpy.event import AccessDenied, ClosedError, EventStore
from pepperpy.event.security import AccessControl, AuditLog, KeyRing, StreamEncryption, acting_as


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/events.db"


def denials(log: AuditLog) -> list[tuple[str | None, str, str, object]]:
    return [
        (e.principal, e.action, e.target, e.details.get("rule"))
        for e in log.entries()
        if e.outcome == "denied"
    ]


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


async def test_a_denied_snapshot_is_audited_and_not_written(url: str) -> None:
    log = AuditLog()
    acl = AccessControl(default="deny")
    acl.allow("svc.*", "*", "acct.#")
    acl.deny("svc.intern", "append", "acct.#")
    async with EventStore(url, access=acl, audit=log) as store:
        with acting_as("svc.intern"):
            with pytest.raises(AccessDenied):
                await store.save_snapshot("acct.1", {"balance": 1}, 0)
        with acting_as("svc.teller"):
            assert await store.load_snapshot("acct.1") is None
    rule = "deny('svc.intern', 'append', 'acct.#')"
    assert denials(log) == [("svc.intern", "append", "acct.1", rule)]


# -- denials go to the store's audit log ---------------------------------------------------


async def test_every_denial_of_the_store_is_in_its_audit_log(url: str) -> None:
    """The AccessControl has no audit log of its own: the store records its denials."""
    log = AuditLog()
    acl = AccessControl(default="deny")
    acl.allow("svc.*", "append", "orders.#")
    acl.allow("svc.*", "read", "orders.#")
    acl.deny("svc.reporting", "read", "orders.secret.#")
    crypto = StreamEncryption(KeyRing.generate())
    async with EventStore(url, access=acl, audit=log, encryption=crypto) as store:
        with acting_as("svc.reporting"):
            await store.append("orders.1", {"type": "order.placed", "data": {}})
            calls = [
                lambda: store.append("hr.salaries", {"type": "salary.set", "data": {"n": 1}}),
                lambda: store.read_all(),
                lambda: store.get_stream("orders.secret.1"),
                lambda: store.subscribe(streams="orders.#"),  # overlaps the deny
                lambda: store.streams("hr.#"),
                lambda: store.stream_version("hr.1"),
                lambda: store.load_snapshot("hr.1"),
                lambda: store.save_snapshot("hr.1", {}, 0),
                lambda: store.delete_stream("orders.1"),
                lambda: store.shred_stream("orders.1"),
            ]
            for call in calls:
                with pytest.raises(AccessDenied):
                    result = call()
                    if hasattr(result, "__await__"):
                        await result
    secret = "deny('svc.reporting', 'read', 'orders.secret.#')"
    assert [(action, target, rule) for _, action, target, rule in denials(log)] == [
        ("append", "hr.salaries", None),
        ("read", "#", secret),
        ("read", "orders.secret.1", secret),
        ("read", "orders.#", secret),
        ("read", "hr.#", None),
        ("read", "hr.1", None),
        ("read", "hr.1", None),
        ("append", "hr.1", None),
        ("delete", "orders.1", None),
        ("delete", "orders.1", None),
    ]
    assert {principal for principal, *_ in denials(log)} == {"svc.reporting"}
    assert acl.audit is None  # the shared AccessControl was not changed
    assert log.verify().ok


async def test_an_access_control_with_the_same_log_records_each_denial_once(url: str) -> None:
    log = AuditLog()
    acl = AccessControl(default="deny", audit=log)
    async with EventStore(url, access=acl, audit=log) as store:
        with pytest.raises(AccessDenied):
            await store.append("hr.1", {"type": "salary.set", "data": {}})
        with pytest.raises(AccessDenied):
            await store.get_stream("hr.1")
    assert [(e.action, e.outcome) for e in log.entries()] == [
        ("append", "denied"),
        ("read", "denied"),
    ]


async def test_a_shared_access_control_keeps_each_stores_denials_apart(url: str) -> None:
    own, first, second = AuditLog(), AuditLog(), AuditLog()
    acl = AccessControl(default="deny", audit=own)  # e.g. also used by a bus
    async with (
        EventStore(url, access=acl, audit=first) as one,
        EventStore(access=acl, audit=second) as two,
    ):
        with acting_as("svc.a"), pytest.raises(AccessDenied):
            await one.append("hr.1", {"type": "salary.set", "data": {}})
        with acting_as("svc.b"), pytest.raises(AccessDenied):
            await two.get_stream("hr.2")
    assert [(e.principal, e.target) for e in first.entries()] == [("svc.a", "hr.1")]
    assert [(e.principal, e.target) for e in second.entries()] == [("svc.b", "hr.2")]
    assert [(e.principal, e.target) for e in own.entries()] == [
        ("svc.a", "hr.1"),
        ("svc.b", "hr.2"),
    ]
    assert acl.audit is own


async def test_a_denial_after_the_audit_log_closed_is_still_a_denial(url: str) -> None:
    log = AuditLog()
    acl = AccessControl(default="deny")
    async with EventStore(url, access=acl, audit=log) as store:
        log.close()
        with pytest.raises(AccessDenied) as denied:
            await store.get_stream("hr.1")
        assert isinstance(denied.value.__cause__, ClosedError)
        assert "not recorded: the store's audit log is closed" in "".join(
            getattr(denied.value, "__notes__", [])
        )
        with pytest.raises(ClosedError):  # a write is refused before it is even checked
            await store.append("hr.1", {"type": "salary.set", "data": {}})
