"""A replay given another replay's checkpoint name does not tell that replay's scope to
a principal who may not read what it replayed (audit 9 leftover).

The ReplayError said "checkpoint 'nightly' belongs to a replay of 'stream:salaries.1'":
a stream name the principal may not read, told by an error.
"""

from __future__ import annotations

import pytest

from pepperpy.event import Event, EventReplay, EventStore, ReplayError
from pepperpy.event.security import AccessControl, acting_as


def _policy() -> AccessControl:
    access = AccessControl(default="deny")
    access.allow("admin", "read", "#")
    access.allow("admin", "append", "#")
    access.allow("svc.orders", "read", "orders.#")
    return access


@pytest.mark.parametrize("theirs", ["stream", "all"])
async def test_the_other_scope_is_withheld_from_who_may_not_read_it(theirs: str) -> None:
    async with EventStore(access=_policy()) as store, EventReplay(store) as replay:
        with acting_as("admin"):
            await store.append("salaries.1", Event("salary.paid", {"amount": 1}))
            await store.append("orders.1", Event("order.placed", {}))
            if theirs == "stream":
                await replay.replay_stream("salaries.1", checkpoint="nightly")
            else:
                await replay.replay_all(checkpoint="nightly")
        with acting_as("svc.orders"), pytest.raises(ReplayError) as refused:
            await replay.replay_stream("orders.1", checkpoint="nightly")
        message = str(refused.value)
        assert "salaries" not in message and "'all'" not in message
        assert "belongs to another replay" in message and "withheld" in message
        assert "'svc.orders'" in message
        with acting_as("admin"), pytest.raises(ReplayError) as told:
            await replay.replay_stream("orders.1", checkpoint="nightly")
        shown = "'stream:salaries.1'" if theirs == "stream" else "'all'"
        assert f"belongs to a replay of {shown}" in str(told.value)


async def test_without_access_control_the_scope_is_told() -> None:
    async with EventStore() as store, EventReplay(store) as replay:
        await store.append("salaries.1", Event("salary.paid", {}))
        await store.append("orders.1", Event("order.placed", {}))
        await replay.replay_stream("salaries.1", checkpoint="nightly")
        with pytest.raises(ReplayError, match="belongs to a replay of 'stream:salaries.1'"):
            await replay.replay_stream("orders.1", checkpoint="nightly")
