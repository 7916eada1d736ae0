"""Errors of a bad append say what was wrong with what was passed, in its own words."""

from __future__ import annotations

import pytest

from pepperpy.event import ConcurrencyError, Event, EventStore, ValidationError


async def test_what_is_not_an_event_is_named_as_such_and_quoted() -> None:
    store = EventStore()
    with pytest.raises(ValidationError) as caught:
        await store.append("a.b", "a.b")  # type: ignore[arg-type]
    text = str(caught.value)
    assert text.startswith("invalid event to append: 1 problem: $: not an event")
    assert "got 'a.b'" in text  # quoted: a str is not mistaken for a word of the message
    with pytest.raises(ValidationError, match=r"\$: not an event .*got 5\)"):
        await store.append("a.b", 5)  # type: ignore[arg-type]
    assert await store.streams() == []


async def test_an_event_dict_without_a_type_is_an_invalid_event_not_invalid_data() -> None:
    store = EventStore()
    with pytest.raises(ValidationError) as caught:
        await store.append("a.b", {"data": 1})
    assert str(caught.value).startswith("invalid event to append: 1 problem: $.type: missing")
    with pytest.raises(ValidationError, match="invalid event to append: .*at least one event"):
        await store.append("a.b", [])


async def test_a_conflict_on_a_missing_stream_says_it_does_not_exist() -> None:
    store = EventStore()
    with pytest.raises(ConcurrencyError) as caught:
        await store.append("user.43", Event("user.created", {}), expected_version=5)
    assert str(caught.value) == "stream 'user.43': expected version 5, the stream does not exist"
    assert caught.value.actual is None and caught.value.expected == 5
    await store.append("user.43", Event("user.created", {}))
    with pytest.raises(ConcurrencyError, match="expected version 5, actual version 0$"):
        await store.append("user.43", Event("user.renamed", {}), expected_version=5)
