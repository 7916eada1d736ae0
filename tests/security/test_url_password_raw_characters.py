"""A password pasted into a URL without percent-encoding, holding several of the
characters that end a user part (``@``, ``/``, ``?``, ``#``), is hidden whole in reprs
and errors. ``app:Xk9?f/2w@db`` was shown in full (the user part was looked for before
the first ``/`` only, which is inside the password), and ``app:Xk@9/f@2w@db`` showed
all of it after its first ``@``."""

from __future__ import annotations

import traceback

import pytest

from pepperpy.event import ConfigurationError, EventStore
from pepperpy.event._redact import redact_url
from pepperpy.event.security import PostgresKeyStore

PASSWORDS = ["Xk9?f/2w", "Xk9#f/2w", "Xk@9/f@2w", "Xk@9?f@2w", "Xk@9/f?2w"]


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize(
    "template",
    [
        "postgresql://app:{}@db.internal:5432/events",
        "postgresql://app:{}@db.internal/events?sslmode=require",
        "redis://:{}@cache.internal:6379/0",
        "amqp://guest:{}@mq.internal/",
    ],
)
def test_no_piece_of_the_password_is_shown(template: str, password: str) -> None:
    assert redact_url(template.format(password)) == template.format("***")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:a?b/c@db/e", "postgresql://app:***@db/e"),
        ("postgresql://app:a#b/c@db/e?x=1", "postgresql://app:***@db/e?x=1"),
        ("postgresql://app:ab@cd/ef@db/e", "postgresql://app:***@db/e"),
        ("postgresql://app:a@b?c@db/e", "postgresql://app:***@db/e"),
        ("nats://to/k?en@h:4222", "nats://***@h:4222"),
        # nothing to hide: a host:port, an "@" in the query or in an SQLite path
        ("postgresql://db:5432/e?options=a:s3@cret", "postgresql://db:5432/e?options=a:s3@cret"),
        ("postgresql://[::1]:5432/e?x=a@b", "postgresql://[::1]:5432/e?x=a@b"),
        ("sqlite:///data/me@corp/events.db", "sqlite:///data/me@corp/events.db"),
    ],
)
def test_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("password", ["Xk9?f/2w", "Xk9#f/2w"])
def test_a_refused_store_or_key_store_url_does_not_show_it(password: str) -> None:
    url = f"postgresql://app:{password}@127.0.0.1:5432/events"
    for make in (EventStore, PostgresKeyStore):
        with pytest.raises(ConfigurationError) as refused:
            make(url)
        assert password not in "".join(traceback.format_exception(refused.value))


def test_reprs_do_not_show_it() -> None:
    url = "postgresql://app:Xk@9/f@2w@127.0.0.1:5432/events"
    assert "9/f@2w" not in repr(EventStore(url))
    assert "9/f@2w" not in repr(PostgresKeyStore(url))
