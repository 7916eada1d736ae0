"""Enum members as replay and projection patterns are kept as the plain str they hold,
as the manager, bus, processor and notifications keep them: a ``(str, Enum)`` member
formats as ``T.CREATED`` on 3.12+, so it was shown (and recorded) differently by
version and by the code showing it."""

from __future__ import annotations

from enum import Enum, StrEnum

import pytest

from pepperpy.event import Event, EventReplay, EventStore, Projection, ReplayError


class Mixed(str, Enum):  # noqa: UP042 (the older form, still common)
    CREATED = "user.created"
    OTHER = "user.deleted"


class Strict(StrEnum):
    CREATED = "user.created"
    OTHER = "user.deleted"


MEMBERS = [Mixed.CREATED, Strict.CREATED]
OTHERS = {Mixed.CREATED: Mixed.OTHER, Strict.CREATED: Strict.OTHER}


@pytest.mark.parametrize("member", MEMBERS, ids=["mixed", "strict"])
async def test_a_replay_handler_keeps_the_plain_str(member: str) -> None:
    async with EventStore() as store:
        await store.append("u-1", Event("user.created", {}))
        replay = EventReplay(store)
        seen: list[str] = []

        @replay.handle(member)
        def created(event: Event) -> None:
            seen.append(event.type)

        (registration,) = replay._handlers
        assert type(registration.pattern) is str
        assert registration.pattern == "user.created"
        assert repr(registration.pattern) == "'user.created'"
        await replay.replay_all()
        assert seen == ["user.created"]
        assert replay.remove_handler(member, created) is True
        assert replay.handlers("user.created") == []
        await replay.close()


@pytest.mark.parametrize("member", MEMBERS, ids=["mixed", "strict"])
async def test_enum_types_are_recorded_and_named_as_plain_str(sqlite_url: str, member: str) -> None:
    async with EventStore(sqlite_url) as store:
        await store.append("u-1", Event("user.created", {}))
        async with EventReplay(store) as replay:
            replay.handle(member, lambda event: None)
            await replay.replay_all(types=member, checkpoint="c")
            saved = await replay.checkpoints.load("replay:c")
            assert saved is not None and saved.state["types"] == ["user.created"]
            with pytest.raises(ReplayError) as caught:
                await replay.replay_all(types=[member, OTHERS[member]], checkpoint="c")
        message = str(caught.value)
        assert "types ['user.created', 'user.deleted']" in message
        assert "<" not in message and "Mixed" not in message and "Strict" not in message


@pytest.mark.parametrize("member", MEMBERS, ids=["mixed", "strict"])
async def test_projection_patterns_are_plain_str(member: str) -> None:
    async with EventStore() as store:
        await store.append("u-1", Event("user.created", {}))
        projection = Projection("p", store, initial=dict, types=member)
        assert [type(pattern) for pattern in projection._types or ()] == [str]

        @projection.on(member)
        def count(state: dict[str, int], event: Event) -> None:
            state["n"] = state.get("n", 0) + 1

        await projection.run()
        assert projection.state == {"n": 1}
        assert projection.off(member, count) is True
        await projection.close()
