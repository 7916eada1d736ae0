"""A bad PostgreSQL URL is a ConfigurationError naming the problem, before any connection.

asyncpg raised a raw OverflowError for port 99999, ValueError for a port that is not a
number and IndexError for an empty host in a list, at the first connection. None of
these tests needs a server: the URL is refused when the store is made.
"""

from __future__ import annotations

import pytest

from pepperpy.event import ConfigurationError, EventStore, StoreError
from pepperpy.event._checkpoints import PostgresCheckpointStore
from pepperpy.event.store.postgres import parse_url

BAD = [
    ("postgresql://app:s3cret@127.0.0.1:99999/x", "port 99999 is out of range (1 to 65535)"),
    ("postgresql://app:s3cret@127.0.0.1:0/x", "port 0 is out of range (1 to 65535)"),
    ("postgresql://app:s3cret@127.0.0.1:http/x", "port 'http' is not a number"),
    ("postgresql://app:s3cret@127.0.0.1:-1/x", "port '-1' is not a number"),
    ("postgresql://app:s3cret@127.0.0.1:+5432/x", "port '+5432' is not a number"),
    ("postgresql://app:s3cret@127.0.0.1:\uff15\uff14\uff13\uff12/x", "is not a number"),
    ("postgresql://app:s3cret@h:" + "9" * 5000 + "/x", "port 999999999999... is out of range"),
    ("postgresql://app:s3cret@h1:5432,h2:70000/x", "port 70000 is out of range"),
    ("postgresql://app:s3cret@h1:5432,/x", "the host list 'h1:5432,' has an empty entry"),
    ("postgresql://app:s3cret@[::1]:99999/x", "port 99999 is out of range"),
    ("postgresql://app:s3cret@[::1]x/x", "is not an IPv6 address in brackets"),
    ("postgresql://app:s3cret@[::1/x", "Invalid IPv6 URL"),
    ("postgresql://app@h/x?password=s3cret&port=99999", "port 99999 is out of range"),
    ("postgresql://app@h/x?password=s3cret&port=5432,abc", "port 'abc' is not a number"),
    ("postgresql://app@/x?password=s3cret&host=a,,b", "the host list 'a,,b' has an empty entry"),
    ("postgresql://app:s3cret@h/x?sslmode", "each query field must be name=value"),
    ("postgresql://app:s3cret@h/x?a=1&&b=2", "each query field must be name=value"),
    ("postgresql://app:s3cret@h/x?schema=Bad", "schema='Bad': use lower-case letters"),
    # PostgreSQL refused pg_* at first use, with a StoreError that subscriptions and
    # follow() took for an outage; information_schema was written into
    ("postgresql://app:s3cret@h/x?schema=pg_temp", "one of PostgreSQL's system schemas"),
    ("postgresql://app:s3cret@h/x?schema=pg_catalog", "one of PostgreSQL's system schemas"),
    ("postgresql://app:s3cret@h/x?schema=information_schema", "PostgreSQL's system schemas"),
    # the last one used to win: tenant_b was created and written to
    ("postgresql://app:s3cret@h/x?schema=tenant_a&schema=tenant_b", "schema is given twice"),
]


@pytest.mark.parametrize(("url", "problem"), BAD)
def test_a_bad_url_is_refused_when_the_store_is_made(url: str, problem: str) -> None:
    for make in (EventStore, PostgresCheckpointStore):
        with pytest.raises(ConfigurationError) as caught:
            make(url)
        message = str(caught.value)
        assert message.startswith("PostgreSQL URL postgresql://app")
        assert problem in message
        assert "s3cret" not in message and "***" in message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app@127.0.0.1:5432/x",
        "postgresql://app@127.0.0.1:/x",  # an empty port is the default one
        "postgresql://app@h1:5432,h2,[::1]:5433,[fe80::1]/x",
        "postgresql://app@h/x?port=5432,5433&sslmode=require",
        "postgresql:///x?host=/var/run/postgresql",
        "postgresql://%2Fvar%2Frun%2Fpostgresql/x",
        "postgresql://app@h:65535/x?schema=orders_1",
        "postgres://h/x",
    ],
)
def test_good_urls_pass(url: str) -> None:
    EventStore(url)
    PostgresCheckpointStore(url)


def test_the_schema_option_is_taken_out_for_asyncpg() -> None:
    assert parse_url("postgresql://h/x?schema=orders&sslmode=prefer") == (
        "postgresql://h/x?sslmode=prefer",
        "orders",
    )
    assert parse_url("postgresql://h/x") == ("postgresql://h/x", None)


async def test_an_option_asyncpg_refuses_is_a_configuration_error() -> None:
    """asyncpg checks its own options (sslmode=...) when it connects: no server needed."""
    url = "postgresql://app:s3cret@127.0.0.1:1/x?sslmode=bogus"
    async with EventStore(url) as store:
        with pytest.raises(ConfigurationError) as caught:
            await store.stream_version("s.1")
    assert "sslmode" in str(caught.value) and "s3cret" not in str(caught.value)
    checkpoints = PostgresCheckpointStore(url)
    with pytest.raises(ConfigurationError, match="sslmode"):
        await checkpoints.load("nightly")
    await checkpoints.close()


async def test_a_value_asyncpg_refuses_when_connecting_is_a_store_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """asyncpg reads the port from PGPORT when the URL has none, and refuses 'abc' with a
    raw ValueError as it connects. The event store said so as a StoreError naming the
    URL; the checkpoint store let the ValueError out. Both connect through the same
    attempts now (_pg_attempts.Attempts.connect_errors): no server needed."""
    monkeypatch.setenv("PGPORT", "abc")
    url = "postgresql://app:s3cret@127.0.0.1/x"
    async with EventStore(url) as store:
        with pytest.raises(StoreError) as caught:
            await store.stream_version("s.1")
    assert str(caught.value).startswith("cannot connect to PostgreSQL at postgresql://app:***@")
    checkpoints = PostgresCheckpointStore(url)
    try:
        with pytest.raises(StoreError) as caught:
            await checkpoints.load("nightly")
    finally:
        await checkpoints.close()
    message = str(caught.value)
    assert message.startswith("cannot open PostgreSQL checkpoint store at postgresql://app:***@")
    assert "invalid literal for int()" in message and "s3cret" not in message
    assert isinstance(caught.value.__cause__, ValueError)
