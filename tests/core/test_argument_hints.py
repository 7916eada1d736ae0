"""Errors a port from pyee or blinker meets say what the argument is (audit 10).

``emit("x", a, b)`` (pyee passes any number of arguments) took ``b`` for metadata and
said only that metadata must be a mapping; ``handlers("order.*")`` said a wildcard is not
allowed in a topic, not that handlers() takes an event's type.
"""

from __future__ import annotations

import pytest

from pepperpy.event import Event, EventManager, PatternError


def _second_value_refused(refused: pytest.ExceptionInfo[TypeError]) -> None:
    message = str(refused.value)
    assert "metadata must be a mapping (dict) or None, got int 2" in message
    assert "one data value" in message and "{'a': 1, 'b': 2}" in message


async def test_a_second_data_value_is_named_as_metadata() -> None:
    manager = EventManager()
    with pytest.raises(TypeError) as refused:
        await manager.emit("order.placed", 1, 2)  # type: ignore[arg-type]
    _second_value_refused(refused)
    with pytest.raises(TypeError) as refused:
        Event("order.placed", 1, 2)  # type: ignore[arg-type]
    _second_value_refused(refused)


def test_handlers_of_a_pattern_says_it_takes_an_event_type() -> None:
    manager = EventManager()
    manager.on("order.*", lambda event: None)
    with pytest.raises(PatternError) as refused:
        manager.handlers("order.*")
    assert "invalid event type 'order.*'" in str(refused.value)
    assert "handlers() takes an event's type" in str(refused.value)
    assert len(manager.handlers("order.placed")) == 1
