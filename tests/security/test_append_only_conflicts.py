"""A principal that may append to a stream but not read it: a conflict is still reported,
but the stream's version (or whether it exists) is withheld from it."""

from __future__ import annotations

import pytest

from pepperpy.event import NO_STREAM, ConcurrencyError, EventStore
from pepperpy.event.security import AccessControl, AuditLog, acting_as


def policy() -> AccessControl:
    acl = AccessControl(default="deny")
    acl.allow("svc.admin", "*", "#")
    acl.allow("svc.writer", "append", "audit.#")  # a writer that may not read back
    acl.allow("svc.owner", "append", "audit.#")
    acl.allow("svc.owner", "read", "audit.#")
    return acl


def event(n: int) -> dict[str, object]:
    return {"type": "audit.noted", "data": {"n": n}}


async def four_events(store: EventStore, stream: str = "audit.1") -> None:
    with acting_as("svc.admin"):
        await store.append(stream, [event(n) for n in range(4)])  # version 3


async def test_the_conflict_is_reported_without_the_version(url: str) -> None:
    async with EventStore(url, access=policy()) as store:
        await four_events(store)
        with acting_as("svc.writer"), pytest.raises(ConcurrencyError) as caught:
            await store.append("audit.1", event(9), expected_version=1)
    conflict = caught.value
    assert conflict.stream == "audit.1"
    assert conflict.expected == 1
    assert conflict.actual is None
    assert "3" not in str(conflict)
    assert "withheld" in str(conflict)
    assert "svc.writer" in str(conflict)
    assert conflict.__context__ is None  # no original error holding the version behind it


async def test_whether_the_stream_exists_is_withheld_too(url: str) -> None:
    async with EventStore(url, access=policy()) as store:
        with acting_as("svc.writer"), pytest.raises(ConcurrencyError) as caught:
            await store.append("audit.2", event(0), expected_version=0)
    assert caught.value.actual is None
    assert "does not exist" not in str(caught.value)
    assert "withheld" in str(caught.value)


async def test_a_principal_that_may_read_still_learns_the_version(url: str) -> None:
    async with EventStore(url, access=policy()) as store:
        await four_events(store)
        with acting_as("svc.owner"), pytest.raises(ConcurrencyError) as caught:
            await store.append("audit.1", event(9), expected_version=1)
    assert caught.value.actual == 3
    assert str(caught.value) == "stream 'audit.1': expected version 1, actual version 3"


async def test_a_store_without_access_control_tells_the_version_as_before(url: str) -> None:
    async with EventStore(url) as store:
        await store.append("audit.1", [event(n) for n in range(4)])
        with pytest.raises(ConcurrencyError, match="actual version 3$"):
            await store.append("audit.1", event(9), expected_version=NO_STREAM)


async def test_append_streams_withholds_the_version_of_the_conflicting_stream(url: str) -> None:
    log = AuditLog()
    async with EventStore(url, access=policy(), audit=log) as store:
        await four_events(store, "audit.1")
        with acting_as("svc.writer"), pytest.raises(ConcurrencyError) as caught:
            await store.append_streams(
                {"audit.0": event(1), "audit.1": event(2)},
                expected_versions={"audit.1": 0},
            )
        with acting_as("svc.admin"):
            assert await store.stream_version("audit.0") is None  # nothing was written
    assert caught.value.stream == "audit.1"
    assert caught.value.actual is None
    assert "withheld" in str(caught.value)
    # a redaction, not a denial: the audit log records no refusal for it
    assert [e.outcome for e in log.entries() if e.principal == "svc.writer"] == []


async def test_the_writers_own_result_still_tells_where_to_continue(url: str) -> None:
    async with EventStore(url, access=policy()) as store:
        await four_events(store)
        with acting_as("svc.writer"):
            result = await store.append("audit.1", {"id": "e-1", **event(9)})
            assert result.next_expected_version == 4
            again = await store.append("audit.1", {"id": "e-1", **event(9)})  # a retry
            assert again == result
            await store.append("audit.1", event(10), expected_version=4)
