"""A password holding a raw '@', '/' or '[' never shows in a PostgreSQL URL's error.

The host part was split at the first '@' (as asyncpg splits it), so the rest of such a
password was checked as a host and port, and echoed: "port 'hunter2xyz@1...' is not a
number". No server is needed: the URL is refused when the store is made.
"""

from __future__ import annotations

import pytest

from pepperpy.event import ConfigurationError, EventStore
from pepperpy.event._checkpoints import PostgresCheckpointStore

SECRET = "hunter2xyz"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://bob:p@ss:{SECRET}@127.0.0.1:5432/db",
        f"postgresql://bob:p@{SECRET}@127.0.0.1:5432/db",
        f"postgresql://bob:p@[::1]{SECRET}@127.0.0.1:5432/db",
        f"postgresql://bob:p@[::1]:{SECRET}@127.0.0.1/db",
        f"postgresql://bob@x:{SECRET}@127.0.0.1/db",
    ],
)
def test_a_raw_at_in_the_password_is_refused_showing_nothing_of_it(url: str) -> None:
    for make in (EventStore, PostgresCheckpointStore):
        with pytest.raises(ConfigurationError) as caught:
            make(url)
        message = str(caught.value)
        assert "%40" in message
        for fragment in (SECRET, "hunter", "2xyz", "ss:", "p@"):
            assert fragment not in message.replace("bob:***@", "")


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://bob:p/{SECRET}@127.0.0.1/db",
        f"postgresql://bob:p/[{SECRET}@127.0.0.1/db",
        f"postgresql://bob:{SECRET}/x@127.0.0.1/db",
    ],
)
def test_a_raw_slash_in_the_password_shows_nothing_of_it(url: str) -> None:
    for make in (EventStore, PostgresCheckpointStore):
        try:
            make(url)
        except ConfigurationError as exc:
            message = str(exc)
        else:  # pragma: no cover - the host part 'bob' is a valid host
            continue
        for fragment in (SECRET, "hunter", "2xyz", "'p'"):
            assert fragment not in message


def test_a_single_at_still_names_the_bad_port() -> None:
    with pytest.raises(ConfigurationError, match="port 'http' is not a number"):
        EventStore("postgresql://bob:s3cret@127.0.0.1:http/db")
