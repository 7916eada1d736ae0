"""``stats`` counts streams a page of names at a time, never loading every name.

It called ``EventStore.streams()`` for each ``--streams`` pattern (or ``#``) and kept
every name in a set: with one stream per aggregate, millions of names in memory, just
to print their number.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from pepperpy.event import Event, EventStore
from pepperpy.event.cli._app import app


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/events.db"

    async def fill() -> None:
        async with EventStore(url) as store:
            await store.append_streams({f"user.{n}": Event("user.x", {}) for n in range(30)})
            await store.append_streams({f"order.{n}": Event("order.x", {}) for n in range(5)})
            await store.append("gone.1", Event("gone.x", {}))
            await store.delete_stream("gone.1")

    asyncio.run(fill())
    return url


@pytest.fixture(autouse=True)
def no_whole_list(monkeypatch: pytest.MonkeyPatch) -> None:
    async def streams(self: EventStore, pattern: str = "#") -> list[str]:
        raise AssertionError("every stream name was loaded")

    monkeypatch.setattr(EventStore, "streams", streams)


def _stats(*args: str) -> list[str]:
    result = CliRunner().invoke(app, ["stats", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_stats_counts_the_streams_without_loading_every_name(store_url: str) -> None:
    assert "streams: 35" in _stats("--store", store_url)
    narrowed = _stats("--store", store_url, "--streams", "user.*")
    assert "streams: 30" in narrowed and "events: 30" in narrowed
    # overlapping patterns: each stream once
    overlapping = _stats(
        "--store", store_url, "--streams", "user.1", "--streams", "user.*",
        "--streams", "order.#", "--streams", "user.1",
    )  # fmt: skip
    assert "streams: 35" in overlapping and "events: 35" in overlapping
