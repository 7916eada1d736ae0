"""store.upcaster takes the validator's arguments: positional version, direct-call form."""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import ConfigurationError, Event, EventStore


def _v2(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "v2": True}


async def test_direct_call_and_positional_version() -> None:
    store = EventStore()
    # written before the upcasters exist: a store that has them refuses version 1
    await store.append("user.1", Event("user.created", {"name": "Ada"}, version=1))
    assert store.upcaster("user.created", 1, _v2) is _v2  # returns the function, as a decorator

    @store.upcaster("user.created", 2)
    def _v3(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "v3": True}

    (event,) = await store.get_stream("user.1")
    assert event.data == {"name": "Ada", "v2": True, "v3": True} and event.version == 3


async def test_the_same_checks_in_every_form() -> None:
    store = EventStore()
    store.upcaster("a.b", from_version=1)(_v2)
    with pytest.raises(ConfigurationError, match="already exists"):
        store.upcaster("a.b", 1, _v2)
    with pytest.raises(ConfigurationError, match="from_version must be an int >= 1, got 0"):
        store.upcaster("a.b", 0, _v2)
    with pytest.raises(ValueError):  # ConfigurationError is a ValueError, as before
        store.upcaster("a.b", -1)
    for wrong in ("2", True, 2.0):  # a wrong type (docs/errors.md)
        with pytest.raises(TypeError, match=f"from_version must be an int >= 1, got {wrong!r}"):
            store.upcaster("a.b", wrong, _v2)  # type: ignore[arg-type]

    async def later(data: Any) -> Any:
        return data

    with pytest.raises(TypeError, match="synchronous"):
        store.upcaster("a.c", 1, later)  # type: ignore[arg-type]
