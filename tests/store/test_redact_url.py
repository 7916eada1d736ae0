"""``redact_url``: no password reaches a repr or an error message, in either URL form."""

from __future__ import annotations

import pytest

from pepperpy.event import EventStore, StoreError
from pepperpy.event._checkpoints import PostgresCheckpointStore
from pepperpy.event.store.base import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/events", "postgresql://app:***@db:5432/events"),
        ("postgresql://app@db/events?password=s3cret", "postgresql://app@db/events?password=***"),
        (
            "postgresql://app:s3cret@db/events?sslmode=require&password=s3cret&x=1",
            "postgresql://app:***@db/events?sslmode=require&password=***&x=1",
        ),
        # any case, percent-encoded names, repeated options, the key's passphrase
        ("postgresql://db/e?PassWord=s3cret", "postgresql://db/e?PassWord=***"),
        ("postgresql://db/e?pass%77ord=s3cret", "postgresql://db/e?pass%77ord=***"),
        (
            "postgresql://db/e?password=s3cret&password=s3cret",
            "postgresql://db/e?password=***&password=***",
        ),
        ("postgresql://db/e?sslpassword=s3cret", "postgresql://db/e?sslpassword=***"),
        # an @ in the query is not the end of a user part
        ("postgresql://app@db/e?password=s3@cret", "postgresql://app@db/e?password=***"),
        ("postgresql://db/e?options=a:s3@cret", "postgresql://db/e?options=a:s3@cret"),
        # raw @ and / in a password
        ("postgresql://app:s3@cret@db/e", "postgresql://app:***@db/e"),
        ("postgresql://app:s3/cret@db/e", "postgresql://app:***@db/e"),
        # raw ? and # in a password (no parser takes them as one; shown in full before)
        ("postgresql://app:p?hunter2xyz@db/e", "postgresql://app:***@db/e"),
        ("postgresql://app:p#hunter2xyz@db/e?x=1", "postgresql://app:***@db/e?x=1"),
        ("nats://tok?en@h:4222", "nats://***@h:4222"),
        (
            "postgresql://app:s3cret@h1:5432,h2:5433/e?password=s3cret#frag",
            "postgresql://app:***@h1:5432,h2:5433/e?password=***#frag",
        ),
        # nothing to hide: left exactly as given
        ("postgresql://app@db/e?sslmode=require", "postgresql://app@db/e?sslmode=require"),
        ("postgresql://db/e?password", "postgresql://db/e?password"),
        ("sqlite:///events.db?busy_timeout=5", "sqlite:///events.db?busy_timeout=5"),
        ("memory://", "memory://"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_reprs_hide_a_query_password() -> None:
    url = "postgresql://app@db.example:5432/events?password=s3cret"
    store = EventStore(url)
    assert repr(store) == "EventStore('postgresql://app@db.example:5432/events?password=***')"
    assert "s3cret" not in repr(store.backend)
    assert "s3cret" not in repr(PostgresCheckpointStore(url))


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:s3cret@127.0.0.1:1/nowhere",
        "postgresql://postgres@127.0.0.1:1/nowhere?password=s3cret",
    ],
)
async def test_connection_errors_hide_the_password(url: str) -> None:
    async with EventStore(url) as store:
        with pytest.raises(StoreError) as caught:
            await store.stream_version("s.1")
    assert "127.0.0.1:1" in str(caught.value) and "***" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    checkpoints = PostgresCheckpointStore(url)
    with pytest.raises(StoreError) as failed:
        await checkpoints.load("nightly")
    await checkpoints.close()
    assert "127.0.0.1:1" in str(failed.value) and "***" in str(failed.value)
    assert "s3cret" not in str(failed.value)
