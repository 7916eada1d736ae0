"""The SQLite writer thread dying of an unexpected error (a ``MemoryError`` outside its
commit, injected here) left every append waiting for ever. Now the appends it had taken
or had queued fail with ``StoreError`` saying so (nothing of them written), and later
ones are refused with it until the store is closed and opened again."""

from __future__ import annotations

import asyncio
import logging
import pathlib
from typing import Any

import pytest

from pepperpy.event import Event, EventStore, StoreError
from pepperpy.event.store._sqlite_writer import Writer


async def test_a_writer_that_dies_fails_its_appends_instead_of_leaving_them_waiting(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gather = Writer._gather
    armed = {"on": False}

    def dying(self: Writer, *args: Any, **kwargs: Any) -> Any:
        if armed["on"]:
            armed["on"] = False
            raise MemoryError("injected")
        return gather(self, *args, **kwargs)

    monkeypatch.setattr(Writer, "_gather", dying)
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = EventStore(url)
    try:
        await store.append("kept.1", Event("t.x"))
        armed["on"] = True
        with caplog.at_level(logging.ERROR, logger="pepperpy.event.store"):
            outcomes = await asyncio.wait_for(
                asyncio.gather(
                    *(store.append(f"lost.{n}", Event("t.x")) for n in range(5)),
                    return_exceptions=True,
                ),
                10,
            )
        for outcome in outcomes:
            assert isinstance(outcome, StoreError), outcome
            assert "writer thread died" in str(outcome)
            assert "MemoryError: injected" in str(outcome)
            assert outcome.written is False
        assert "the writer thread died" in caplog.text
        with pytest.raises(StoreError, match="writer thread died") as later:
            await asyncio.wait_for(store.append("later.1", Event("t.x")), 10)
        assert later.value.written is False
        assert [e.stream for e in await store.read_all(0)] == ["kept.1"]  # reads go on
    finally:
        await asyncio.wait_for(store.close(), 10)
    async with EventStore(url) as reopened:
        await reopened.append("again.1", Event("t.x"))
        assert [e.stream for e in await reopened.read_all(0)] == ["kept.1", "again.1"]
