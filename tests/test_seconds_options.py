"""Every option of the library's that takes seconds follows one rule (``_seconds.py``).

A number of seconds is an int or float, never a bool, finite, and > 0 (>= 0 where 0
means "at once"); anything else is refused naming the option: a value that is no number
with ``TypeError`` (docs/errors.md: wrong argument types stay ``TypeError``), a number
not finite or out of range with the error its owner raises for bad options. The checks
were written apart and had drifted: a webhook's timeout took ``True``, NaN, infinity
(and ``"5"`` raised a bare ``TypeError`` naming nothing), an e-mail channel's and a Redis
idempotency store's took ``True`` (one second), and an audit log's ``busy_timeout``, the
timeout middleware's seconds and the dedupe middleware's ttl took infinity.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from pepperpy.event import (
    ConfigurationError,
    DeduplicateMiddleware,
    EmailChannel,
    NotificationSystem,
    RedisIdempotencyStore,
    RetryPolicy,
    TimeoutMiddleware,
    WebhookChannel,
)
from pepperpy.event.security import AuditLog, KeyRing, StreamEncryption
from pepperpy.event.store.sqlite import SQLiteBackend


def _close_notifications(grace: Any) -> None:
    import asyncio

    async def close() -> None:
        await NotificationSystem().close(grace=grace)

    asyncio.run(close())


#: (the option's name, a call given its value, the error, whether 0 is allowed)
OPTIONS: list[tuple[str, Callable[[Any], object], type[Exception], bool]] = [
    ("grace", _close_notifications, ValueError, True),
    ("busy_timeout", lambda v: AuditLog(busy_timeout=v), ConfigurationError, False),
    (
        "timeout",
        lambda v: WebhookChannel("https://example.com/hook", timeout=v),
        ConfigurationError,
        False,
    ),
    (
        "timeout",
        lambda v: EmailChannel(sender="a@example.com", timeout=v),
        ConfigurationError,
        False,
    ),
    (
        "ttl",
        lambda v: RedisIdempotencyStore("redis://127.0.0.1:6379/2", ttl=v),
        ConfigurationError,
        False,
    ),
    (
        "lease",
        lambda v: RedisIdempotencyStore("redis://127.0.0.1:6379/2", lease=v),
        ConfigurationError,
        False,
    ),
    ("seconds", TimeoutMiddleware, ValueError, False),
    ("ttl", lambda v: DeduplicateMiddleware(ttl=v), ValueError, False),
    (
        "base_delay",
        lambda v: RetryPolicy(kind="linear", base_delay=v, max_delay=10),
        ValueError,
        True,
    ),
    ("max_delay", lambda v: RetryPolicy(kind="fixed", max_delay=v), ValueError, True),
    # a file never opened: the check is the constructor's
    ("busy_timeout", lambda v: SQLiteBackend("never-opened.db", busy_timeout=v), ValueError, True),
    (
        "key_cache_ttl",
        lambda v: StreamEncryption(KeyRing.generate(), key_cache_ttl=v),
        ConfigurationError,
        True,
    ),
]
BAD = [math.nan, math.inf, -math.inf, -1, 10**400]
WRONG_TYPE = [True, False, "5", None, b"5", [5]]


@pytest.mark.parametrize("bad", BAD, ids=repr)
@pytest.mark.parametrize(("name", "make", "error", "zero"), OPTIONS, ids=[o[0] for o in OPTIONS])
def test_a_bad_number_of_seconds_is_refused_naming_the_option(
    name: str, make: Callable[[Any], object], error: type[Exception], zero: bool, bad: Any
) -> None:
    with pytest.raises(error) as caught:
        make(bad)
    bound = ">= 0" if zero else "> 0"
    assert str(caught.value) == f"{name} must be a finite number of seconds {bound}, got {bad!r}"


@pytest.mark.parametrize("bad", WRONG_TYPE, ids=repr)
@pytest.mark.parametrize(("name", "make", "error", "zero"), OPTIONS, ids=[o[0] for o in OPTIONS])
def test_seconds_of_a_wrong_type_are_a_type_error_naming_the_option(
    name: str, make: Callable[[Any], object], error: type[Exception], zero: bool, bad: Any
) -> None:
    with pytest.raises(TypeError) as caught:
        make(bad)
    assert type(caught.value) is TypeError
    bound = ">= 0" if zero else "> 0"
    assert str(caught.value) == f"{name} must be a finite number of seconds {bound}, got {bad!r}"


@pytest.mark.parametrize(("name", "make", "error", "zero"), OPTIONS, ids=[o[0] for o in OPTIONS])
def test_zero_is_refused_unless_it_means_at_once(
    name: str, make: Callable[[Any], object], error: type[Exception], zero: bool
) -> None:
    if zero:
        make(0)
    else:
        with pytest.raises(error, match=f"^{name} must be a finite number of seconds > 0"):
            make(0)


@pytest.mark.parametrize(("name", "make", "error", "zero"), OPTIONS, ids=[o[0] for o in OPTIONS])
def test_ints_and_floats_are_taken(
    name: str, make: Callable[[Any], object], error: type[Exception], zero: bool
) -> None:
    for good in (2, 2.5):
        made = make(good)
        if isinstance(made, AuditLog):
            made.close()


def test_a_url_option_that_is_not_a_number_says_so() -> None:
    with pytest.raises(ConfigurationError) as caught:
        RedisIdempotencyStore("redis://127.0.0.1:6379/2?lease=soon")
    assert str(caught.value) == "lease must be a finite number of seconds > 0, got 'soon'"


@pytest.mark.parametrize(
    "make",
    [
        lambda v: AuditLog(busy_timeout=v),
        lambda v: SQLiteBackend("never-opened.db", busy_timeout=v),
    ],
    ids=["audit log", "sqlite store"],
)
def test_a_busy_timeout_sqlite_would_turn_into_zero_is_refused(
    make: Callable[[Any], object],
) -> None:
    # Python's sqlite3 passes it on in milliseconds, in a C int: from about 2.1 million
    # seconds on, a locked file would fail at once instead of waiting
    with pytest.raises((ConfigurationError, ValueError), match="must be less than 1000000"):
        make(3_000_000)
    make(999_999)
