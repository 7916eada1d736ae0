"""A lone surrogate in event data or metadata is refused naming where it is.

``Event("a", {"x": "\\ud800"})`` is accepted (checking every string's encoding on the
emit path would cost every event); UTF-8 JSON cannot hold it, so appending or publishing
it fails. The error used to read ``cannot encode as JSON: str is not valid UTF-8:
surrogates not allowed`` for any place in data or metadata; it now names the string or
key, its path, and whether it is in the metadata.
"""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import Event, EventBus, EventStore, SerializationError


@pytest.mark.parametrize(
    ("item", "named"),
    [
        ({"type": "t", "data": {"x": "\ud800"}}, r"str '\\ud800' at \['x'\] holds a lone"),
        (
            {"type": "t", "data": {"y": [1, {"z": "ok\udc00"}]}},
            r"str 'ok\\udc00' at \['y'\]\[1\]\['z'\] holds a lone",
        ),
        ({"type": "t", "data": {"n": {"\ud800": 1}}}, r"key '\\ud800' at \['n'\] holds a lone"),
        (
            {"type": "t", "data": {"x": 1}, "metadata": {"k": "\ud800"}},
            r"metadata: .*str '\\ud800' at \['k'\] holds a lone",
        ),
        (Event("t", {"x": ["fine", "\ud800" * 60]}), r"str '(\\ud800){37}\.\.\.' at \['x'\]\[1\]"),
    ],
)
async def test_an_append_names_the_string_and_writes_nothing(item: Any, named: str) -> None:
    async with EventStore() as store:
        with pytest.raises(SerializationError, match=named) as caught:
            await store.append("s.1", item)
        assert "UTF-8 (and so JSON text) cannot hold" in str(caught.value)
        assert await store.stream_version("s.1") is None


async def test_a_publish_and_to_json_name_it_too() -> None:
    async with EventBus() as bus:
        with pytest.raises(SerializationError, match=r"str '\\ud800' at \['data'\]\['x'\]"):
            await bus.publish("t", {"x": "\ud800"})
    with pytest.raises(SerializationError, match=r"str 'a\\ud800' at \['data'\]\['v'\]"):
        Event("t", {"v": "a\ud800"}).to_json()
