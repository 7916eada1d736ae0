"""A password in a store or checkpoint store URL never reaches an error message, even
when the URL is refused before it is parsed as the backend's (a wrong scheme, a
SQLAlchemy-style ``postgresql+asyncpg://``, an SQLite URL with a host)."""

from __future__ import annotations

import traceback

import pytest

from pepperpy.event import ConfigurationError, EventBus, EventStore
from pepperpy.event._checkpoints import open_checkpoint_store
from pepperpy.event._redact import redact_url
from pepperpy.event.store import copy_store

SECRET = "S3cretPw9"

URLS = [
    f"postgresql+asyncpg://app:{SECRET}@db.internal/events",
    f"mysql://root:{SECRET}@db.internal/events",
    f"redis://:{SECRET}@cache.internal:6379/0",
    f"memory://app:{SECRET}@somewhere",
    f"sqlite://app:{SECRET}@host/events.db",
    f"sqlite:///events.db?create=maybe&password={SECRET}",
    f"sqlite:///events.db?password={SECRET}",
]


def shown(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


@pytest.mark.parametrize("url", URLS)
def test_a_refused_store_url_is_named_without_its_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        EventStore(url)
    assert SECRET not in shown(refused.value)
    assert "***" in str(refused.value)


@pytest.mark.parametrize("url", URLS)
def test_a_refused_checkpoint_store_url_is_named_without_its_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        open_checkpoint_store(url)
    assert SECRET not in shown(refused.value)
    assert "***" in str(refused.value)


async def test_a_copy_from_a_refused_url_is_named_without_its_password() -> None:
    with pytest.raises(ConfigurationError) as refused:
        await copy_store(URLS[0], "memory://")
    assert SECRET not in shown(refused.value)


# What a user gives where a URL belongs, and is refused: the error shows it, so what is
# secret in it must not be shown. A libpq keyword/value connection string (the form
# psycopg and libpq take), a URL missing its "//", a list of NATS servers under a
# mistyped scheme.
NOT_URLS = [
    f"host=db.internal user=app password={SECRET} dbname=events",
    f"host=db.internal password = '{SECRET} x' dbname=events",
    f"dbname=events sslpassword={SECRET}",
    f"postgresql:app:{SECRET}@db.internal/events",
    f"app:{SECRET}@db.internal",
]
URL_LISTS = [
    f"nat://app:other@h1:4222,nat://app:{SECRET}@h2:4222",
    f"nats+tls://h1:4222,nats+tls://app:{SECRET}@h2:4222",
]


@pytest.mark.parametrize("url", NOT_URLS + URL_LISTS)
def test_a_refused_store_or_transport_string_is_named_without_its_password(url: str) -> None:
    for make in (EventStore, lambda url: EventBus(transport=url), open_checkpoint_store):
        with pytest.raises(ConfigurationError) as refused:
            make(url)
        assert SECRET not in shown(refused.value), make
        assert "***" in str(refused.value)


@pytest.mark.parametrize(
    ("given", "shown_as"),
    [
        ("nats://u:p1@h1:4222,nats://u2:p2@h2:4222", "nats://u:***@h1:4222,nats://u2:***@h2:4222"),
        # each server of a list keeps its own host; a token per server
        ("nats://h1:4222,nats://u:p@h2:4222", "nats://h1:4222,nats://u:***@h2:4222"),
        ("nats://[::1]:4222,tls://tok@[::2]:4222", "nats://[::1]:4222,tls://***@[::2]:4222"),
        # a ",x://" inside a password is no list: the whole user part goes, as before
        ("redis://u:pa,b://c@h/0", "redis://u:***@h/0"),
        ("host=db user=app password=s3cret dbname=e", "host=db user=app password=*** dbname=e"),
        ("host=db password='s3 c\\'ret' dbname=e", "host=db password=*** dbname=e"),
        ("PASSWORD = s3cret", "PASSWORD = ***"),
        ("postgresql:app:s3cret@db/e", "postgresql:***@db/e"),
        # nothing secret: as given
        ("host=db passfile=/run/pgpass dbname=e", "host=db passfile=/run/pgpass dbname=e"),
        ("mypassword=x", "mypassword=x"),
        ("app@example.com", "app@example.com"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url_lists_and_strings_that_are_no_url(given: str, shown_as: str) -> None:
    assert redact_url(given) == shown_as
