"""Checkpoint and projection names are checked as stream names are, on every backend.

A NUL or a lone surrogate (a file name read with ``surrogateescape``) in a checkpoint
name was taken by the memory store, raised a bare ``UnicodeEncodeError`` from inside
the SQLite checkpoint store, and a ``StoreError`` reading like a database outage on
PostgreSQL ("invalid byte sequence for encoding"). They are refused up front, the same
everywhere, before a checkpoint is loaded or any handler runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pepperpy.event import ConfigurationError, Event, EventReplay, EventStore, Projection
from tests.helpers import database_store_urls

BAD_NAMES: list[tuple[Any, str]] = [
    ("nightly\x00", r"contains a NUL character"),
    ("export-\udcff", r"contains a lone surrogate \('\\udcff'\), which is not valid UTF-8"),
    ("x" * 1025, r"is longer than 1024 bytes in UTF-8"),
    ("é" * 513, r"is longer than 1024 bytes in UTF-8"),
    ("", r"must be a non-empty str, got ''"),
    (b"nightly", r"must be a non-empty str, got b'nightly'"),
    (7, r"must be a non-empty str, got 7"),
]
IDS = ["nul", "surrogate", "long", "long-utf8", "empty", "bytes", "int"]


def _error(name: Any) -> type[Exception]:
    """A name that is no str is a wrong type (docs/errors.md), the others bad values."""
    return ConfigurationError if isinstance(name, str) else TypeError


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_store_urls(request, tmp_path, "pepperpy_names")


@pytest.mark.parametrize(("name", "problem"), BAD_NAMES, ids=IDS)
async def test_a_bad_checkpoint_name_is_refused_before_any_handler_runs(
    url: str, name: Any, problem: str
) -> None:
    async with EventStore(url) as store:
        await store.append("s", Event("a", 1))
        async with EventReplay(store) as replay:
            ran: list[Event] = []
            replay.handle("#", ran.append)
            with pytest.raises(_error(name), match=rf"^a checkpoint name .*{problem}"):
                await replay.replay_stream("s", checkpoint=name)
            with pytest.raises(_error(name), match=rf"^a checkpoint name .*{problem}"):
                await replay.replay_all(checkpoint=name)
            with pytest.raises(_error(name), match=rf"^a checkpoint name .*{problem}"):
                await replay.reset(name)
            assert ran == []
            # nothing was written under any name
            assert await replay.checkpoints.load("replay:nightly") is None


@pytest.mark.parametrize(("name", "problem"), BAD_NAMES, ids=IDS)
async def test_a_bad_projection_name_is_refused_at_construction(
    url: str, name: Any, problem: str
) -> None:
    async with EventStore(url) as store:
        with pytest.raises(_error(name), match=rf"^a projection name .*{problem}"):
            Projection(name, store)


async def test_names_every_backend_can_hold_still_work(url: str) -> None:
    name = "relatório-夜間-" + "x" * 900  # non-ASCII, and within 1024 bytes
    async with EventStore(url) as store:
        await store.append("s", Event("a", 1))
        async with EventReplay(store) as replay:
            ran: list[Event] = []
            replay.handle("#", ran.append)
            first = await replay.replay_stream("s", checkpoint=name)
            again = await replay.replay_stream("s", checkpoint=name)
            assert (first.replayed, again.replayed, len(ran)) == (1, 0, 1)
            assert await replay.reset(name) is True
        projection = Projection(name, store, initial=0)
        projection.on("a", lambda state, event: state + 1)
        await projection.run()
        assert projection.state == 1
        await projection.close()
