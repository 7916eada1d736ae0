"""An empty value where a name or a number is wanted is refused, naming what was empty.

``replay --checkpoint ''`` names ``--checkpoint``; the console's API answers 400 for an
empty ``from``, ``streams``, ``types`` or ``pattern`` (the empty pattern is no pattern,
SPEC §2) instead of reading it as "everything". The HTML pages still take an empty
value for its default.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from pepperpy.event import Event

from .conftest import Cli
from .test_cli import one_line_error, seed
from .test_console import client, store

__all__ = ["client", "store"]  # fixtures


def test_replay_names_an_empty_checkpoint(cli: Cli, store_url: str, tmp_path: Path) -> None:
    seed(store_url, [("s.1", Event("t.x", {}))])
    one_line_error(cli("replay", "--checkpoint", "", "--store", store_url), "--checkpoint is empty")


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/api/events?from=", "from"),
        ("/api/events?streams=", "streams"),
        ("/api/events?types=", "types"),
        ("/api/events?streams=user.*&streams=", "streams"),
        ("/api/streams?pattern=", "pattern"),
    ],
)
async def test_the_api_refuses_an_empty_value(
    client: httpx.AsyncClient, path: str, named: str
) -> None:
    answer = await client.get(path)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith(f"{named} is empty")


async def test_the_pages_still_take_an_empty_pattern(client: httpx.AsyncClient) -> None:
    answer = await client.get("/?pattern=")
    assert answer.status_code == 200
    assert "user.1" in answer.text
