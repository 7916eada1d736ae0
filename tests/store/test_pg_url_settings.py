"""A URL option the server refuses as a setting is a ConfigurationError, not an outage.

An option the store does not know is passed on to the server as a setting. A typo
(?command_timout=5) or a bad value (?lock_timeout=abc) was refused by the server at the
first connection and came out as StoreError("cannot connect ..."), which subscriptions
retried as an outage for retry_for seconds (or forever with retry_for=None).
"""

from __future__ import annotations

import asyncio

import pytest

from pepperpy.event import ConfigurationError, EventStore
from pepperpy.event._checkpoints import PostgresCheckpointStore

CASES = [
    ("?command_timout=5", "command_timout", "did you mean ?command_timeout="),
    ("?lock_timeout=abc", "lock_timeout", "invalid value"),
    ("?schema=s1&no_such_setting=1", "no_such_setting", "unrecognized"),
]


@pytest.mark.parametrize(("extra", "named", "said"), CASES)
async def test_a_setting_the_server_refuses_is_a_configuration_error(
    postgres_url: str, extra: str, named: str, said: str
) -> None:
    # the local server trusts the role: the password is only there not to be shown
    url = postgres_url.replace("postgres@", "postgres:s3cret@", 1) + extra
    async with EventStore(url) as store:
        with pytest.raises(ConfigurationError) as caught:
            await store.stream_version("s.1")
        message = str(caught.value)
        assert named in message and said in message
        assert "s3cret" not in message
        # a subscription does not wait it out as an outage, even with no bound
        with pytest.raises(ConfigurationError):
            async with asyncio.timeout(60):
                async for _ in store.subscribe(0, retry_for=None):
                    pass  # pragma: no cover
    checkpoints = PostgresCheckpointStore(url)
    try:
        with pytest.raises(ConfigurationError, match=named):
            await checkpoints.load("nightly")
    finally:
        await checkpoints.close()


async def test_a_good_setting_still_reaches_the_server(postgres_url: str) -> None:
    async with EventStore(postgres_url + "?lock_timeout=1500") as store:
        assert await store.stream_version("s.1") is None
