"""Fixtures shared by the bus tests."""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import Event

#: a body the patched decoder fails on with something other than SerializationError
TRAP = b'{"trap": true}'


@pytest.fixture
def decoder_that_breaks(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Event.from_json`` fails on :data:`TRAP` as a decoder bug would (RecursionError)."""
    real = Event.from_json

    def from_json(data: Any) -> Event:
        if bytes(data) == TRAP:
            raise RecursionError("maximum recursion depth exceeded")
        return real(data)

    monkeypatch.setattr(Event, "from_json", staticmethod(from_json))
