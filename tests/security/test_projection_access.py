"""A projection's saved state is derived from the events it read: a principal the store
does not let read those streams may not load it, wait on it or rebuild it away."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import AccessDenied, Event, EventStore, MemoryCheckpointStore, Projection
from pepperpy.event.security import AccessControl, AuditLog, acting_as

SSN = "078-05-1120"


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'events.db'}"


#: the memory store's states, shared by the projections of a test (a SQLite store keeps
#: them in its own file)
STATES: dict[str, MemoryCheckpointStore] = {}


@pytest.fixture(autouse=True)
def _fresh_states() -> None:
    STATES.clear()


def users(store: EventStore, streams: str | None = "user.*") -> Projection:
    shared = (
        STATES.setdefault("memory", MemoryCheckpointStore()) if store.url == "memory://" else None
    )
    projection = Projection("users", store, streams=streams, state_store=shared)

    @projection.on("user.created")
    def created(state: dict[str, Any], event: Event) -> None:
        state[event.stream] = event.data["ssn"]

    return projection


def policy() -> tuple[AccessControl, AuditLog]:
    log = AuditLog()
    acl = AccessControl(default="deny")
    acl.allow("svc.admin", "*", "#")
    acl.allow("svc.intruder", "read", "orders.#")
    return acl, log


async def saved_by_admin(store: EventStore, streams: str | None = "user.*") -> None:
    with acting_as("svc.admin"):
        await store.append("user.9", {"type": "user.created", "data": {"ssn": SSN}})
        projection = users(store, streams)
        await projection.run()
        await projection.close()


def denials(log: AuditLog) -> list[tuple[str | None, str, str]]:
    return [(e.principal, e.action, e.target) for e in log.entries() if e.outcome == "denied"]


@pytest.mark.parametrize("streams", ["user.*", None])
async def test_loading_the_state_needs_read_on_the_projections_streams(
    url: str, streams: str | None
) -> None:
    acl, log = policy()
    async with EventStore(url, access=acl, audit=log) as store:
        await saved_by_admin(store, streams)
        with acting_as("svc.intruder"):
            projection = users(store, streams)
            with pytest.raises(AccessDenied, match="svc.intruder"):
                await projection.load()
            with pytest.raises(AccessDenied):  # a run loads first: refused as well
                await projection.run()
            with pytest.raises(AccessDenied):
                await projection.wait_until(0)
            assert projection.state == {}  # nothing of the saved state reached memory
            await projection.close()
    target = "user.*" if streams else "#"
    assert denials(log)[0] == ("svc.intruder", "read", target)


async def test_waiting_is_refused_even_when_the_position_is_reached_in_memory(url: str) -> None:
    acl, log = policy()
    async with EventStore(url, access=acl, audit=log) as store:
        with acting_as("svc.admin"):
            await store.append("user.9", {"type": "user.created", "data": {"ssn": SSN}})
            projection = users(store)
            await projection.run()
            assert await projection.wait_until(0) == 0
        with acting_as("svc.intruder"), pytest.raises(AccessDenied):
            await projection.wait_until(0)  # the same object: no read of the disk needed
        await projection.close()


async def test_a_rebuild_refused_leaves_the_saved_state_as_it_was(url: str) -> None:
    acl, log = policy()
    async with EventStore(url, access=acl, audit=log) as store:
        await saved_by_admin(store)
        with acting_as("svc.intruder"):
            projection = users(store)
            with pytest.raises(AccessDenied):
                await projection.rebuild()
            await projection.close()
        with acting_as("svc.admin"):
            projection = users(store)
            assert await projection.load() == {"user.9": SSN}
            assert projection.position == 0
            await projection.close()
    assert [(e.action, e.outcome) for e in log.entries()].count(("read", "denied")) == 1


async def test_a_principal_allowed_to_read_the_streams_loads_and_rebuilds(url: str) -> None:
    acl, log = policy()
    acl.allow("svc.reporting", "read", "user.#")
    async with EventStore(url, access=acl, audit=log) as store:
        await saved_by_admin(store)
        with acting_as("svc.reporting"):
            projection = users(store)
            assert await projection.load() == {"user.9": SSN}
            await projection.rebuild()
            assert projection.state == {"user.9": SSN}
            await projection.close()
    assert denials(log) == []
