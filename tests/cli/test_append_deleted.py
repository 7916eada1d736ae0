"""``append`` to a deleted stream names the command's own option to start it again.

The error was the library's: "append with expected_version=NO_STREAM to start it again",
a Python name the command does not take (its option is ``--expected-version
no-stream``).
"""

from __future__ import annotations

import asyncio

from pepperpy.event import Event, EventStore

from .conftest import Cli
from .test_cli import ok, one_line_error


def test_append_to_a_deleted_stream_names_the_option(cli: Cli, store_url: str) -> None:
    async def write() -> None:
        async with EventStore(store_url) as store:
            await store.append("gone.1", Event("t.x", {}))
            await store.delete_stream("gone.1")

    asyncio.run(write())
    refused = cli("append", "gone.1", "t.x", "{}", "--store", store_url)
    one_line_error(refused, "'gone.1' was deleted", "--expected-version no-stream")
    assert "NO_STREAM" not in refused.err
    started = ok(
        cli(
            "append", "gone.1", "t.x", "{}", "--store", store_url, "--expected-version", "no-stream"
        )
    )
    assert "appended gone.1:1 t.x" in started.err + started.out
