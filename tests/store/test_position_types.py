"""A position or version of a wrong type is a ``TypeError``; an int out of range, not.

docs/errors.md: "Wrong argument *types* stay plain ``TypeError``s". The store's position
checks raised ``ValueError`` for ``expected_version="0"``, ``get_stream(s, "0")``,
``read_all("0")``, ``subscribe(1.0)`` and ``save_snapshot(s, state, "0")``, as for a
position out of range. A bool is a wrong type too (``True`` would pass as 1).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import EventStore

MAX_POSITION = 2**63 - 1


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/events.db"
    async with EventStore(url) as opened:
        await opened.append("a.1", {"type": "t.a"})
        yield opened


#: (a call given the value, the parameter its message names)
CALLS: dict[str, tuple[Callable[[EventStore, Any], object], str]] = {
    "append": (
        lambda store, v: store.append("a.1", {"type": "t.a"}, expected_version=v),
        "expected_version must be a stream position",
    ),
    "get_stream": (lambda store, v: store.get_stream("a.1", v), "start_pos must be an int"),
    "get_stream backwards": (
        lambda store, v: store.get_stream("a.1", v, backwards=True),
        "start_pos must be an int",
    ),
    "read_all": (lambda store, v: store.read_all(v), "from_position must be an int"),
    "read_all backwards": (
        lambda store, v: store.read_all(v, backwards=True),
        "from_position must be an int",
    ),
    "subscribe": (lambda store, v: store.subscribe(v), "from_position must be an int"),
    "save_snapshot": (
        lambda store, v: store.save_snapshot("a.1", {}, v),
        "snapshot version must be a stream position",
    ),
}


async def _call(result: object) -> None:
    if isinstance(result, Awaitable):
        await result


@pytest.mark.parametrize(("call", "message"), CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize("value", ["0", 1.0, True, False, b"0"], ids=repr)
async def test_a_position_of_a_wrong_type_is_a_type_error(
    store: EventStore, call: Callable[[EventStore, Any], object], message: str, value: Any
) -> None:
    with pytest.raises(TypeError) as caught:
        await _call(call(store, value))
    assert not isinstance(caught.value, ValueError)
    assert str(caught.value).startswith(message)
    assert f"got {value!r}" in str(caught.value)
    assert await store.stream_version("a.1") == 0  # nothing was written


@pytest.mark.parametrize(("call", "message"), CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize("value", [-1, MAX_POSITION + 1], ids=repr)
async def test_a_position_out_of_range_is_a_value_error(
    store: EventStore, call: Callable[[EventStore, Any], object], message: str, value: int
) -> None:
    with pytest.raises(ValueError) as caught:
        await _call(call(store, value))
    assert not isinstance(caught.value, TypeError)
    assert str(caught.value).startswith(message)
    assert f"got {value!r}" in str(caught.value)


def test_a_subscription_given_none_is_a_type_error_with_the_hint() -> None:
    with pytest.raises(TypeError, match=r"got None; to follow only the events appended"):
        EventStore().subscribe(None)  # type: ignore[arg-type]
